"""``pose --viz`` figure (issue 15): labelled halves, a divider, the pose and the model in words."""

from __future__ import annotations

import numpy as np

from mickey_ros.cli.viz import DIVIDER_PX, _side_by_side, describe_estimate, save_estimate_figure
from mickey_ros.estimator.result import PoseEstimate


def _estimate() -> PoseEstimate:
    angle = np.radians(30.0)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    return PoseEstimate(valid=True, R=R, t=np.array([0.3, 0.0, -0.4]), confidence=612.4,
                        num_inliers=700, num_samples=2048)


class TestDescribeEstimate:
    def test_pose_rotation_and_model(self):
        assert describe_estimate(_estimate(), "tiny.ckpt").splitlines() == [
            "query relative to reference: t = (0.30, 0.00, -0.40) m (|t| = 0.50 m), rotation "
            "30.0 deg",
            "confidence 612 of 2048 soft inliers (ratio 0.30), 700 hard inliers",
            "model: tiny.ckpt"]

    def test_invalid(self):
        assert describe_estimate(PoseEstimate.invalid("too few matches")) == (
            "no pose: too few matches")


class TestSideBySide:
    def test_white_divider_between_images(self):
        ref, query = np.zeros((4, 5, 3), np.uint8), np.full((6, 3, 3), 7, np.uint8)
        canvas, offset = _side_by_side(ref, query)
        assert canvas.shape == (6, 5 + DIVIDER_PX + 3, 3) and offset == 5 + DIVIDER_PX
        assert (canvas[:, 5:offset] == 255).all() and (canvas[:6, offset:] == 7).all()
        assert (canvas[:4, :5] == 0).all() and (canvas[4:, :5] == 255).all()


class TestSaveEstimateFigure:
    def test_png(self, tmp_path):
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (60, 80, 3), dtype=np.uint8) for _ in range(2)]
        estimate = _estimate()
        estimate.matches = {"kpts_ref": np.array([[10.0, 10.0]]), "kpts_query": np.array(
            [[20.0, 30.0]]), "depth_ref": np.ones((4, 5)), "depth_query": np.ones((4, 5))}
        path = save_estimate_figure(*images, estimate, tmp_path / "v.png", "tiny.ckpt")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
