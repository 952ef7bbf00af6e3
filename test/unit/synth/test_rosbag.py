from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader

from mickey_ros.bags.writer import make_typestore
from mickey_ros.relocalization.messages import (
    camera_info_to_intrinsics,
    image_msg_to_rgb,
    stamp_to_ns,
    transform_stamped_to_matrix,
)
from mickey_ros.synth.rosbag import (
    START_NS,
    RobotBagTopics,
    RobotPath,
    plan_robot_drive,
    write_robot_bag,
)

SIZE_WH = (64, 48)
SEED = 2
FRAMES = 4  # 1 s at 4 Hz
EXPECTED_COUNTS = {
    "/tf_static": 1,
    "/reference/image": 1,
    "/reference/camera_info": 1,
    "/tf": FRAMES,
    "/camera/camera_info": FRAMES,
    "/camera/image_raw": FRAMES,
    "/camera/image_raw/compressed": FRAMES,
}
EXPECTED_TYPES = {
    "/tf_static": "tf2_msgs/msg/TFMessage",
    "/tf": "tf2_msgs/msg/TFMessage",
    "/reference/image": "sensor_msgs/msg/Image",
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/reference/camera_info": "sensor_msgs/msg/CameraInfo",
    "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/camera/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
}


@pytest.fixture(scope="module")
def bags(egl, tmp_path_factory):
    """The same drive written with both storage plugins."""
    root = tmp_path_factory.mktemp("bags")
    return {
        storage: write_robot_bag(
            root / f"drive_{storage}",
            seconds=1.0,
            rate_hz=4.0,
            size_wh=SIZE_WH,
            storage=storage,
            compressed=True,
            seed=SEED,
            progress=False,
        )
        for storage in ("sqlite3", "mcap")
    }


@pytest.fixture(params=["sqlite3", "mcap"])
def bag(request, bags):
    return bags[request.param]


def read_all(path):
    typestore = make_typestore()
    with Reader(path) as reader:
        connections = {c.topic: c for c in reader.connections}
        messages = [
            (c.topic, t, typestore.deserialize_cdr(raw, c.msgtype))
            for c, t, raw in reader.messages()
        ]
    return connections, messages


class TestRobotPathTimeAt:
    def test_inverts_the_distance_driven(self):
        path = RobotPath(length_m=2.6, lateral_m=0.4, period_s=12.0)
        for forward_m in (0.0, 0.5, 1.3, 2.5, 2.6):
            t_s = path.time_at(forward_m)
            assert 0.0 <= t_s <= path.period_s / 2  # the way out, before it turns back
            assert path.T_odom_base(t_s)[0, 3] == pytest.approx(forward_m, abs=1e-9)

    def test_beyond_the_drive_is_refused(self):
        with pytest.raises(ValueError, match=r"forward_m must lie in \[0, 2.60\] m"):
            RobotPath(length_m=2.6, lateral_m=0.4, period_s=12.0).time_at(2.7)


