"""Tests for mickey_ros.bags.posed_images (issue 27): posed camera frames streamed from bags."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from dataset_bags import (
    T_BASE_LINK,
    T_LINK_OPTICAL,
    drive,
    texture,
    write_quick_bag,
    write_ros1_bag,
)

from mickey_ros.bags.posed_images import (
    KeyframeSelector,
    PosedImageReport,
    blur_score,
    depth_msg_to_metres,
    read_posed_images,
)
from mickey_ros.bags.reader import BagError
from mickey_ros.synth.rosbag import START_NS, plan_robot_drive, write_robot_bag
from mickey_ros.utils.images import ImageError

SIZE = (160, 120)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """The project's synthetic robot bag: sqlite3 raw + compressed + depth, and MCAP."""
    root = tmp_path_factory.mktemp("rendered")
    return {
        "sqlite3": write_robot_bag(root / "sq", seconds=4, rate_hz=5, size_wh=SIZE,
                                   compressed=True, depth=True, progress=False),
        "mcap": write_robot_bag(root / "mc", seconds=4, rate_hz=5, size_wh=SIZE,
                                storage="mcap", compressed=True, progress=False),
    }


class TestReadPosedImages:
    @pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
    @pytest.mark.parametrize("topic", ["/camera/image_raw", "/camera/image_raw/compressed"])
    def test_poses_are_the_ground_truth(self, rendered, storage, topic):
        drive_gt = plan_robot_drive(0, SIZE)
        frames = list(read_posed_images([rendered[storage]], fixed_frame="odom",
                                        image_topic=topic))
        assert len(frames) == 20
        for f in frames:
            T_gt = drive_gt.T_odom_optical((f.stamp_ns - START_NS) / 1e9)
            np.testing.assert_allclose(f.T_fixed_camera, T_gt, atol=1e-9)
            np.testing.assert_allclose(f.K, drive_gt.K, atol=1e-12)
            assert f.image_rgb.shape == (120, 160, 3) and f.camera_frame == "camera_optical_frame"
            assert f.topic == topic and f.depth_m is None

    def test_depth_32fc1_is_the_rendered_depth(self, rendered):
        frames = list(read_posed_images([rendered["sqlite3"]], fixed_frame="odom",
                                        image_topic="/camera/image_raw",
                                        depth_topic="/camera/depth/image_raw"))
        assert len(frames) == 20 and all(f.depth_m is not None for f in frames)
        depth = frames[0].depth_m
        assert depth.dtype == np.float32 and depth.shape == (120, 160)
        assert 0.3 < np.median(depth[depth > 0]) < 30.0

    def test_the_only_camera_stream_is_found(self, rendered):
        report = PosedImageReport()
        frames = list(read_posed_images([rendered["mcap"]], fixed_frame="odom", report=report))
        assert report.image_topic == "/camera/image_raw" and len(frames) == 20

    def test_odometry_topic_instead_of_tf(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=10, odometry=True)
        frames = list(read_posed_images([bag], fixed_frame="odom", pose_topic="/odom"))
        assert len(frames) == 10
        T_gt = drive(0.4) @ T_BASE_LINK @ T_LINK_OPTICAL
        np.testing.assert_allclose(frames[2].T_fixed_camera, T_gt, atol=1e-9)

    def test_ros1_bag(self, tmp_path):
        bag = write_ros1_bag(tmp_path / "run.bag", frames=10)
        frames = list(read_posed_images([bag], fixed_frame="odom"))
        assert len(frames) == 10 and frames[3].image_rgb.shape == (120, 160, 3)
        T_gt = drive(0.6) @ T_BASE_LINK @ T_LINK_OPTICAL
        np.testing.assert_allclose(frames[3].T_fixed_camera, T_gt, atol=1e-9)
        np.testing.assert_array_equal(frames[3].image_rgb, texture(3))

    def test_pose_stamped_describes_the_root_of_the_static_chain(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=10, pose_stamped=True)
        frames = list(read_posed_images([bag], fixed_frame="odom", pose_topic="/pose"))
        assert len(frames) == 10
        T_gt = drive(1.0) @ T_BASE_LINK @ T_LINK_OPTICAL
        np.testing.assert_allclose(frames[5].T_fixed_camera, T_gt, atol=1e-9)

    def test_tf_interpolated_between_samples(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=10, tf_at=lambda k: k % 2 == 0)
        frames = list(read_posed_images([bag], fixed_frame="odom", max_tf_gap_s=0.5))
        assert len(frames) == 9  # frame 9 has no TF after it: no extrapolation
        T_gt = drive(0.2) @ T_BASE_LINK @ T_LINK_OPTICAL  # frame 1, between TF of 0 and 2
        np.testing.assert_allclose(frames[1].T_fixed_camera, T_gt, atol=2e-4)

    def test_tf_gap_beyond_tolerance_drops_the_frame(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=10, tf_at=lambda k: k not in (4, 5, 6))
        report = PosedImageReport()
        frames = list(read_posed_images([bag], fixed_frame="odom", max_tf_gap_s=0.5,
                                        report=report))
        assert [round((f.stamp_ns - START_NS) / 2e8) for f in frames] == [0, 1, 2, 3, 7, 8, 9]
        assert report.dropped == {"TF gap": 3} and "800 ms" in report.examples["TF gap"]

    def test_want_skips_before_decoding(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=10)
        frames = list(read_posed_images([bag], fixed_frame="odom",
                                        want=lambda stamp, T: T[0, 3] > 0.65))
        assert len(frames) == 5

    def test_missing_camera_info(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=3, camera_info=False)
        with pytest.raises(BagError, match="no camera_info for /camera/image_raw"):
            list(read_posed_images([bag], fixed_frame="odom"))

    def test_camera_info_changing_size(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=6,
                              size_at=lambda k: (160, 120) if k < 3 else (80, 60))
        with pytest.raises(BagError, match="changes the image size from 160x120 to 80x60 at"):
            list(read_posed_images([bag], fixed_frame="odom"))

    def test_no_tf_path_names_the_frames(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=3)
        with pytest.raises(BagError, match=r"no TF path from 'map' to the camera frame "
                           r"'camera_optical_frame'.*'base_link', 'camera_link'"):
            list(read_posed_images([bag], fixed_frame="map"))

    def test_wrong_image_topic_lists_the_topics(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=3)
        with pytest.raises(BagError) as err:
            list(read_posed_images([bag], fixed_frame="odom", image_topic="/cam"))
        assert str(err.value).count("\n") == 0
        assert "image topic '/cam' is not in the bag" in str(err.value)
        assert "/camera/image_raw (Image, 3)" in str(err.value)


