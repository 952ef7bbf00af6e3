"""Test images, poses and the fast solver of the keyframe library tests."""

from __future__ import annotations

import numpy as np

from mickey_ros.geometry.ransac import SolverConfig

K = np.array([[150.0, 0.0, 70.0], [0.0, 150.0, 56.0], [0.0, 0.0, 1.0]])
FAST_SOLVER = SolverConfig(it_matches=2, it_ransac=8, num_samples=32, num_refinements=1)


def textured(seed: int) -> np.ndarray:
    """A (112, 140, 3) uint8 image of blocky random texture (distinct per seed)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 7, axis=0), 7, axis=1)


def pose_at(x: float) -> np.ndarray:
    """``T_map_camera`` of a camera at (x, 0, 0) with the map's axes."""
    T = np.eye(4)
    T[0, 3] = x
    return T
