"""The node's wiring (mickey_ros.ros) on an in-process fake of the ROS 2 Python APIs.

A model double replaces the network. What this cannot show (DDS, QoS matching, real rclpy) is
covered in CI by test/ros_wheels/test_node_real_rclpy.py (ROS 2 wheels) and, with the real
cv_bridge, tf2_ros and launch, by test/ros/test_relocalize_launch.py on a ROS machine.
"""

from __future__ import annotations

import time

import fake_ros
import numpy as np
import pytest

from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.relocalization import messages

H, W = 48, 64
K = np.array([[60.0, 0.0, 32.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]])
T_QUERY_REF = np.eye(4)
T_QUERY_REF[:3, 3] = [0.1, -0.2, 0.5]
TYPES = fake_ros.rosbags_types()


class PoseDouble:
    def __init__(self):
        self.reference, self.calls = None, 0

    @property
    def has_reference(self):
        return self.reference is not None

    def set_reference(self, image, K):
        self.reference = image

    def clear_reference(self):
        self.reference = None

    def estimate(self, image, K):
        self.calls += 1
        return PoseEstimate(valid=True, R=T_QUERY_REF[:3, :3], t=T_QUERY_REF[:3, 3],
                            confidence=512.0, num_inliers=400, num_samples=2048)


@pytest.fixture
def ros_fake(monkeypatch):
    fake_ros.install(monkeypatch)
    yield
    fake_ros.forget_node_modules()


@pytest.fixture
def make_node(ros_fake, monkeypatch):
    from mickey_ros.ros import node as node_module

    double = PoseDouble()
    monkeypatch.setattr(node_module, "load_estimator", lambda params, logger: double)
    nodes = []

    def make(**overrides):
        node = node_module.RelocalizeNode(parameter_overrides=overrides)
        node.double = double
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.release()


