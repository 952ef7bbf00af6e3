"""launch_testing: the relocalize node with a tiny random model, keyframe + frames in, poses out.

Runs on a ROS 2 machine (``colcon test``, registered with add_launch_test in CMakeLists.txt, or
``launch_test test/ros/test_relocalize_launch.py`` after sourcing the install). Where rclpy or
launch_testing are missing (plain pytest without ROS) the module is skipped with that reason.
"""

import subprocess
import time
import unittest

import pytest

pytest.importorskip("rclpy", reason="needs ROS 2: rclpy is not installed")
pytest.importorskip("launch_testing", reason="needs ROS 2 launch_testing")
pytest.importorskip("launch_ros", reason="needs ROS 2 launch_ros")

import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import tf2_ros  # noqa: E402
from cv_bridge import CvBridge  # noqa: E402
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped  # noqa: E402
from launch.launch_description import LaunchDescription  # noqa: E402
from mickey_ros.msg import RelativePose  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.time import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from mickey_ros.relocalization import messages  # noqa: E402
from mickey_ros.ros.interfaces import ros_message_types  # noqa: E402

NAMESPACE, NODE = "test_ns", "mickey_test"
PRIVATE = f"/{NAMESPACE}/{NODE}"
H, W = 168, 224
K = np.array([[200.0, 0.0, W / 2], [0.0, 200.0, H / 2], [0.0, 0.0, 1.0]])
PARAMETERS = {
    "model.config": "mickey_tiny",  # random weights: frames and stamps are checked, not accuracy
    "model.device": "cpu",
    "model.warmup_iterations": 0,
    "solver.num_samples": 256,
    "solver.it_matches": 2,
    "solver.it_ransac": 20,
    "gate.min_confidence": 0.0,
    "output.tf_mode": "relative",
    "output.publish_pose": True,
}


@pytest.mark.launch_test
def generate_test_description():
    node = launch_ros.actions.Node(
        package="mickey_ros", executable="relocalize_node", name=NODE, namespace=NAMESPACE,
        parameters=[PARAMETERS],
        remappings=[("image", "/cam/image_raw"), ("camera_info", "/cam/camera_info"),
                    ("reference/image", "/keyframe/image"),
                    ("reference/camera_info", "/keyframe/camera_info")],
        output="screen",
    )
    return LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"node": node}


def _texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)


class TestRelocalizeNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("mickey_test_probe")
        cls.types = ros_message_types()

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _spin_until(self, predicate, timeout_s, tick=None):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not predicate():
            if tick is not None:
                tick()
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return predicate()

    def test_keyframe_and_frames_give_pose_tf_and_estimate(self):
        node, types = self.node, self.types
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        ref_image = node.create_publisher(Image, "/keyframe/image", latched)
        ref_info = node.create_publisher(CameraInfo, "/keyframe/camera_info", latched)
        # a RELIABLE camera publisher must match the node's best-effort subscription
        live_image = node.create_publisher(Image, "/cam/image_raw", 10)
        live_info = node.create_publisher(CameraInfo, "/cam/camera_info", 10)
        got = {"relative": [], "estimate": [], "tf": [], "pose": []}
        node.create_subscription(TransformStamped, f"{PRIVATE}/relative_pose",
                                 got["relative"].append, 10)
        node.create_subscription(RelativePose, f"{PRIVATE}/estimate", got["estimate"].append, 10)
        node.create_subscription(PoseWithCovarianceStamped, f"{PRIVATE}/pose",
                                 got["pose"].append, 10)
        node.create_subscription(TFMessage, "/tf", got["tf"].append, 100)
        tf_buffer = tf2_ros.Buffer()
        tf2_ros.TransformListener(tf_buffer, node)

        ref_stamp = node.get_clock().now().nanoseconds
        ref_image.publish(messages.rgb_to_image_msg(types, _texture(0), ref_stamp, "ref_cam"))
        ref_info.publish(messages.camera_info_msg(types, K, W, H, ref_stamp, "ref_cam"))
        sent, last = [], [0.0]

        def publish_frame():
            if time.monotonic() - last[0] < 0.5:
                return
            last[0] = time.monotonic()
            stamp = node.get_clock().now().nanoseconds
            sent.append(stamp)
            live_image.publish(messages.rgb_to_image_msg(types, _texture(1), stamp, "cam_optical"))
            live_info.publish(messages.camera_info_msg(types, K, W, H, stamp, "cam_optical"))

        ok = self._spin_until(lambda: all(got.values()), timeout_s=180.0, tick=publish_frame)
        self.assertTrue(ok, f"outputs missing after 180 s: { {k: len(v) for k, v in got.items()} }")

        relative = got["relative"][0]
        self.assertEqual(relative.header.frame_id, "mickey_reference_optical")
        self.assertEqual(relative.child_frame_id, "mickey_query_optical")
        self.assertIn(messages.stamp_to_ns(relative.header.stamp), sent)  # image stamp, not now
        q = relative.transform.rotation
        self.assertAlmostEqual(q.x**2 + q.y**2 + q.z**2 + q.w**2, 1.0, places=6)

        estimate = got["estimate"][0]
        self.assertIn(messages.stamp_to_ns(estimate.header.stamp), sent)
        self.assertEqual(messages.stamp_to_ns(estimate.reference_stamp), ref_stamp)
        self.assertTrue(estimate.valid and estimate.accepted)
        self.assertEqual((estimate.status, estimate.num_samples), ("ok", 256))
        self.assertGreater(estimate.inference_ms, 0.0)

        edges = [t for msg in got["tf"] for t in msg.transforms]
        self.assertTrue(any(t.header.frame_id == "mickey_reference_optical"
                            and t.child_frame_id == "mickey_query_optical"
                            and messages.stamp_to_ns(t.header.stamp) in sent for t in edges))
        self.assertTrue(self._spin_until(lambda: tf_buffer.can_transform(
            "mickey_reference_optical", "mickey_query_optical", Time()), timeout_s=5.0))
        self.assertEqual(got["pose"][0].header.frame_id, "mickey_reference_optical")

    def test_cv_bridge_and_messages_decode_alike(self):
        bridge, types = CvBridge(), self.types
        rgb = _texture(2)
        for encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"):
            msg = messages.rgb_to_image_msg(types, rgb, 0, "cam", encoding)
            ours = messages.image_msg_to_rgb(msg)
            theirs = bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
            atol = 1 if encoding == "mono16" else 0  # 16->8 bit rounding may differ by one
            np.testing.assert_allclose(ours, theirs, atol=atol, err_msg=encoding)
        raw = {"bayer_rggb8": 1, "yuv422": 2}
        for encoding, bytes_per_pixel in raw.items():
            data = np.random.default_rng(3).integers(0, 256, H * W * bytes_per_pixel, np.uint8)
            msg = Image(height=H, width=W, encoding=encoding, step=W * bytes_per_pixel,
                        data=data.tobytes())
            np.testing.assert_array_equal(messages.image_msg_to_rgb(msg),
                                          bridge.imgmsg_to_cv2(msg, "rgb8"), err_msg=encoding)
        jpeg = messages.rgb_to_compressed_image_msg(types, rgb, 0, "cam")
        np.testing.assert_array_equal(messages.image_msg_to_rgb(jpeg),
                                      bridge.compressed_imgmsg_to_cv2(jpeg, "rgb8"))

    def test_missing_weights_exit_non_zero(self):
        done = subprocess.run(
            ["ros2", "run", "mickey_ros", "relocalize_node", "--ros-args",
             "-r", "__node:=mickey_no_weights", "-p", "model.device:=cpu"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("model.checkpoint is empty", done.stdout + done.stderr)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
