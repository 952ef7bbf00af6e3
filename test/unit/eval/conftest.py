"""Fixtures for the evaluation tests: a tiny Map-free-layout split and an estimator double."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.geometry.pose import axis_angle_to_rotmat
from mickey_ros.mapfree.files import (
    CameraIntrinsics,
    PoseEntry,
    intrinsics_matrix,
    write_intrinsics,
    write_poses,
)
from mickey_ros.utils.images import load_rgb


def image_key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def random_pose(rng: np.random.Generator, max_angle_deg: float = 20.0) -> np.ndarray:
    axis = rng.normal(size=3)
    angle = np.deg2rad(rng.uniform(0, max_angle_deg))
    T = np.eye(4)
    T[:3, :3] = axis_angle_to_rotmat(torch.from_numpy(axis / np.linalg.norm(axis) * angle)).numpy()
    T[:3, 3] = rng.normal(scale=1.0, size=3)
    return T


def pose_entry(name: str, T: np.ndarray, confidence: float | None = None) -> PoseEntry:
    from mickey_ros.geometry.pose import rotmat_to_quat_wxyz

    q = rotmat_to_quat_wxyz(torch.from_numpy(T[:3, :3])).numpy()
    return PoseEntry(name, q, T[:3, 3].copy(), confidence)


@dataclass
class TinySplit:
    """A written split: ``gt[scene][frame] = T_query_ref`` for every seq1 frame, image keys."""

    root: Path
    split: str
    gt: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    image_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (scene, frame)


def write_tiny_split(
    root: Path,
    split: str = "val",
    num_scenes: int = 2,
    num_query: int = 12,
    size_wh: tuple[int, int] = (32, 24),
    seed: int = 0,
    zero_poses: bool = False,
) -> TinySplit:
    """Scenes ``s00000..`` with a reference frame and ``num_query`` seq1 frames whose numbers skip
    (0, 1, 2, 4, 5, 6, 8, ...) so line sampling and frame-number sampling differ."""
    rng = np.random.default_rng(seed)
    W, H = size_wh
    out = TinySplit(root, split)
    for s in range(num_scenes):
        name = f"s{s:05d}"
        scene_dir = root / split / name
        (scene_dir / "seq0").mkdir(parents=True)
        (scene_dir / "seq1").mkdir()
        frames = {"seq0/frame_00000.jpg": np.eye(4)}
        frames |= {f"seq1/frame_{i + i // 3:05d}.jpg": random_pose(rng) for i in range(num_query)}
        intrinsics, entries = {}, []
        for frame, T in frames.items():
            f = rng.uniform(20, 40)
            intrinsics[frame] = CameraIntrinsics(intrinsics_matrix(f, f, W / 2, H / 2), W, H)
            zero = PoseEntry(frame, np.zeros(4), np.zeros(3))  # test split: GT withheld
            entries.append(zero if zero_poses else pose_entry(frame, T))
            cv2.imwrite(str(scene_dir / frame), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
            out.image_keys[image_key(load_rgb(scene_dir / frame))] = (name, frame)
        write_intrinsics(scene_dir / "intrinsics.txt", intrinsics)
        write_poses(scene_dir / "poses.txt", entries)
        out.gt[name] = {k: v for k, v in frames.items() if k.startswith("seq1/")}
    return out


class GroundTruthDouble:
    """A ``PoseEstimator`` that recognises the tiny split's images and returns their GT pose.

    Frames listed in ``invalid`` give invalid estimates; the confidence is a distinct number per
    frame. ``batch_sizes`` records every ``estimate_batch`` call.
    """

    def __init__(self, split: TinySplit, invalid: set[str] | None = None) -> None:
        self.split = split
        self.invalid = invalid or set()
        self.batch_sizes: list[int] = []
        self.references: list[str] = []
        self._ref_scene: str | None = None

    def set_reference(self, image: np.ndarray, K: np.ndarray) -> None:
        self._ref_scene, frame = self.split.image_keys[image_key(image)]
        self.references.append(f"{self._ref_scene}/{frame}")

    @property
    def has_reference(self) -> bool:
        return self._ref_scene is not None

    def estimate(self, image: np.ndarray, K: np.ndarray) -> PoseEstimate:
        return self.estimate_batch([image], [K])[0]

    def estimate_batch(self, images: list[np.ndarray], Ks: list[np.ndarray]) -> list[PoseEstimate]:
        self.batch_sizes.append(len(images))
        out = []
        for image in images:
            scene, frame = self.split.image_keys[image_key(image)]
            if frame in self.invalid or scene != self._ref_scene:
                out.append(PoseEstimate.invalid("double: marked invalid"))
                continue
            T = self.split.gt[scene][frame]
            confidence = 100.0 + int(frame[-9:-4]) + 0.5
            out.append(PoseEstimate(valid=True, R=T[:3, :3], t=T[:3, 3], confidence=confidence))
        return out


@pytest.fixture
def tiny_split(tmp_path: Path) -> TinySplit:
    return write_tiny_split(tmp_path / "data")


@pytest.fixture
def gt_double(tiny_split: TinySplit) -> GroundTruthDouble:
    return GroundTruthDouble(tiny_split)


@pytest.fixture
def helpers() -> SimpleNamespace:
    """The module-level helpers above (conftest modules cannot be imported by tests)."""
    return SimpleNamespace(
        write_tiny_split=write_tiny_split,
        GroundTruthDouble=GroundTruthDouble,
        pose_entry=pose_entry,
        random_pose=random_pose,
    )
