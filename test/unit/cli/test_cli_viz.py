"""``pose --viz`` figure (issue 15): labelled halves, a divider, the pose and the model in words."""

from __future__ import annotations

import numpy as np
import pytest

from mickey_ros.cli.viz import (
    DIVIDER_PX,
    _side_by_side,
    describe_estimate,
    save_estimate_figure,
    shared_depth_range,
)
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

    def test_depth_maps_share_one_colour_range_in_metres(self, tmp_path, monkeypatch):
        """Issue 28: each depth map had its own colour range (one colour, two depths)."""
        from matplotlib.figure import Figure

        saved, save = [], Figure.savefig
        monkeypatch.setattr(Figure, "savefig",
                            lambda fig, path, **kw: (saved.append(fig), save(fig, path, **kw)))
        images = [np.zeros((60, 80, 3), np.uint8)] * 2
        estimate = _estimate()
        depth_ref = np.linspace(1.0, 3.0, 20).reshape(4, 5)
        depth_query = np.linspace(2.5, 6.0, 20).reshape(4, 5)
        estimate.matches = {"kpts_ref": np.zeros((0, 2)), "kpts_query": np.zeros((0, 2)),
                            "depth_ref": depth_ref, "depth_query": depth_query}
        save_estimate_figure(*images, estimate, tmp_path / "v.png")
        (fig,) = saved
        depth_images = [im for ax in fig.axes for im in ax.get_images() if im.get_cmap().name
                        == "turbo"]
        expected = np.percentile(np.r_[depth_ref.ravel(), depth_query.ravel()], [2, 98])
        assert len(depth_images) == 2
        for im in depth_images:
            assert im.get_clim() == pytest.approx(tuple(expected))
        colour_bars = [ax for ax in fig.axes if ax.get_ylabel() == "depth (m), both maps"]
        assert len(colour_bars) == 1


class TestSharedDepthRange:
    def test_percentiles_of_both_maps_finite_values_only(self):
        ref, query = np.arange(0.0, 50.0).reshape(5, 10), np.full((2, 2), np.nan)
        assert shared_depth_range(ref, query) == pytest.approx((0.98, 48.02))

    def test_flat_map_and_none(self):
        assert shared_depth_range(np.full((2, 2), 2.0)) == (1.5, 2.5)
        assert shared_depth_range(None, None) is None