class TestDepthMsgToMetres:
    def _msg(self, array: np.ndarray, encoding: str, bigendian: bool = False):
        H, W = array.shape
        return SimpleNamespace(encoding=encoding, is_bigendian=int(bigendian), height=H, width=W,
                               step=array.itemsize * W, data=array.view(np.uint8).ravel())

    def test_16uc1_millimetres(self):
        mm = np.array([[0, 1500], [65535, 250]], "<u2")
        np.testing.assert_allclose(depth_msg_to_metres(self._msg(mm, "16UC1")),
                                   [[0.0, 1.5], [65.535, 0.25]], rtol=1e-6)

    def test_16uc1_big_endian(self):
        mm = np.array([[1500, 2]], ">u2")
        np.testing.assert_allclose(depth_msg_to_metres(self._msg(mm, "16UC1", True)),
                                   [[1.5, 0.002]], rtol=1e-6)

    def test_32fc1_metres_nan_is_unknown(self):
        m = np.array([[np.nan, 2.5, np.inf, -1.0]], "<f4")
        np.testing.assert_array_equal(depth_msg_to_metres(self._msg(m, "32FC1")),
                                      [[0.0, 2.5, 0.0, 0.0]])

    def test_other_encoding(self):
        with pytest.raises(ImageError, match="depth image encoding 'rgb8' is not 16UC1"):
            depth_msg_to_metres(self._msg(np.zeros((2, 2), np.uint8), "rgb8"))

    def test_16uc1_topic_in_a_bag(self, tmp_path):
        bag = write_quick_bag(tmp_path / "b", frames=3, depth_16uc1=2.5)
        frames = list(read_posed_images([bag], fixed_frame="odom",
                                        depth_topic="/camera/depth/image_raw"))
        assert len(frames) == 3 and float(frames[1].depth_m[5, 5]) == pytest.approx(2.5)


class TestKeyframeSelector:
    def _T(self, x: float, yaw_deg: float = 0.0) -> np.ndarray:
        T = np.eye(4)
        c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
        T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
        T[0, 3] = x
        return T

    def test_translation_and_rotation_thresholds(self):
        sel = KeyframeSelector(min_translation_m=0.1, min_rotation_deg=5.0)
        kept = []
        for x, yaw in [(0, 0), (0.05, 0), (0.11, 0), (0.12, 4.9), (0.12, 10.5), (0.2, 10.5)]:
            T = self._T(x, yaw)
            if sel.wants(T):
                sel.keep(T)
                kept.append((x, yaw))
        assert kept == [(0, 0), (0.11, 0), (0.12, 10.5)]

    def test_reset_keeps_the_next_frame(self):
        sel = KeyframeSelector()
        sel.keep(self._T(0))
        assert not sel.wants(self._T(0.01))
        sel.reset()
        assert sel.wants(self._T(0.01))

    def test_negative_threshold(self):
        with pytest.raises(ValueError, match="keyframe thresholds must be >= 0"):
            KeyframeSelector(-1.0)


class TestBlurScore:
    def test_blur_lowers_the_score(self):
        sharp = texture(0, (640, 480))
        blurred = cv2.GaussianBlur(sharp, (0, 0), 4.0)
        assert blur_score(blurred) < 0.1 * blur_score(sharp)

    def test_resolution_independent(self):
        big = texture(1, (640, 480))
        small = cv2.resize(big, (320, 240), interpolation=cv2.INTER_AREA)
        assert blur_score(big) == pytest.approx(blur_score(small), rel=0.01)