def rgb(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def feed(node, prefix, stamp_ns, image=None, info=None, frame_id="cam_optical"):
    image = image or messages.rgb_to_image_msg(TYPES, rgb(), stamp_ns, frame_id)
    info = info or messages.camera_info_msg(TYPES, K, W, H, stamp_ns, frame_id)
    for topic, msg in ((f"{prefix}image", image), (f"{prefix}camera_info", info)):
        (sub,) = node.subscribed(topic)
        sub.callback(msg)


def wait_for(predicate, timeout_s=10.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not predicate():
        time.sleep(0.01)
    return predicate()


def sent(node, topic):
    return [m for p in node.topic(topic) for m in p.sent]


class TestParameters:
    def test_every_parameter_declared_with_descriptor(self, make_node):
        from mickey_ros.relocalization.params import parameter_specs

        node = make_node()
        names = {spec.name for spec in parameter_specs()}
        assert set(node.params) == names | {"diagnostic_updater.period"}
        d = node.descriptors["gate.min_confidence"]
        assert not d.read_only and d.floating_point_range[0].to_value == 1.0
        assert node.descriptors["model.checkpoint"].read_only
        assert node.descriptors["model.input_width"].integer_range[0].to_value == 4096
        assert "one of" in node.descriptors["output.tf_mode"].additional_constraints
        assert node.params["output.map_to_reference"] == [0.0] * 6 + [1.0]

    def test_dynamic_update_and_refusals(self, make_node):
        node = make_node()
        assert node.start()
        assert node.set_parameters({"gate.min_confidence": 0.9})[0].successful
        assert node._processor.session.config.min_confidence == 0.9
        assert not node.set_parameters({"model.device": "cpu"})[0].successful  # read-only
        result = node.set_parameters({"gate.min_confidence": 1.5})[0]
        assert not result.successful and "min_confidence" in result.reason


class TestStartup:
    def test_missing_weights_fail_configure_with_the_reason(self, make_node, monkeypatch):
        from mickey_ros.ros import node as node_module

        def missing(params, logger):
            raise FileNotFoundError("checkpoint /models/mickey.ckpt does not exist")

        monkeypatch.setattr(node_module, "load_estimator", missing)
        node = make_node()
        assert not node.start()
        assert node.state == "unconfigured"
        assert ("fatal", "configure failed: FileNotFoundError: checkpoint /models/mickey.ckpt "
                "does not exist") in node.logger.records

    def test_disk_keyframe_needs_intrinsics(self, make_node, tmp_path):
        node = make_node(**{"reference.image_path": str(tmp_path / "ref.png")})
        assert not node.start()
        assert "reference.intrinsics" in node.logger.records[-1][1]


class TestPipeline:
    def test_keyframe_and_frame_give_all_outputs(self, make_node):
        node = make_node(**{"output.publish_pose": True})
        assert node.start() and node.state == "active"
        feed(node, "/ns/reference/", 1_000)
        assert wait_for(lambda: node.double.reference is not None)
        feed(node, "/ns/", 2_000_000_000)
        assert wait_for(lambda: sent(node, "/ns/mickey_relocalizer/pose"))  # published last
        (estimate,) = sent(node, "/ns/mickey_relocalizer/estimate")
        assert (estimate.status, estimate.accepted) == ("ok", True)
        assert messages.stamp_to_ns(estimate.reference_stamp) == 1_000
        (relative,) = sent(node, "/ns/mickey_relocalizer/relative_pose")
        assert (relative.header.frame_id, relative.child_frame_id) == (
            "mickey_reference_optical", "mickey_query_optical")
        assert messages.stamp_to_ns(relative.header.stamp) == 2_000_000_000
        np.testing.assert_allclose(messages.transform_stamped_to_matrix(relative),
                                   np.linalg.inv(T_QUERY_REF), atol=1e-12)
        (tf,) = sent(node, "/tf")
        assert tf.transforms[0].child_frame_id == "mickey_query_optical"
        assert len(sent(node, "/ns/mickey_relocalizer/pose")) == 1

    @pytest.mark.parametrize("bad, reason", [
        ({"image": "unknown"}, "unsupported image encoding 'weird'"),
        ({"info": "zero_k"}, "K = 0"),
        ({"image": "truncated"}, "truncated"),
        ({"info": "other_size"}, "but its CameraInfo says 32x24"),
    ])
    def test_bad_frames_are_counted_and_node_keeps_going(self, make_node, bad, reason):
        node = make_node()
        assert node.start()
        feed(node, "/ns/reference/", 1_000)
        stamp = 2_000_000_000
        image = messages.rgb_to_image_msg(TYPES, rgb(), stamp, "cam_optical")
        info = messages.camera_info_msg(TYPES, K, W, H, stamp, "cam_optical")
        if bad.get("image") == "unknown":
            image.encoding = "weird"
        if bad.get("image") == "truncated":
            image.data = image.data[:-5]
        if bad.get("info") == "zero_k":
            info.k = np.zeros(9)
        if bad.get("info") == "other_size":
            info.width, info.height = 32, 24
        feed(node, "/ns/", stamp, image, info)
        stats = node._processor.session.stats
        assert wait_for(lambda: stats.bad_frames == 1)
        assert reason in stats.last_reason
        assert any(level == "warn" and reason in msg for level, msg in node.logger.records)
        feed(node, "/ns/", stamp + 1)  # the next good frame is processed
        assert wait_for(lambda: sent(node, "/ns/mickey_relocalizer/estimate"))

    def test_16uc1_falls_back_from_cv_bridge(self, make_node):
        node = make_node()
        assert node.start()
        feed(node, "/ns/reference/", 1_000)
        grey = (rgb()[:, :, 0].astype("<u2") * 257).tobytes()
        image = TYPES.Image(header=messages.header_msg(TYPES, 5, "cam_optical"), height=H,
                            width=W, encoding="16UC1", is_bigendian=0, step=2 * W,
                            data=np.frombuffer(grey, np.uint8).copy())
        feed(node, "/ns/", 5, image=image)
        assert wait_for(lambda: sent(node, "/ns/mickey_relocalizer/estimate"))

    def test_capture_reference(self, make_node):
        from std_srvs.srv import Trigger

        node = make_node()
        assert node.trigger_configure().name == "SUCCESS"
        service = node.services["/ns/mickey_relocalizer/capture_reference"]
        assert not service(Trigger.Request(), Trigger.Response()).success  # not active yet
        assert node.trigger_activate().name == "SUCCESS"
        response = service(Trigger.Request(), Trigger.Response())
        assert response.success and "/ns/image" in response.message
        feed(node, "/ns/", 3_000)
        assert wait_for(lambda: node.double.reference is not None)
        assert node._processor.keyframe_source == "~/capture_reference"
        assert sent(node, "/ns/mickey_relocalizer/estimate") == []  # the keyframe itself

    def test_latest_camera_info_and_compressed(self, make_node):
        node = make_node(**{"input.camera_info_mode": "latest", "input.use_compressed": True})
        assert node.start()
        feed(node, "/ns/reference/", 1_000)
        (info_sub,) = node.subscribed("/ns/camera_info")
        (image_sub,) = node.subscribed("/ns/image/compressed")
        image_sub.callback(messages.rgb_to_compressed_image_msg(TYPES, rgb(), 7, "cam_optical"))
        stats = node._processor.session.stats
        assert wait_for(lambda: stats.bad_frames == 1) and "no CameraInfo" in stats.last_reason
        info_sub.callback(messages.camera_info_msg(TYPES, K, W, H, 0, "cam_optical"))
        image_sub.callback(messages.rgb_to_compressed_image_msg(TYPES, rgb(), 8, "cam_optical"))
        assert wait_for(lambda: sent(node, "/ns/mickey_relocalizer/estimate"))
        assert messages.stamp_to_ns(sent(node, "/ns/mickey_relocalizer/estimate")[0]
                                    .header.stamp) == 8


class TestMapToOdom:
    def test_static_anchor_future_dated_map_to_odom_and_rebroadcast(self, make_node):
        node = make_node(**{"output.tf_mode": "map_to_odom",
                            "output.transform_tolerance_s": 0.5})
        assert node.start()
        (static,) = sent(node, "/tf_static")
        assert static.transforms[0].child_frame_id == "mickey_reference_optical"
        buffer = node._outputs.tf_buffer
        buffer.transforms[("odom", "cam_optical")] = messages.transform_stamped_msg(
            TYPES, np.eye(4), 0, "odom", "cam_optical")
        feed(node, "/ns/reference/", 1_000)
        feed(node, "/ns/", 2_000_000_000)
        assert wait_for(lambda: sent(node, "/tf"))
        edge = sent(node, "/tf")[0].transforms[0]
        assert (edge.header.frame_id, edge.child_frame_id) == ("map", "odom")
        assert messages.stamp_to_ns(edge.header.stamp) == 2_500_000_000
        (timer,) = node.timers[-1:]
        timer.callback()
        assert len(sent(node, "/tf")) == 2

    def test_clock_jump_back_resets(self, make_node):
        node = make_node(**{"output.tf_mode": "map_to_odom"})
        assert node.start()
        feed(node, "/ns/reference/", 1_000)
        assert wait_for(lambda: node.double.reference is not None)
        node.clock.jump_to(0)
        assert node._outputs.tf_buffer.cleared == 1
        assert wait_for(lambda: node._processor.session.reference is None)
        assert node._processor.session.stats.resets == 1


class TestDiagnosticsAndTeardown:
    def test_diagnostics(self, make_node):
        node = make_node()
        status = node._updater.run()
        assert status["inference"].message == "model not loaded"
        assert node.start()
        node.publisher_counts["/ns/image"] = 1
        status = node._updater.run()
        assert status["input image"].level == b"\x01"
        assert "QoS mismatch" in status["input image"].message
        assert status["reference keyframe"].level == b"\x01"
        assert status["pose quality"].values["processed"] == "0"

    def test_keyframe_qos_override_applies_to_its_topic_only(self, make_node):
        # rclpy writes qos_overrides into the profile object it is given (issue 14)
        from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

        node = make_node(**{"qos_overrides./ns/reference/image.subscription.durability":
                            "volatile"})
        assert node.start()
        (image,) = node.subscribed("/ns/reference/image")
        (info,) = node.subscribed("/ns/reference/camera_info")
        assert (image.qos.durability, info.qos.durability) == (
            DurabilityPolicy.VOLATILE, DurabilityPolicy.TRANSIENT_LOCAL)
        assert (image.qos.depth, info.qos.reliability) == (1, ReliabilityPolicy.RELIABLE)

    def test_deactivate_and_cleanup_release_everything(self, make_node):
        node = make_node()
        assert node.start()
        assert len(node.subscriptions) == 4
        assert node.trigger_deactivate().name == "SUCCESS"
        assert node.subscriptions == [] and not node._processor.running
        assert node.trigger_cleanup().name == "SUCCESS"
        assert node._processor is None and node.services == {}
        assert [p.topic for p in node.publishers] == ["/diagnostics"] or node.publishers == []



def test_fakes_do_not_leak():
    """Runs after the tests above (file order): no fake stays behind for other test files."""
    import sys

    assert "mickey_ros.ros.node" not in sys.modules
    assert "fake_ros" not in repr(sys.modules.get("rclpy.lifecycle"))
