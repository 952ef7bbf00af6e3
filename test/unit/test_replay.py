"""Tests for mickey_ros.replay.run (issue 5): offline replay of a bag with a model double.

The input bag is a small scene with exact ground truth: odom -> base_link moves linearly with a
constant yaw rate (so TF interpolation is exact), a static camera mount, a latched keyframe at
t = 0 and 10 live frames between the TF samples. Each image is filled with a code value; the
double reads it back and returns the analytic ground-truth pose of that frame.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from mcap_helpers import plain
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability, QosHistory, QosReliability

from mickey_ros.bags import writer as bags
from mickey_ros.bags.reader import BagError
from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.geometry.pose import axis_angle_to_rotmat
from mickey_ros.relocalization.messages import (
    MessageTypes,
    camera_info_msg,
    rgb_to_compressed_image_msg,
    rgb_to_image_msg,
    tf_message,
    transform_stamped_msg,
    transform_stamped_to_matrix,
)
from mickey_ros.relocalization.params import GateParams, NodeParams, OutputParams
from mickey_ros.replay import run as run_module
from mickey_ros.replay.run import ReplayConfig, main, replay
from mickey_ros.utils.images import ImageError

START = 100 * 10**9
FRAMES = 10
REF_CODE = 250
K = np.array([[40.0, 0, 16], [0, 40, 12], [0, 0, 1]])
R_LINK_OPTICAL = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
T_BASE_LINK = np.eye(4)
T_BASE_LINK[:3, 3] = [0.2, 0.0, 0.8]
T_LINK_OPTICAL = np.eye(4)
T_LINK_OPTICAL[:3, :3] = R_LINK_OPTICAL


def frame_stamp(k: int) -> int:
    return START + 100_000_000 + k * 200_000_000


def T_odom_base(t_s: float) -> np.ndarray:
    T = np.eye(4)
    yaw = torch.tensor([0.0, 0.0, 0.3 * t_s], dtype=torch.float64)  # constant rate: slerp exact
    T[:3, :3] = axis_angle_to_rotmat(yaw).numpy()
    T[:3, 3] = [0.8 * t_s, 0.1 * t_s, 0.0]
    return T


def T_odom_cam(stamp_ns: int) -> np.ndarray:
    return T_odom_base((stamp_ns - START) / 1e9) @ T_BASE_LINK @ T_LINK_OPTICAL


def gt_T_query_ref(k: int) -> np.ndarray:
    return np.linalg.inv(T_odom_cam(frame_stamp(k))) @ T_odom_cam(START)


def code(k: int) -> int:
    return 10 * (k + 1)


def _rgb(value: int) -> np.ndarray:
    return np.full((24, 32, 3), value, np.uint8)


def write_scene_bag(path: Path, storage: str = "sqlite3", compressed: bool = False,
                    garbage: bool = False, bad_image_at: int | None = None) -> Path:
    ts = bags.make_typestore()
    types = MessageTypes.from_typestore(ts)
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    image_topic = "/camera/image_raw" + ("/compressed" if compressed else "")
    with bags.open_writer(path, storage) as w:
        c = {
            "tf_static": bags.add_connection(w, "/tf_static", "tf2_msgs/msg/TFMessage", ts,
                                             bags.LATCHED_QOS),
            "tf": bags.add_connection(w, "/tf", "tf2_msgs/msg/TFMessage", ts),
            "ref": bags.add_connection(w, "/reference/image", "sensor_msgs/msg/Image", ts,
                                       bags.LATCHED_QOS),
            "ref_info": bags.add_connection(w, "/reference/camera_info",
                                            "sensor_msgs/msg/CameraInfo", ts, bags.LATCHED_QOS),
            "image": bags.add_connection(w, image_topic, image_type, ts),
            "info": bags.add_connection(w, "/camera/camera_info", "sensor_msgs/msg/CameraInfo", ts),
        }

        def tf(key, stamp, edges):
            msgs = [transform_stamped_msg(types, T, stamp, p, ch) for T, p, ch in edges]
            bags.write_message(w, c[key], stamp, tf_message(types, msgs), ts)

        tf("tf_static", START, [(T_BASE_LINK, "base_link", "camera_link"),
                                (T_LINK_OPTICAL, "camera_link", "camera_optical_frame")])
        bags.write_message(w, c["ref_info"], START,
                           camera_info_msg(types, K, 32, 24, START, "camera_optical_frame"), ts)
        bags.write_message(w, c["ref"], START, rgb_to_image_msg(
            types, _rgb(REF_CODE), START, "camera_optical_frame"), ts)
        for j in range(11):  # TF at 0, 0.25, ..., 2.5 s: every frame lies between two samples
            stamp = START + j * 250_000_000
            tf("tf", stamp, [(T_odom_base(j * 0.25), "odom", "base_link")])
        for k in range(FRAMES):
            stamp = frame_stamp(k)
            bags.write_message(w, c["info"], stamp,
                               camera_info_msg(types, K, 32, 24, stamp, "camera_optical_frame"), ts)
            if compressed:
                msg = rgb_to_compressed_image_msg(types, _rgb(code(k)), stamp,
                                                  "camera_optical_frame", fmt="png")
            else:
                msg = rgb_to_image_msg(types, _rgb(code(k)), stamp, "camera_optical_frame")
                if k == bad_image_at:
                    msg = dataclasses.replace(msg, encoding="weird16")
            bags.write_message(w, c["image"], stamp, msg, ts)
        if garbage:
            w.write(c["image"], frame_stamp(FRAMES), b"\x00\x01\x00\x00bad")
    return path


class PoseDouble:
    """PoseEstimator double: the ground-truth pose of the frame whose code fills the image."""

    def __init__(self, offset_m=(0.0, 0.0, 0.0), invalid=(), low_confidence=(),
                 interrupt_after: int | None = None, refuse_reference: bool = False):
        self.poses = {code(k): gt_T_query_ref(k) for k in range(FRAMES)}
        self.poses[REF_CODE] = np.eye(4)
        self.offset_m = np.asarray(offset_m, dtype=np.float64)
        self.invalid, self.low = set(invalid), set(low_confidence)
        self.interrupt_after, self.calls, self.reference = interrupt_after, 0, None
        self.refuse_reference = refuse_reference

    def set_reference(self, image, K):
        if self.refuse_reference:
            raise ImageError("reference is 32x24 px; at least 56x56 is needed")
        self.reference = int(image[0, 0, 0])

    @property
    def has_reference(self):
        return self.reference is not None

    def estimate(self, image, K):
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls += 1
        value = int(image[0, 0, 0])
        if value in self.invalid:
            return PoseEstimate.invalid("too few matches")
        T_query_world = self.poses[value] @ np.linalg.inv(self.poses[self.reference])
        T_ref_query = np.linalg.inv(T_query_world)
        offset = self.offset_m if self.offset_m.ndim == 1 else self.offset_m[value // 10 - 1]
        T_ref_query[:3, 3] += offset  # shift the camera centre in the reference frame
        T = np.linalg.inv(T_ref_query)
        confidence = 20.0 if value in self.low else 1500.0
        return PoseEstimate(valid=True, R=T[:3, :3], t=T[:3, 3], confidence=confidence,
                            num_inliers=int(confidence), num_samples=2048)

    def estimate_batch(self, images, Ks):
        return [self.estimate(i, k) for i, k in zip(images, Ks)]


def _cfg(**kw) -> ReplayConfig:
    node = kw.pop("node", NodeParams())
    tf_mode = kw.pop("tf_mode", None)
    if tf_mode:
        node = dataclasses.replace(node, output=dataclasses.replace(node.output, tf_mode=tf_mode))
    base = dict(reference_topic="/reference/image", ground_truth_tf=True, progress=False)
    return ReplayConfig(node=node, **{**base, **kw})


def read_bag(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with AnyReader([path], default_typestore=bags.make_typestore()) as r:
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((t, r.deserialize(raw, conn.msgtype)))
        out["__types__"] = {c.topic: c.msgtype for c in r.connections}
        out["__qos__"] = {c.topic: c.ext.offered_qos_profiles for c in r.connections}
    return out


def rewrite_with_mcap_ros2(src: Path, dst: Path) -> Path:
    """The same messages re-encoded by mcap-ros2-support into a bare .mcap (no rosbags writer)."""
    from mcap_ros2.writer import Writer as McapWriter

    ts = bags.make_typestore()
    with AnyReader([src], default_typestore=ts) as reader, dst.open("wb") as f:
        writer, schemas = McapWriter(f), {}
        for conn, t, raw in reader.messages():
            if conn.msgtype not in schemas:
                text = ts.generate_msgdef(conn.msgtype, ros_version=2)[0]
                schemas[conn.msgtype] = writer.register_msgdef(conn.msgtype, text)
            msg = plain(reader.deserialize(raw, conn.msgtype))
            writer.write_message(conn.topic, schemas[conn.msgtype], msg, log_time=t)
        writer.finish()
    return dst


@pytest.fixture(scope="module")
def scene_bag(tmp_path_factory) -> Path:
    return write_scene_bag(tmp_path_factory.mktemp("in") / "scene")


class TestReplayConfig:
    def test_exception_no_reference_source(self):
        with pytest.raises(ValueError, match="exactly one keyframe source"):
            ReplayConfig()

    def test_exception_two_reference_sources(self):
        with pytest.raises(ValueError, match="got 2"):
            ReplayConfig(reference_topic="/r", reference_frame_index=0)

    @pytest.mark.parametrize("kw, match", [({"every": 0}, "every"), ({"storage": "bag"}, "storage"),
                                           ({"reference_intrinsics": (1.0, 2.0)}, "fx fy cx cy")])
    def test_exception_values(self, kw, match):
        with pytest.raises(ValueError, match=match):
            ReplayConfig(reference_frame_index=0, **kw)

    def test_node_params_validated(self):
        node = NodeParams(gate=GateParams(min_confidence=2.0))
        with pytest.raises(ValueError, match="min_confidence"):
            ReplayConfig(reference_frame_index=0, node=node)


class TestMain:
    @pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
    def test_output_topics_types_stamps_qos(self, tmp_path, storage):
        bag = write_scene_bag(tmp_path / "in", storage)
        out = main(_cfg(storage=storage), bag, tmp_path / "out", PoseDouble())
        assert out == tmp_path / "out"
        got = read_bag(out)
        node = "/mickey_relocalizer"
        assert got["__types__"] == {
            f"{node}/relative_pose": "geometry_msgs/msg/TransformStamped",
            f"{node}/estimate": "mickey_ros/msg/RelativePose",
            "/tf": "tf2_msgs/msg/TFMessage",
        }
        stamps = [frame_stamp(k) for k in range(FRAMES)]
        for topic in (f"{node}/relative_pose", f"{node}/estimate", "/tf"):
            assert [t for t, _ in got[topic]] == stamps
        rel = [m for _, m in got[f"{node}/relative_pose"]]
        assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in rel] == stamps
        assert {(m.header.frame_id, m.child_frame_id) for m in rel} == {
            ("mickey_reference_optical", "mickey_query_optical")}
        est = got[f"{node}/estimate"][3][1]
        assert (est.valid, est.accepted, est.status, est.num_samples) == (True, True, "ok", 2048)
        assert est.reference_stamp.sec == 100
        qos = got["__qos__"]
        assert qos[f"{node}/estimate"] == bags.DEFAULT_QOS
        tf_qos = qos["/tf"][0]  # tf2_ros.TransformBroadcaster: reliable, volatile, keep last 100
        assert (tf_qos.history, tf_qos.depth, tf_qos.reliability, tf_qos.durability) == (
            QosHistory.KEEP_LAST, 100, QosReliability.RELIABLE, QosDurability.VOLATILE)

    def test_namespace_and_pose_topic(self, tmp_path, scene_bag):
        node = NodeParams(output=OutputParams(publish_pose=True))
        out = main(_cfg(node=node, namespace="robot1"), scene_bag, tmp_path / "o", PoseDouble())
        got = read_bag(out)
        pose = got["/robot1/mickey_relocalizer/pose"]
        assert len(pose) == FRAMES
        T_ref_q = np.linalg.inv(gt_T_query_ref(4))
        p = pose[4][1].pose.pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], T_ref_q[:3, 3], atol=1e-9)

    def test_exception_output_exists(self, tmp_path, scene_bag):
        (tmp_path / "o").mkdir()
        with pytest.raises(FileExistsError, match="--overwrite"):
            main(_cfg(), scene_bag, tmp_path / "o", PoseDouble())

    def test_overwrite(self, tmp_path, scene_bag):
        main(_cfg(), scene_bag, tmp_path / "o", PoseDouble())
        main(_cfg(overwrite=True), scene_bag, tmp_path / "o", PoseDouble())
        assert len(read_bag(tmp_path / "o")["/tf"]) == FRAMES

    def test_exception_wrong_topic_lists_topics(self, tmp_path, scene_bag):
        with pytest.raises(BagError) as err:
            main(_cfg(camera_topic="/cam/image"), scene_bag, tmp_path / "o", PoseDouble())
        text = str(err.value)
        assert "camera topic '/cam/image' is not in the bag" in text
        assert "topics of a suitable type: /camera/image_raw, /reference/image" in text
        assert "  /tf_static (tf2_msgs/msg/TFMessage, 1 msgs)" in text
        assert not (tmp_path / "o").exists()

    def test_wrong_topic_is_reported_before_the_network_loads(
        self, tmp_path, scene_bag, monkeypatch
    ):
        import mickey_ros.replay.run as replay_module

        def never(*args, **kwargs):
            raise AssertionError("the network was built before the topics were checked")

        monkeypatch.setattr(replay_module, "build_estimator", never)
        with pytest.raises(BagError, match="is not in the bag"):
            main(_cfg(camera_topic="/cam/image"), scene_bag, tmp_path / "o")


class TestIndependentMcap:
    def test_input_written_by_mcap_ros2(self, tmp_path, scene_bag):
        bare = rewrite_with_mcap_ros2(scene_bag, tmp_path / "scene.mcap")
        result = replay(_cfg(), bare, tmp_path / "o", PoseDouble())
        assert result.summary["gt_frames"] == 10 and result.summary["median_t_err_m"] < 1e-9

    def test_mcap_output_decoded_by_mcap_ros2(self, tmp_path, scene_bag):
        from mcap.reader import make_reader
        from mcap_ros2.decoder import DecoderFactory

        out = main(_cfg(storage="mcap"), scene_bag, tmp_path / "o", PoseDouble())
        with next(out.glob("*.mcap")).open("rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            decoded = [(c.topic, s.name, m.log_time, msg)
                       for s, c, m, msg in reader.iter_decoded_messages()]
        assert {(topic, name) for topic, name, _, _ in decoded} == {
            ("/mickey_relocalizer/relative_pose", "geometry_msgs/msg/TransformStamped"),
            ("/mickey_relocalizer/estimate", "mickey_ros/msg/RelativePose"),
            ("/tf", "tf2_msgs/msg/TFMessage")}
        estimates = [msg for topic, _, _, msg in decoded if topic.endswith("/estimate")]
        assert [e.header.stamp.sec * 10**9 + e.header.stamp.nanosec for e in estimates] == [
            frame_stamp(k) for k in range(FRAMES)]
        e = estimates[2]
        assert (e.child_frame_id, e.accepted, e.num_inliers, e.status) == (
            "mickey_query_optical", True, 1500, "ok")
        T_ref_query = np.linalg.inv(gt_T_query_ref(2))
        v = e.transform.translation
        np.testing.assert_allclose([v.x, v.y, v.z], T_ref_query[:3, 3], atol=1e-9)
        tf = [msg for topic, _, _, msg in decoded if topic == "/tf"]
        assert tf[0].transforms[0].child_frame_id == "mickey_query_optical"


class TestTfModes:
    def _tf(self, tmp_path, scene_bag, tf_mode):
        out = main(_cfg(tf_mode=tf_mode), scene_bag, tmp_path / "o", PoseDouble())
        return read_bag(out)

    def test_relative_is_ground_truth(self, tmp_path, scene_bag):
        got = self._tf(tmp_path, scene_bag, "relative")
        for k, (_, msg) in enumerate(got["/tf"]):
            T = transform_stamped_to_matrix(msg.transforms[0])
            np.testing.assert_allclose(T, np.linalg.inv(gt_T_query_ref(k)), atol=1e-9)

    def test_attach_reference_under_live_camera(self, tmp_path, scene_bag):
        got = self._tf(tmp_path, scene_bag, "attach_reference")
        for k, (_, msg) in enumerate(got["/tf"]):
            ts = msg.transforms[0]
            assert (ts.header.frame_id, ts.child_frame_id) == (
                "camera_optical_frame", "mickey_reference_optical")
            np.testing.assert_allclose(transform_stamped_to_matrix(ts), gt_T_query_ref(k),
                                       atol=1e-9)

    def test_map_to_odom_composes_with_odometry(self, tmp_path, scene_bag):
        # the double's camera centre is off by (0.01 k, 0, 0) m in the keyframe (= map) frame
        offsets = np.zeros((FRAMES, 3))
        offsets[:, 0] = 0.01 * np.arange(FRAMES)
        # a 7 Hz re-broadcast never coincides with the 5 Hz frames, so ticks are told apart
        output = OutputParams(tf_mode="map_to_odom", tf_rebroadcast_hz=7.0)
        cfg = _cfg(node=NodeParams(output=output))
        got = read_bag(main(cfg, scene_bag, tmp_path / "o", PoseDouble(offsets)))
        # T_map_odom = T_map_ref T_ref_query inv(T_odom_query) = Offset_k inv(T_odom_refcam)
        T_map_odom = np.linalg.inv(T_odom_cam(START))
        tf = [(t, m.transforms[0]) for t, m in got["/tf"]]
        assert {(ts.header.frame_id, ts.child_frame_id) for _, ts in tf} == {("map", "odom")}
        stamps = [frame_stamp(k) for k in range(FRAMES)]
        period = int(1e9 / 7.0)
        ticks = [stamps[0] + j * period for j in range(1, 13)]  # up to the last frame
        assert sorted(t for t, _ in tf) == sorted(stamps + ticks)
        for t, ts in tf:
            k = int(np.searchsorted(stamps, t, side="right")) - 1  # latest update at time t
            expected = T_map_odom.copy()
            expected[0, 3] += offsets[k, 0]
            stamp = ts.header.stamp.sec * 10**9 + ts.header.stamp.nanosec
            assert stamp == t + 100_000_000  # future-dated by transform_tolerance_s
            np.testing.assert_allclose(transform_stamped_to_matrix(ts), expected, atol=1e-9)
        anchor = got["/tf_static"][0][1].transforms[0]
        assert (anchor.header.frame_id, anchor.child_frame_id) == (
            "map", "mickey_reference_optical")
        assert got["__qos__"]["/tf_static"] == bags.LATCHED_QOS


    def test_map_to_odom_without_odometry_reports_tf_error(self, tmp_path, scene_bag):
        output = OutputParams(tf_mode="map_to_odom", odom_frame="wheel_odom")
        result = replay(_cfg(node=NodeParams(output=output)), scene_bag, tmp_path / "o",
                        PoseDouble())
        got = read_bag(result.out_bag)
        assert "/tf" not in got and len(got["/mickey_relocalizer/relative_pose"]) == FRAMES
        assert result.tf_issues.count == FRAMES
        assert "no wheel_odom -> camera_optical_frame transform" in result.tf_issues.examples[0]


class TestReplayResults:
    def test_metrics_zero_with_ground_truth_double(self, tmp_path, scene_bag):
        result = replay(_cfg(), scene_bag, tmp_path / "o", PoseDouble())
        s = result.summary
        assert (s["processed"], s["valid"], s["published"], s["gt_frames"]) == (10, 10, 10, 10)
        assert s["median_t_err_m"] < 1e-9 and s["median_r_err_deg"] < 1e-5
        assert s["precision_25cm_5deg"] == 1.0 and s["valid_share"] == 1.0
        assert not result.interrupted and result.tf_issues.count == 0

    def test_offset_gives_exact_translation_error(self, tmp_path, scene_bag):
        result = replay(_cfg(), scene_bag, tmp_path / "o", PoseDouble(offset_m=(0.3, 0.0, 0.4)))
        errors = [r.t_err_m for r in result.records]
        np.testing.assert_allclose(errors, 0.5, atol=1e-9)
        assert result.summary["precision_25cm_5deg"] == 0.0
        assert result.summary["median_r_err_deg"] < 1e-5

    def test_invalid_and_gated_frames(self, tmp_path, scene_bag):
        double = PoseDouble(invalid={code(1), code(2)}, low_confidence={code(5)})
        result = replay(_cfg(), scene_bag, tmp_path / "o", double)
        s = result.summary
        assert (s["valid"], s["published"]) == (8, 7)
        assert (s["valid_share"], s["published_share"]) == (0.8, 0.7)
        assert s["precision_25cm_5deg"] == 0.8  # invalid frames count as wrong
        assert s["published_precision_25cm_5deg"] == 1.0
        assert result.records[5].reason.startswith("low confidence: inlier ratio 0.010")
        got = read_bag(result.out_bag)
        assert len(got["/mickey_relocalizer/estimate"]) == 10
        assert len(got["/mickey_relocalizer/relative_pose"]) == 7

    def test_tum_and_csv(self, tmp_path, scene_bag):
        cfg = _cfg(tum=str(tmp_path / "poses.txt"), csv=str(tmp_path / "r.csv"),
                   plot=str(tmp_path / "report.png"))
        result = replay(cfg, scene_bag, tmp_path / "o", PoseDouble(invalid={code(0)}))
        lines = (tmp_path / "poses.txt").read_text().splitlines()
        assert lines[0].startswith("#") and len(lines) == 1 + 9
        values = np.array(lines[1].split(), dtype=np.float64)
        assert lines[1].split()[0] == f"{frame_stamp(1) / 1e9:.9f}"
        np.testing.assert_allclose(values[1:4], np.linalg.inv(gt_T_query_ref(1))[:3, 3], atol=1e-8)
        assert len((tmp_path / "poses.gt.txt").read_text().splitlines()) == 1 + 10
        rows = list(csv.DictReader((tmp_path / "r.csv").open()))
        assert len(rows) == 10
        assert (rows[0]["valid"], rows[0]["tx"], rows[0]["reason"]) == ("0", "", "too few matches")
        assert rows[3]["stamp_ns"] == str(frame_stamp(3)) and rows[3]["published"] == "1"
        assert float(rows[3]["t_err_m"]) == 0.0
        assert (tmp_path / "report.png").stat().st_size > 10_000
        assert set(result.files) == {"tum", "tum ground truth", "csv", "plot"}

    def test_plot_marks_a_partial_run(self, tmp_path, scene_bag, monkeypatch):
        partials = []
        monkeypatch.setattr(run_module, "plot_report",
                            lambda path, records, title, gate, partial: partials.append(partial))
        replay(_cfg(plot=str(tmp_path / "a.png")), scene_bag, tmp_path / "o", PoseDouble())
        replay(_cfg(max_frames=2, plot=str(tmp_path / "b.png")), scene_bag, tmp_path / "o2",
               PoseDouble())
        assert partials == ["", "stopped at --max-frames 2"]

    def test_every_and_max_frames(self, tmp_path, scene_bag):
        result = replay(_cfg(every=3), scene_bag, tmp_path / "o", PoseDouble())
        assert [r.stamp_ns for r in result.records] == [frame_stamp(k) for k in (0, 3, 6, 9)]
        result = replay(_cfg(max_frames=2), scene_bag, tmp_path / "o2", PoseDouble())
        assert len(result.records) == 2

    def test_reference_frame_index(self, tmp_path, scene_bag):
        cfg = _cfg(reference_topic="", reference_frame_index=4)
        result = replay(cfg, scene_bag, tmp_path / "o", PoseDouble())
        np.testing.assert_allclose(result.records[4].T_ref_query, np.eye(4), atol=1e-12)
        assert result.summary["median_t_err_m"] < 1e-9  # GT relative to frame 4's camera

    def test_reference_image_file(self, tmp_path, scene_bag):
        import cv2

        cv2.imwrite(str(tmp_path / "ref.png"), _rgb(REF_CODE))
        cfg = _cfg(reference_topic="", reference_image=str(tmp_path / "ref.png"),
                   reference_intrinsics=(40.0, 40.0, 16.0, 12.0))
        result = replay(cfg, scene_bag, tmp_path / "o", PoseDouble())
        assert result.summary["published"] == 10
        assert "gt_frames" not in result.summary  # a file keyframe has no TF ground truth
        assert result.tf_issues.examples[0].startswith("reference keyframe: no ground truth")

    def test_compressed_images(self, tmp_path):
        bag = write_scene_bag(tmp_path / "in", "mcap", compressed=True)
        result = replay(_cfg(camera_topic="/camera/image_raw/compressed"), bag, tmp_path / "o",
                        PoseDouble())
        assert result.summary["median_t_err_m"] < 1e-9 and result.summary["published"] == 10


class TestDamage:
    @pytest.mark.parametrize("keyframe", [{}, {"reference_topic": "", "reference_frame_index": 4}])
    def test_garbage_message_and_bad_image_are_reported(self, tmp_path, keyframe):
        bag = write_scene_bag(tmp_path / "in", garbage=True, bad_image_at=2)
        result = replay(_cfg(**keyframe), bag, tmp_path / "o", PoseDouble())  # counted once
        assert result.summary["processed"] == 9
        assert result.read_issues.count == 1 and "/camera/image_raw @ 102.100 s" in \
            result.read_issues.examples[0]
        assert result.frame_issues.count == 1
        assert "unsupported image encoding 'weird16'" in result.frame_issues.examples[0]
        assert "frames: 1 frame(s) never reached the estimator, e.g.:" in result.report()

    def test_refused_keyframe_topic_is_counted(self, tmp_path, scene_bag):
        result = replay(_cfg(), scene_bag, tmp_path / "o", PoseDouble(refuse_reference=True))
        assert result.frame_issues.count == 1
        assert "keyframe from topic /reference/image rejected: reference is 32x24 px" in \
            result.frame_issues.examples[0]
        assert result.summary["published"] == 0
        assert {r.reason.split(":")[0] for r in result.records} == {"no reference keyframe yet"}

    def test_exception_refused_start_keyframe(self, tmp_path, scene_bag):
        cfg = _cfg(reference_topic="", reference_frame_index=0)
        with pytest.raises(ValueError, match="keyframe from live frame 0 rejected"):
            replay(cfg, scene_bag, tmp_path / "o", PoseDouble(refuse_reference=True))

    def test_ctrl_c_leaves_valid_bag_and_summary(self, tmp_path, scene_bag):
        cfg = _cfg(csv=str(tmp_path / "r.csv"))
        result = replay(cfg, scene_bag, tmp_path / "o", PoseDouble(interrupt_after=4))
        assert result.interrupted and result.summary["processed"] == 4
        got = read_bag(result.out_bag)
        assert len(got["/mickey_relocalizer/estimate"]) == 4
        assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 4
        assert "(interrupted: partial)" in result.report()


class TestCli:
    def _cfg(self, *flags):
        from mickey_ros.cli.main import build_parser
        from mickey_ros.cli.replay import replay_config

        return replay_config(build_parser().parse_args(["replay", "bag", *flags]))

    def test_flags_to_config(self):
        cfg = self._cfg("--reference-image", "k.png", "--reference-K", "600,601,320,240",
                        "--checkpoint", "m.ckpt", "--device", "cpu", "--resize", "320", "240",
                        "--tf-mode", "map_to_odom", "--min-confidence", "0.2", "--every", "3",
                        "--camera-info-mode", "latest", "--publish-pose", "--storage", "mcap")
        node = cfg.node
        assert (cfg.reference_image, cfg.reference_intrinsics) == ("k.png", (600, 601, 320, 240))
        assert (node.model.checkpoint, node.model.device) == ("m.ckpt", "cpu")
        assert (node.model.input_width, node.model.input_height) == (320, 240)
        assert (node.output.tf_mode, node.output.publish_pose) == ("map_to_odom", True)
        assert (node.gate.min_confidence, node.input.camera_info_mode) == (0.2, "latest")
        assert (cfg.every, cfg.storage, cfg.camera_topic) == (3, "mcap", "/camera/image_raw")

    def test_default_model_is_demo(self):
        assert self._cfg("--reference-frame-index", "0").node.model.checkpoint == "demo"

    def test_params_file_then_flags(self):
        params = Path(__file__).parents[2] / "config" / "relocalize.yaml"
        cfg = self._cfg("--reference-frame-index", "0", "--params", str(params),
                        "--model-config", "mickey_tiny")
        assert (cfg.node.model.config, cfg.node.model.checkpoint) == ("mickey_tiny", "")
        assert cfg.node.model.device == "cuda"  # from the file: --device not given
        assert cfg.node.solver.num_samples == 2048

    def test_exception_bad_reference_k(self):
        from mickey_ros.cli.main import UserError

        with pytest.raises(UserError, match="--reference-K expects 4 comma-separated numbers"):
            self._cfg("--reference-image", "k.png", "--reference-K", "1,2")

    def test_demo_without_bundled_model(self, tmp_path, monkeypatch, capsys):
        from mickey_ros.cli.main import main as cli_main
        from mickey_ros.estimator import relative_pose as estimator

        monkeypatch.setattr(estimator, "DEMO_CHECKPOINT", tmp_path / "demo_model.ckpt")
        assert cli_main(["demo", "--workdir", str(tmp_path / "w")]) == 2
        err = capsys.readouterr().err
        assert "the bundled demo model is not there yet" in err and "mickey-train" in err
        assert not (tmp_path / "w").exists()  # nothing rendered for nothing
