"""Writing converted frames as Map-free scene folders (what ``mickey-train --data`` and
``mickey-ros eval mapfree`` read), each with a ``sources.txt`` back to the bags.

* train scene: every frame in ``seq0/``, poses world-to-camera with the fixed frame as world,
  ``overlaps.npz`` with the pairs whose overlap exceeds ``min_stored_overlap``;
* val / test scene: one reference ``seq0/frame_00000.jpg`` (identity pose) and its queries in
  ``seq1/`` with poses relative to it, as the benchmark's validation scenes.

Frame files move (rename) from the staging folder, so nothing is copied twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mickey_ros.dataset.frames import FrameRecord
from mickey_ros.dataset.pairs import PairTable
from mickey_ros.geometry.pose import invert_transform, rotmat_to_quat_xyzw
from mickey_ros.mapfree.dataset import depth_name, frame_name
from mickey_ros.mapfree.files import (
    CameraIntrinsics,
    PoseEntry,
    write_intrinsics,
    write_poses,
)

DEPTH_SUFFIX = ".depth.png"  # data.depth_suffix of a fine-tune config reads these


def _pose_entry(name: str, T_cam_world: np.ndarray) -> PoseEntry:
    q_xyzw = rotmat_to_quat_xyzw(T_cam_world[:3, :3])
    q_wxyz = np.roll(q_xyzw, 1)
    return PoseEntry(name, q_wxyz if q_wxyz[0] >= 0 else -q_wxyz, T_cam_world[:3, 3].copy())


def _move_frame(staging: Path, frame: FrameRecord, scene_dir: Path, name: str) -> None:
    target = scene_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging / f"{frame.index:06d}.jpg", target)
    depth = staging / f"{frame.index:06d}.depth.png"
    if depth.exists():
        os.replace(depth, scene_dir / depth_name(name, DEPTH_SUFFIX))


def write_scene(
    scene_dir: Path,
    staging: Path,
    frames: list[tuple[str, FrameRecord]],
    world_T: np.ndarray,
    pairs: list[tuple[str, str, float]],
) -> None:
    """One scene folder.

    Args:
        frames: (Map-free name, frame) in poses.txt order.
        world_T: (4, 4) pose of the scene's world in the fixed frame (identity: the fixed frame;
            a reference camera's pose: that camera is the world).
        pairs: (name a, name b, overlap) for ``overlaps.npz``.
    """
    scene_dir.mkdir(parents=True)
    poses, intrinsics, sources = [], {}, []
    for name, frame in frames:
        T_cam_world = invert_transform(frame.T_fixed_camera) @ world_T
        poses.append(_pose_entry(name, T_cam_world))
        intrinsics[name] = CameraIntrinsics(frame.K, *frame.size_wh)
        sources.append(f"{name} {frame.bag} {frame.topic} {frame.stamp_ns}")
        _move_frame(staging, frame, scene_dir, name)
    write_poses(scene_dir / "poses.txt", poses)
    write_intrinsics(scene_dir / "intrinsics.txt", intrinsics)
    (scene_dir / "sources.txt").write_text("\n".join(sources) + "\n", encoding="utf-8")
    idxs = [(int(a[3]), int(a[-9:-4]), int(b[3]), int(b[-9:-4])) for a, b, _ in pairs]
    np.savez(scene_dir / "overlaps.npz", idxs=np.array(idxs, dtype=np.int64).reshape(-1, 4),
             overlaps=np.array([o for _, _, o in pairs], dtype=np.float64))


def write_train_scene(
    scene_dir: Path, staging: Path, frames: list[FrameRecord], pairs: PairTable,
    min_overlap: float,
) -> int:
    """All ``frames`` in ``seq0``; returns the number of stored pairs."""
    names = [frame_name(0, k) for k in range(len(frames))]
    keep = pairs.overlap > min_overlap
    stored = [(names[a], names[b], o) for a, b, o in
              zip(pairs.a[keep].tolist(), pairs.b[keep].tolist(), pairs.overlap[keep].tolist())]
    write_scene(scene_dir, staging, list(zip(names, frames)), np.eye(4), stored)
    return len(stored)


def write_eval_scene(
    scene_dir: Path, staging: Path, ref: FrameRecord, queries: list[FrameRecord],
    overlaps: list[float],
) -> None:
    """A reference (identity pose) and its queries in ``seq1``, poses relative to the reference."""
    names = [frame_name(1, k) for k in range(len(queries))]
    ref_name = frame_name(0, 0)
    write_scene(scene_dir, staging, [(ref_name, ref), *zip(names, queries)], ref.T_fixed_camera,
                [(ref_name, n, o) for n, o in zip(names, overlaps)])
