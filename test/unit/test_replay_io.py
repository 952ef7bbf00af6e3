"""Tests for mickey_ros.replay.replay_io (issue 5): CameraInfo pairing, keyframes, ground truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mickey_ros.bags.writer import make_typestore
from mickey_ros.relocalization.messages import MessageTypes, camera_info_msg, rgb_to_image_msg
from mickey_ros.relocalization.session import Frame
from mickey_ros.replay.replay_io import (
    CameraInfos,
    GroundTruth,
    decode_frame,
    default_info_topic,
    load_reference_image,
    output_topics,
)
from mickey_ros.bags.tf_buffer import TfBuffer
from mickey_ros.utils.images import ImageError

TYPES = MessageTypes.from_typestore(make_typestore())
S = 10**9


def _K(f: float) -> np.ndarray:
    return np.array([[f, 0, 16], [0, f, 12], [0, 0, 1.0]])


def _infos(mode: str, slop_s: float = 0.03) -> CameraInfos:
    """Three CameraInfo: f=100 @ stamp 1 s, f=200 @ 2 s, f=300 @ 3 s (received at the stamp)."""
    infos = CameraInfos("/cam/camera_info", mode, slop_s)
    for k in (3, 1, 2):  # out of order on purpose
        infos.add(k * S, camera_info_msg(TYPES, _K(100.0 * k), 32, 24, k * S, "cam"))
    return infos


class TestDefaultInfoTopic:
    @pytest.mark.parametrize("image, info", [
        ("/camera/image_raw", "/camera/camera_info"),
        ("/cam/image_raw/compressed", "/cam/camera_info"),
        ("image", "/camera_info"),
    ])
    def test_sibling(self, image, info):
        assert default_info_topic(image) == info


class TestOutputTopics:
    def test_names(self):
        assert output_topics("/robot1/", "mickey") == {
            "relative_pose": "/robot1/mickey/relative_pose", "estimate": "/robot1/mickey/estimate",
            "pose": "/robot1/mickey/pose", "debug/matches": "/robot1/mickey/debug/matches",
            "tf": "/tf", "tf_static": "/tf_static"}
        assert output_topics("", "n")["estimate"] == "/n/estimate"


class TestCameraInfos:
    def test_sync_nearest_stamp(self):
        infos = _infos("sync")
        assert infos.for_image(2 * S + 20_000_000, 0).K[0, 0] == 200.0
        assert infos.for_image(3 * S - 20_000_000, 0).K[0, 0] == 300.0

    def test_exception_sync_outside_slop(self):
        with pytest.raises(ImageError, match=r"within 0.03 s .* \(nearest 0.500 s away\)"):
            _infos("sync").for_image(int(2.5 * S), 0)

    def test_latest_by_receive_time(self):
        infos = _infos("latest")
        assert infos.for_image(0, int(2.9 * S)).K[0, 0] == 200.0  # stamp ignored
        with pytest.raises(ImageError, match="no CameraInfo received on /cam/camera_info before"):
            infos.for_image(0, S // 2)

    def test_bad_camera_info_raises_when_picked(self):
        infos = _infos("sync")
        infos.add(4 * S, camera_info_msg(TYPES, np.zeros((3, 3)), 32, 24, 4 * S, "cam"))
        with pytest.raises(ImageError, match="uncalibrated camera"):
            infos.for_image(4 * S, 0)
        assert infos.for_image(3 * S, 0).K[0, 0] == 300.0
        assert infos.first().K[0, 0] == 100.0

    def test_exception_empty(self):
        with pytest.raises(ImageError, match="no CameraInfo on /c at all"):
            CameraInfos("/c", "sync", 0.03).for_image(0, 0)


class TestDecodeFrame:
    def test_frame(self):
        rgb = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
        frame = decode_frame(rgb_to_image_msg(TYPES, rgb, 2 * S, "cam", "bgr8"), _infos("sync"),
                             0)
        np.testing.assert_array_equal(frame.rgb, rgb)
        assert (frame.stamp_ns, frame.frame_id, frame.K[0, 0]) == (2 * S, "cam", 200.0)

    def test_exception_size_mismatch(self):
        msg = rgb_to_image_msg(TYPES, np.zeros((20, 30, 3), np.uint8), S, "cam")
        with pytest.raises(ImageError, match="is 30x20 but its CameraInfo says 32x24"):
            decode_frame(msg, _infos("sync"), 0)


class TestLoadReferenceImage:
    def test_intrinsics_given_or_from_live_camera(self, tmp_path):
        cv2.imwrite(str(tmp_path / "k.png"), np.zeros((24, 32, 3), np.uint8))
        frame = load_reference_image(str(tmp_path / "k.png"), (50.0, 51.0, 16.0, 12.0),
                                     _infos("sync"), 7, "ref")
        assert (frame.K[0, 0], frame.K[1, 1], frame.stamp_ns, frame.frame_id) == (50, 51, 7, "ref")
        frame = load_reference_image(str(tmp_path / "k.png"), (), _infos("sync"), 7, "ref")
        assert frame.K[0, 0] == 100.0  # the first usable live CameraInfo

    def test_exception_size_differs_from_live_camera(self, tmp_path):
        cv2.imwrite(str(tmp_path / "k.png"), np.zeros((48, 64, 3), np.uint8))
        with pytest.raises(ImageError, match="reference image .* is 64x48"):
            load_reference_image(str(tmp_path / "k.png"), (), _infos("sync"), 0, "ref")


class TestGroundTruth:
    def test_relative_pose_and_missing_tf(self):
        tf = TfBuffer()
        for k in (0, 2):
            T = np.eye(4)
            T[:3, 3] = [float(k), 0.0, 0.0]
            tf.add_transform("odom", "cam", k * S, T)
        gt = GroundTruth(tf, "odom")
        frame = Frame(np.zeros((2, 2, 3), np.uint8), _K(1.0), 0, "cam")
        assert gt.relative(frame) == (None, None)  # no keyframe yet
        assert gt.set_reference(frame) is None
        T_gt, reason = gt.relative(Frame(frame.rgb, frame.K, S, "cam"))
        assert reason is None
        np.testing.assert_allclose(T_gt[:3, 3], [1.0, 0, 0])  # query 1 m ahead of the keyframe
        T_gt, reason = gt.relative(Frame(frame.rgb, frame.K, 3 * S, "cam"))
        assert T_gt is None and "extrapolation into the future" in reason
        assert "no ground truth for the keyframe" in gt.set_reference(
            Frame(frame.rgb, frame.K, 0, "other_cam"))