class TestWriteRobotBag:
    def test_topics_types_and_counts(self, bag):
        connections, messages = read_all(bag)
        assert {topic: c.msgtype for topic, c in connections.items()} == EXPECTED_TYPES
        assert Counter(topic for topic, _, _ in messages) == EXPECTED_COUNTS
        assert (bag / "metadata.yaml").is_file()

    def test_header_stamps_equal_bag_time(self, bag):
        _, messages = read_all(bag)
        expected = [START_NS + k * 250_000_000 for k in range(FRAMES)]
        per_topic = defaultdict(list)
        for topic, t, msg in messages:
            headers = (
                [tf.header for tf in msg.transforms] if hasattr(msg, "transforms") else [msg.header]
            )
            assert all(stamp_to_ns(h.stamp) == t for h in headers), topic
            per_topic[topic].append(t)
        assert per_topic["/camera/image_raw"] == expected
        assert per_topic["/reference/image"] == per_topic["/tf_static"] == [START_NS]

    def test_latched_qos_on_reference_and_tf_static(self, bag):
        connections, _ = read_all(bag)
        for topic in ("/tf_static", "/reference/image", "/reference/camera_info"):
            (qos,) = connections[topic].ext.offered_qos_profiles
            assert qos.durability == QosDurability.TRANSIENT_LOCAL and qos.depth == 1
            assert qos.reliability == QosReliability.RELIABLE
        for topic in ("/tf", "/camera/image_raw", "/camera/camera_info"):
            (qos,) = connections[topic].ext.offered_qos_profiles
            assert qos.durability == QosDurability.VOLATILE

    def test_frames_images_and_camera_info(self, bag):
        _, messages = read_all(bag)
        drive = plan_robot_drive(SEED, SIZE_WH)
        images = {}
        for topic, t, msg in messages:
            if topic.endswith("camera_info"):
                info = camera_info_to_intrinsics(msg)
                np.testing.assert_allclose(info.K, drive.K)
                assert (info.width, info.height) == SIZE_WH
            if "image" in topic:
                assert msg.header.frame_id == "camera_optical_frame"
                images[(topic, t)] = image_msg_to_rgb(msg)
        assert all(rgb.shape == (48, 64, 3) for rgb in images.values())
        raw = images[("/camera/image_raw", START_NS)].astype(float)
        jpeg = images[("/camera/image_raw/compressed", START_NS)].astype(float)
        reference = images[("/reference/image", START_NS)].astype(float)
        last = images[("/camera/image_raw", START_NS + 750_000_000)].astype(float)
        assert np.abs(raw - jpeg).mean() < 6.0  # JPEG quality 90
        # the reference is the start view: only noise/exposure differ; a later view moved on
        assert np.abs(raw - reference).mean() < 0.5 * np.abs(last - reference).mean()

    def test_tf_chain_composes_to_the_gt_camera_pose(self, bag):
        _, messages = read_all(bag)
        drive = plan_robot_drive(SEED, SIZE_WH)
        static = {
            tf.child_frame_id: (tf.header.frame_id, transform_stamped_to_matrix(tf))
            for topic, _, msg in messages
            if topic == "/tf_static"
            for tf in msg.transforms
        }
        assert static["camera_link"][0] == "base_link"
        assert static["camera_optical_frame"][0] == "camera_link"
        T_base_optical = static["camera_link"][1] @ static["camera_optical_frame"][1]
        # REP-103 optical frame: z forward (~ base x), x right (base -y), y down (~ base -z)
        R = T_base_optical[:3, :3]
        assert R[:, 2] @ [1, 0, 0] > np.cos(np.radians(10.5))
        np.testing.assert_allclose(R[:, 0], [0, -1, 0], atol=1e-9)
        assert R[:, 1] @ [0, 0, -1] > np.cos(np.radians(10.5))
        odom = [(t, tf) for topic, t, msg in messages if topic == "/tf" for tf in msg.transforms]
        assert len(odom) == FRAMES
        for t, tf in odom:
            assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "base_link")
            T_odom_optical = transform_stamped_to_matrix(tf) @ T_base_optical
            expected = drive.T_odom_optical((t - START_NS) / 1e9)
            np.testing.assert_allclose(T_odom_optical, expected, atol=1e-6)
        np.testing.assert_allclose(transform_stamped_to_matrix(odom[0][1]), np.eye(4), atol=1e-12)

    def test_custom_topics(self, egl, tmp_path):
        topics = RobotBagTopics(
            image="/cam/image", camera_info="/cam/info", optical_frame="cam_opt"
        )
        path = write_robot_bag(
            tmp_path / "b", seconds=0.5, rate_hz=2.0, size_wh=SIZE_WH, topics=topics, progress=False
        )
        connections, messages = read_all(path)
        assert {"/cam/image", "/cam/info"} <= set(
            connections
        ) and "/camera/image_raw" not in connections
        assert all(
            msg.header.frame_id == "cam_opt" for topic, _, msg in messages if topic == "/cam/image"
        )

    def test_exceptions(self, bag):
        with pytest.raises(FileExistsError, match="already exists"):
            write_robot_bag(bag, seconds=1.0, progress=False)
        with pytest.raises(ValueError, match="seconds"):
            write_robot_bag(bag.parent / "x", seconds=0.0, progress=False)


class TestMcapIndependentDecoder:
    def test_mcap_ros2_decodes_every_message(self, bags):
        from mcap.reader import make_reader
        from mcap_ros2.decoder import DecoderFactory

        drive = plan_robot_drive(SEED, SIZE_WH)
        (mcap_file,) = bags["mcap"].glob("*.mcap")
        counts, schemas = Counter(), {}
        with open(mcap_file, "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            for schema, channel, message, decoded in reader.iter_decoded_messages():
                counts[channel.topic] += 1
                schemas[channel.topic] = schema.name
                assert channel.message_encoding == "cdr" and schema.encoding == "ros2msg"
                if channel.topic == "/camera/camera_info":
                    np.testing.assert_allclose(np.reshape(decoded.k, (3, 3)), drive.K)
                    stamp = decoded.header.stamp
                    assert stamp.sec * 10**9 + stamp.nanosec == message.log_time
                if channel.topic == "/tf_static":
                    children = [tf.child_frame_id for tf in decoded.transforms]
                    assert children == ["camera_link", "camera_optical_frame"]
        assert counts == EXPECTED_COUNTS
        assert schemas == EXPECTED_TYPES
