"""The node's wiring (mickey_ros.ros) on an in-process fake of the ROS 2 Python APIs.

A model double replaces the network. What this cannot show (DDS, QoS matching, real rclpy) is
covered in CI by test/ros_wheels/test_node_real_rclpy.py (ROS 2 wheels) and, with the real
cv_bridge, tf2_ros and launch, by test/ros/test_relocalize_launch.py on a ROS machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

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


def _node_factory(monkeypatch, estimator, **defaults):
    """``make(**overrides)`` of nodes whose model is ``node.estimators[0]`` (swappable), and
    the list of nodes made (released by the fixture)."""
    from mickey_ros.ros import node as node_module

    estimators = [estimator]
    monkeypatch.setattr(node_module, "load_estimator", lambda params, logger: estimators[0])
    nodes = []

    def make(**overrides):
        node = node_module.RelocalizeNode(parameter_overrides={**defaults, **overrides})
        node.double, node.estimators = estimator, estimators
        nodes.append(node)
        return node

    return make, nodes


@pytest.fixture
def make_node(ros_fake, monkeypatch):
    make, nodes = _node_factory(monkeypatch, PoseDouble())
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
        assert node._processor is None
        assert [p.topic for p in node.publishers] == ["/diagnostics"] or node.publishers == []

    def test_capture_reference_answers_after_cleanup(self, make_node):
        # issue 28: the service went with cleanup and a call waited forever
        from std_srvs.srv import Trigger

        node = make_node()
        assert node.start()
        assert node.trigger_deactivate().name == "SUCCESS"
        service = node.services["/ns/mickey_relocalizer/capture_reference"]
        response = service(Trigger.Request(), Trigger.Response())
        assert (response.success, response.message) == (
            False, "node is not active: ros2 lifecycle set <node> activate")
        assert node.trigger_cleanup().name == "SUCCESS"
        assert list(node.services) == ["/ns/mickey_relocalizer/capture_reference",
                                       "/ns/mickey_relocalizer/capture_keyframe"]
        response = service(Trigger.Request(), Trigger.Response())
        assert (response.success, response.message) == (
            False, "node is not active: ros2 lifecycle set <node> configure, then activate")
        assert node.start()  # configure again: one service each, still answering
        assert list(node.services) == ["/ns/mickey_relocalizer/capture_reference",
                                       "/ns/mickey_relocalizer/capture_keyframe"]
        assert service(Trigger.Request(), Trigger.Response()).success


class TestSteadyClock:
    """Latency and rates on a steady clock, stamps on the ROS clock (issue 28).

    A 10 Hz stream played at 5x under sim time showed ``e2e_ms`` 1161 and 2.2 Hz: both were
    measured on the sim clock, which runs 5 s per second and moves in /clock steps.
    """

    def test_e2e_counts_wall_time_under_sim_time(self, make_node):
        node = make_node()
        node.clock.ros_time_is_active = True
        assert node.start()
        feed(node, "/ns/reference/", 1_000)
        assert wait_for(lambda: node.double.reference is not None)
        stamp = node.clock.ns
        with node._processor.lock:  # the worker waits here with the frame, 0.2 s of wall time
            feed(node, "/ns/", stamp)
            node.clock.ns += 5_000_000_000  # ... while the sim clock runs 5 s ahead
            time.sleep(0.2)
        assert wait_for(lambda: sent(node, "/ns/mickey_relocalizer/estimate"))
        (estimate,) = sent(node, "/ns/mickey_relocalizer/estimate")
        assert messages.stamp_to_ns(estimate.header.stamp) == stamp  # stamps stay ROS time
        assert 200.0 <= estimate.e2e_ms < 4000.0
        assert 200.0 <= node._processor.e2e.mean_ms < 4000.0

    def test_e2e_adds_the_transport_time_on_real_time(self, make_node):
        node = make_node()
        assert node.start()
        feed(node, "/ns/reference/", 1_000)
        assert wait_for(lambda: node.double.reference is not None)
        feed(node, "/ns/", node.clock.ns - 300_000_000)  # received 0.3 s after its stamp
        assert wait_for(lambda: sent(node, "/ns/mickey_relocalizer/estimate"))
        (estimate,) = sent(node, "/ns/mickey_relocalizer/estimate")
        assert 300.0 <= estimate.e2e_ms < 3000.0

    def test_input_rate_in_wall_seconds_while_the_sim_clock_stands(self, make_node):
        node = make_node()
        node.clock.ros_time_is_active = True
        assert node.start()
        node.publisher_counts["/ns/image"] = 1
        for k in range(11):  # 11 frames 20 ms apart: 50 Hz on the wall clock; sim time stands
            feed(node, "/ns/", node.clock.ns + k)
            time.sleep(0.02)
        status = node._updater.run()["input image"]
        assert status.level == b"\x00"
        assert 10.0 < float(status.values["rate_hz"]) <= 51.0


class TestRejectionStatus:
    def test_names_the_soft_sum_and_the_hard_count(self, make_node):
        # issue 28: "70/2048 soft inliers" beside num_inliers 63 read as one count
        node = make_node(**{"gate.min_confidence": 0.5})
        assert node.start()
        feed(node, "/ns/reference/", 1_000)
        feed(node, "/ns/", 2_000_000_000)
        assert wait_for(lambda: sent(node, "/ns/mickey_relocalizer/estimate"))
        (estimate,) = sent(node, "/ns/mickey_relocalizer/estimate")
        assert (estimate.accepted, estimate.num_inliers, estimate.confidence) == (False, 400, 512)
        assert estimate.status == (
            "low confidence: inlier ratio 0.250 < min_confidence 0.500 (soft-inlier sum 512 of "
            "2048 sampled matches; hard inlier count 400)")



# ---------------------------------------------------------------------------- keyframe library
sys.path.insert(0, str(Path(__file__).resolve().parent / "keyframes"))  # as its conftest does
from kf_helpers import FAST_SOLVER, pose_at, textured  # noqa: E402
from kf_helpers import K as K_KF  # noqa: E402

KF_H, KF_W = 112, 140  # textured()
LIB_NODE = "/ns/mickey_relocalizer"


def tf_msg(T, parent, child):
    return messages.transform_stamped_msg(TYPES, T, 0, parent, child)


@pytest.fixture(scope="module")
def tiny_estimator():
    from small_models import small_demo_cnn

    from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator

    return RelativePoseEstimator.from_model_config(small_demo_cnn(),
                                                   EstimatorConfig(solver=FAST_SOLVER))


@pytest.fixture
def library_dir(tmp_path, tiny_estimator):
    """A library of 3 keyframes 5 m apart along the map's x axis (tiny random-weight model)."""
    from mickey_ros.keyframes import KeyframeLibrary, feature_source

    root = tmp_path / "lib"
    lib = KeyframeLibrary.create(root, tiny_estimator, feature_source(tiny_estimator))
    for i in range(3):
        lib.add(textured(i), K_KF, pose_at(5.0 * i))
    return root


