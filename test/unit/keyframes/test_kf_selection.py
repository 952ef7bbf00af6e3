"""keyframes.selection and keyframes.descriptor: candidates near a prior or by appearance."""

from __future__ import annotations

import numpy as np
import torch

from mickey_ros.keyframes.descriptor import GRID, pooled_descriptor, rank_by_similarity
from mickey_ros.keyframes.selection import select_by_appearance, select_near_prior


def _pose(x: float, y: float, yaw_deg: float) -> np.ndarray:
    """Camera at (x, y, 1) looking along yaw in the map's xy plane (optical z = heading)."""
    a = np.radians(yaw_deg)
    z = np.array([np.cos(a), np.sin(a), 0.0])
    x_axis = np.array([np.sin(a), -np.cos(a), 0.0])
    T = np.eye(4)
    T[:3, :3] = np.stack([x_axis, np.cross(z, x_axis), z], axis=1)
    T[:3, 3] = [x, y, 1.0]
    return T


KEYFRAMES = np.stack([_pose(0, 0, 0), _pose(1, 0, 0), _pose(0.5, 0, 90), _pose(5, 0, 0),
                      _pose(2.5, 0, 0)])


class TestSelectNearPrior:
    def test_nearest_first_within_radius(self):
        assert select_near_prior(_pose(0.9, 0, 0), KEYFRAMES, 5, 3.0, 60.0) == [1, 0, 4]

    def test_view_direction_excludes(self):
        # keyframe 2 stands closest (0.4 m) but looks 90 deg away
        assert 2 not in select_near_prior(_pose(0.5, 0.1, 0), KEYFRAMES, 5, 3.0, 60.0)
        assert select_near_prior(_pose(0.5, 0.1, 90), KEYFRAMES, 5, 3.0, 60.0) == [2]

    def test_k_limits(self):
        assert select_near_prior(_pose(0.9, 0, 0), KEYFRAMES, 1, 3.0, 60.0) == [1]

    def test_none_near_the_prior(self):
        assert select_near_prior(_pose(20, 20, 0), KEYFRAMES, 3, 3.0, 60.0) == []

    def test_empty_library(self):
        assert select_near_prior(_pose(0, 0, 0), np.zeros((0, 4, 4)), 3, 3.0, 60.0) == []


class TestPooledDescriptor:
    def test_unit_norm_and_size(self):
        g = torch.Generator().manual_seed(0)
        desc = torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=1)
        v = pooled_descriptor(desc, torch.rand(12, generator=g).softmax(0), (3, 4))
        assert v.shape == (8 * (1 + GRID**2),)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-6

    def test_layout_matters(self):
        # the same cells mirrored left-right: same global part, other quarters
        g = torch.Generator().manual_seed(1)
        desc = torch.nn.functional.normalize(torch.randn(4, 6, 8, generator=g), dim=2)
        scores = torch.ones(4, 6) / 24
        a = pooled_descriptor(desc.reshape(24, 8), scores.flatten(), (4, 6))
        b = pooled_descriptor(desc.flip(1).reshape(24, 8), scores.flatten(), (4, 6))
        assert float(a @ a) > 0.999
        assert float(a @ b) < 0.99


class TestRankBySimilarity:
    def test_order(self):
        lib = np.eye(3, dtype=np.float32)
        order, sim = rank_by_similarity(np.array([0.1, 0.9, 0.4], np.float32), lib)
        assert order.tolist() == [1, 2, 0]
        np.testing.assert_allclose(sim, [0.9, 0.4, 0.1])

    def test_empty(self):
        order, sim = rank_by_similarity(np.ones(3, np.float32), np.zeros((0, 3), np.float32))
        assert order.shape == (0,) and sim.shape == (0,)


class TestSelectByAppearance:
    def test_top_k(self):
        lib = np.eye(4, dtype=np.float32)
        assert select_by_appearance(np.array([0, 0.2, 0.9, 0.5], np.float32), lib, 2) == [2, 3]
