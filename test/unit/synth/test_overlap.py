from __future__ import annotations

import numpy as np
import pytest

from mickey_ros.synth.overlap import (
    covisible_fraction,
    overlap_matrix,
    pair_overlap,
    reproject_depth,
    sample_depth,
    subsample_depth,
)

K = np.array([[100.0, 0.0, 31.5], [0.0, 100.0, 23.5], [0.0, 0.0, 1.0]])
H, W = 48, 64


def translation(tx: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = tx
    return T


def wall(z: float = 2.0) -> np.ndarray:
    return np.full((H, W), z, np.float32)


class TestReprojectDepth:
    def test_identity_maps_pixels_to_themselves(self):
        rep = reproject_depth(wall(), K, wall(), K, np.eye(4))
        np.testing.assert_allclose(rep.uv_b, rep.uv_a, atol=1e-9)
        assert rep.inside.all() and rep.agrees(1e-6).all()

    def test_sideways_motion_shifts_by_f_t_over_z(self):
        # X_b = X_a + (-0.2, 0, 0): on a wall at z = 2 every pixel moves by 100 * -0.2 / 2 = -10
        rep = reproject_depth(wall(), K, wall(), K, translation(-0.2))
        np.testing.assert_allclose(rep.uv_b[:, 0] - rep.uv_a[:, 0], -10.0, atol=1e-9)
        assert rep.inside.sum() == (W - 10) * H

    def test_skips_pixels_without_depth_and_strides(self):
        depth = wall()
        depth[:, :32] = 0.0
        rep = reproject_depth(depth, K, wall(), K, np.eye(4), stride=4)
        assert len(rep.z_b) == (H // 4) * (32 // 4)
        assert rep.uv_a[:, 0].min() == 32


class TestSampleDepth:
    def test_inverse_depth_bilinear_is_exact_on_a_slanted_plane(self):
        v, u = np.mgrid[0:H, 0:W]
        inv = 0.2 + 0.01 * u + 0.004 * v  # a plane: inverse depth affine in pixels
        uq, vq = np.array([10.25, 40.7]), np.array([5.5, 30.1])
        expected = 1.0 / (0.2 + 0.01 * uq + 0.004 * vq)
        np.testing.assert_allclose(sample_depth(1.0 / inv, uq, vq), expected, rtol=1e-12)

    def test_falls_back_to_nearest_at_edges(self):
        depth = wall(2.0)
        depth[:, 20:] = 5.0
        assert sample_depth(depth, np.array([19.4]), np.array([10.0]))[0] == 2.0
        assert sample_depth(depth, np.array([19.6]), np.array([10.0]))[0] == 5.0


class TestCovisibleFraction:
    def test_occluder_hides_pixels(self):
        occluded = wall()
        occluded[:, :16] = 1.0  # b sees something closer on the left quarter
        assert covisible_fraction(wall(), K, occluded, K, np.eye(4), stride=1) == pytest.approx(
            0.75
        )

    def test_empty_view_gives_zero(self):
        assert covisible_fraction(np.zeros((H, W), np.float32), K, wall(), K, np.eye(4)) == 0.0


class TestPairOverlap:
    def test_is_the_smaller_direction(self):
        # b sees a wider view of the same wall (half the focal): a's pixels all land in b, but
        # only about a quarter of b's pixels land in a
        K_wide = K.copy()
        K_wide[:2, :2] /= 2
        f_ab = covisible_fraction(wall(), K, wall(), K_wide, np.eye(4), stride=1)
        f_ba = covisible_fraction(wall(), K_wide, wall(), K, np.eye(4), stride=1)
        assert f_ab == 1.0 and f_ba == pytest.approx(0.25, abs=0.03)
        assert pair_overlap(wall(), K, wall(), K_wide, np.eye(4), stride=1) == f_ba


class TestOverlapMatrix:
    def test_matches_pairwise_fractions(self):
        depths = np.stack([wall(), wall(3.0), wall()])
        poses = np.stack([np.eye(4), translation(-0.3), translation(0.5)])  # world-to-camera
        M = overlap_matrix(depths, np.stack([K] * 3), poses)
        for a in range(3):
            for b in range(3):
                T_b_a = poses[b] @ np.linalg.inv(poses[a])
                expected = (
                    1.0
                    if a == b
                    else covisible_fraction(depths[a], K, depths[b], K, T_b_a, stride=1)
                )
                assert M[a, b] == pytest.approx(expected, abs=0.02), (a, b)


class TestSubsampleDepth:
    def test_subsampled_grid_keeps_geometry(self):
        depth_s, K_s = subsample_depth(wall(), K, 4)
        assert depth_s.shape == (12, 16)
        # pixel (i, j) of the subsampled map is full pixel (4i, 4j): same ray
        np.testing.assert_allclose(np.linalg.solve(K_s, [3, 2, 1]), np.linalg.solve(K, [12, 8, 1]))