@pytest.fixture
def make_library_node(ros_fake, monkeypatch, tiny_estimator):
    make, nodes = _node_factory(monkeypatch, tiny_estimator, **{
        "gate.min_confidence": 0.0, "output.publish_pose": True})
    yield lambda library, **overrides: make(**{"keyframes.library": str(library), **overrides})
    for node in nodes:
        node.release()


def feed_kf(node, seed, stamp_ns):
    image = messages.rgb_to_image_msg(TYPES, textured(seed), stamp_ns, "cam_optical")
    info = messages.camera_info_msg(TYPES, K_KF, KF_W, KF_H, stamp_ns, "cam_optical")
    feed(node, "/ns/", stamp_ns, image, info)


def warned(node, text):
    return [msg for level, msg in node.logger.records if level == "warn" and text in msg]


def call(node, service):
    from std_srvs.srv import Trigger

    return node.services[f"{LIB_NODE}/{service}"](Trigger.Request(), Trigger.Response())


class TestKeyframeLibraryMode:
    def test_frame_localised_in_the_map_as_the_library_session_does(self, make_library_node,
                                                                    library_dir, tiny_estimator):
        from mickey_ros.keyframes.localizer import LocalizerConfig
        from mickey_ros.keyframes.session import open_library_session

        node = make_library_node(library_dir, **{"output.tf_mode": "map_to_odom"})
        assert node.start()
        assert ("info", f"keyframe library {library_dir}: 3 keyframes in use, 0 skipped, 0 "
                "features recomputed") in node.logger.records
        assert sent(node, "/tf_static") == []  # no single anchor: each keyframe is one
        assert node.subscribed("/ns/reference/image") == []
        T_odom_cam = pose_at(0.3)
        node._outputs.tf_buffer.transforms[("odom", "cam_optical")] = tf_msg(
            T_odom_cam, "odom", "cam_optical")
        for k, seed in enumerate((1, 2)):
            feed_kf(node, seed, (k + 2) * 10**9)
            assert wait_for(lambda k=k: len(sent(node, f"{LIB_NODE}/pose")) == k + 1)
        # the same frames through the ROS-free session of replay: the same poses
        session = open_library_session(library_dir, tiny_estimator, node._processor.params,
                                       LocalizerConfig.from_node_params(node._processor.params))
        from mickey_ros.relocalization.session import Frame

        for k, (seed, pose) in enumerate(zip((1, 2), sent(node, f"{LIB_NODE}/pose"))):
            expected = session.process(Frame(textured(seed), K_KF, (k + 2) * 10**9,
                                             "cam_optical"), (k + 2) * 10**9, T_odom_cam)
            assert pose.header.frame_id == "map"
            T_node = pose_matrix(pose)
            # float32 solver rotation through a quaternion: equal to 1e-6
            np.testing.assert_allclose(T_node, expected.pose.T_parent_child, atol=1e-6)
        last = node._processor.library.last
        assert last.keyframe.id == session.last.keyframe.id
        edge = sent(node, "/tf")[-1].transforms[0]
        assert (edge.header.frame_id, edge.child_frame_id) == ("map", "odom")
        np.testing.assert_allclose(messages.transform_stamped_to_matrix(edge),
                                   expected.pose.T_parent_child @ np.linalg.inv(T_odom_cam),
                                   atol=1e-6)
        status = node._updater.run()["reference keyframe"]
        assert status.level == b"\x00"
        assert status.values["keyframe"] == last.keyframe.id
        assert status.values["runner_up"] == last.runner_up_id != ""
        assert status.values["runner_up_confidence"] == f"{last.runner_up_confidence:.1f}"
        estimate = sent(node, f"{LIB_NODE}/estimate")[-1]  # the message names them too
        assert (estimate.keyframe_id, estimate.runner_up_confidence) == (
            last.keyframe.id, pytest.approx(last.runner_up_confidence))
        assert estimate.runner_up_confidence > 0

    def test_prior_from_tf_and_dynamic_selection(self, make_library_node, library_dir):
        node = make_library_node(library_dir, **{"keyframes.retrieval": False})
        assert node.start()
        buffer = node._outputs.tf_buffer
        buffer.transforms[("map", "cam_optical")] = tf_msg(pose_at(100.0), "map", "cam_optical")
        feed_kf(node, 1, 2 * 10**9)
        assert wait_for(lambda: sent(node, f"{LIB_NODE}/estimate"))
        (estimate,) = sent(node, f"{LIB_NODE}/estimate")
        assert (estimate.accepted, estimate.status) == (False, (
            "no keyframe within 3 m and 60 deg of the pose prior (turn retrieval on to search by "
            "appearance: replay without --no-retrieval, node parameter keyframes.retrieval true)"))
        assert sent(node, f"{LIB_NODE}/pose") == []
        assert node.set_parameters({"keyframes.prior_radius_m": 200.0, "keyframes.k": 1})[
            0].successful
        feed_kf(node, 1, 3 * 10**9)
        assert wait_for(lambda: sent(node, f"{LIB_NODE}/pose"))
        last = node._processor.library.last
        assert (last.mode, last.candidates) == ("prior", ["kf00002"])  # nearest to x = 100
        assert not node.set_parameters({"keyframes.library": ""})[0].successful  # read-only

    def test_capture_keyframe_persists_across_a_restart(self, make_library_node, tmp_path):
        root = tmp_path / "new_lib"
        node = make_library_node(root)
        assert call(node, "capture_keyframe").message == (
            "node is not active: ros2 lifecycle set <node> configure, then activate")
        assert node.start()
        assert warned(node, f"keyframe library {root} did not exist: created it empty")
        assert call(node, "capture_keyframe").message == (
            "no live frame received yet: a keyframe is the newest live frame")
        feed_kf(node, 1, 2 * 10**9)
        assert wait_for(lambda: sent(node, f"{LIB_NODE}/estimate"))
        assert sent(node, f"{LIB_NODE}/estimate")[0].status == (
            f"keyframe library {root} has no usable keyframe: build one with `mickey-ros "
            "keyframes build` or capture one")
        assert node._updater.run()["reference keyframe"].level == b"\x02"
        response = call(node, "capture_keyframe")
        assert not response.success
        assert response.message == (
            "no map -> 'cam_optical' transform in TF at the frame's stamp 2.000 s: the keyframe "
            "needs the camera's map pose (is a localiser publishing map -> odom?)")
        node._outputs.tf_buffer.transforms[("map", "cam_optical")] = tf_msg(
            pose_at(2.5), "map", "cam_optical")
        response = call(node, "capture_keyframe")
        assert (response.success, response.message) == (
            True, f"keyframe kf00000 added to {root} at (2.50, 0.00, 0.00) in map: 1 keyframes")
        assert not call(node, "capture_reference").success  # library mode: the other service
        node.release()
        # a new node on the same directory: the captured keyframe is there and localises
        again = make_library_node(root)
        assert again.start()
        library = again._processor.library.localizer.library
        assert [e.id for e in library.entries] == ["kf00000"]
        np.testing.assert_allclose(library.entries[0].T_map_camera, pose_at(2.5))
        feed_kf(again, 1, 3 * 10**9)
        assert wait_for(lambda: sent(again, f"{LIB_NODE}/pose"))
        assert again._processor.library.last.keyframe.id == "kf00000"

    def test_clock_jump_back_forgets_the_track_not_the_library(self, make_library_node,
                                                               library_dir):
        node = make_library_node(library_dir)
        assert node.start()
        feed_kf(node, 1, 2 * 10**9)
        assert wait_for(lambda: sent(node, f"{LIB_NODE}/pose"))
        processor = node._processor
        assert processor.library.localizer._last_index == 1
        node.clock.jump_to(0)
        assert wait_for(lambda: processor.session.stats.resets == 1)
        assert processor.library.localizer._last_index is None  # the track is gone
        assert len(processor.library.localizer.library) == 3
        assert processor.keyframe_source == f"keyframe library {library_dir}"

    def test_capture_keyframe_refused_in_single_keyframe_mode(self, make_node):
        node = make_node()
        assert node.start()
        response = call(node, "capture_keyframe")
        assert (response.success, response.message) == (False, (
            "single-keyframe mode: set keyframes.library to a library directory (then cleanup "
            "+ configure) to capture keyframes"))

    def test_missing_keyframe_files_are_skipped(self, make_library_node, library_dir):
        (library_dir / "images" / "kf00001.png").unlink()
        (library_dir / "features" / "kf00001.npz").write_bytes(b"not a zip")
        node = make_library_node(library_dir)
        assert node.start()
        assert len(warned(node, "keyframe 'kf00001' skipped")) == 1
        assert warned(node, f"keyframe library {library_dir}: 1 of 3 keyframes skipped")
        status = node._updater.run()["reference keyframe"]
        assert status.level == b"\x01" and status.values["skipped"] == "1"
        feed_kf(node, 2, 2 * 10**9)
        assert wait_for(lambda: sent(node, f"{LIB_NODE}/pose"))  # the others still work
        assert "kf00001" in (library_dir / "manifest.json").read_text()  # nothing lost

    def test_library_of_another_model_is_recomputed(self, make_library_node, library_dir):
        from small_models import small_demo_cnn

        from mickey_ros.estimator.relative_pose import RelativePoseEstimator

        import torch

        node = make_library_node(library_dir)
        other = RelativePoseEstimator.from_model_config(small_demo_cnn())
        with torch.no_grad():  # other weights: another hash
            next(other.model.parameters()).add_(1.0)
        node.estimators[0] = other
        assert node.start()
        (line,) = warned(node, "recomputing the features of 3 keyframes from their images")
        assert line.startswith(f"keyframe library {library_dir} was built with ")
        assert node._processor.library.localizer.library.recomputed == 3

    def test_corrupt_manifest_fails_configure_with_one_line(self, make_library_node,
                                                            library_dir):
        (library_dir / "manifest.json").write_text("{")
        node = make_library_node(library_dir)
        assert not node.start() and node.state == "unconfigured"
        level, message = node.logger.records[-1]
        assert level == "fatal" and message.startswith("configure failed: LibraryError: ")
        assert str(library_dir) in message


def pose_matrix(pose):
    """(4, 4) of a PoseWithCovarianceStamped."""
    from mickey_ros.geometry.pose import transform_from_xyz_qxyzw

    p, q = pose.pose.pose.position, pose.pose.pose.orientation
    return transform_from_xyz_qxyzw([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])


def test_fakes_do_not_leak():
    """Runs after the tests above (file order): no fake stays behind for other test files."""
    import sys

    assert "mickey_ros.ros.node" not in sys.modules
    assert "fake_ros" not in repr(sys.modules.get("rclpy.lifecycle"))
