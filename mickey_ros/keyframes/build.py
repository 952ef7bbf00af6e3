"""Build a keyframe library from posed images: a directory (Map-free text files) or mapping bags.

``build_library(out, estimator, source, keyframes)`` writes the whole library into a sibling
staging directory and renames it into place at the end, so an interrupted build leaves ``out``
as it was; ``append=True`` adds to an existing library instead (each keyframe committed on its
own). The bag path reuses ``bags.posed_images`` (TF lookup, camera_info, keyframe spacing, blur).

Convention:
    Map-free ``poses.txt`` holds world-to-camera poses ``name qw qx qy qz tx ty tz``; the library
    stores ``T_map_camera``, their inverse, with the poses' world as the map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mickey_ros.estimator.relative_pose import RelativePoseEstimator
from mickey_ros.geometry.pose import invert_transform
from mickey_ros.keyframes.library import KeyframeLibrary
from mickey_ros.keyframes.store import FeatureSource, LibraryError, publish_directory
from mickey_ros.utils.outputs import discard_staging, staging_path

Warn = Callable[[str], object]


@dataclass
class PosedKeyframe:
    """One keyframe to add: RGB uint8 (H, W, 3), K (3, 3), ``T_map_camera`` (4, 4)."""

    rgb: np.ndarray
    K: np.ndarray
    T_map_camera: np.ndarray
    stamp_ns: int = 0
    source: str = ""


def _T_cam_world(q_wxyz: np.ndarray, t: np.ndarray) -> np.ndarray:
    import torch

    from mickey_ros.geometry.pose import quat_wxyz_to_rotmat

    q = np.asarray(q_wxyz, np.float64)
    T = np.eye(4)
    T[:3, :3] = quat_wxyz_to_rotmat(torch.from_numpy(q / np.linalg.norm(q))).numpy()
    T[:3, 3] = t
    return T


def read_posed_directory(images: Path, poses: Path, intrinsics: Path | None = None,
                         warn: Warn = print) -> Iterator[PosedKeyframe]:
    """Keyframes of a directory: each ``poses.txt`` line's image with its K from intrinsics.txt.

    Args:
        images: the directory the names in ``poses`` are relative to.
        poses: Map-free poses.txt (world-to-camera).
        intrinsics: Map-free intrinsics.txt; None = ``intrinsics.txt`` beside ``poses``.

    Raises:
        LibraryError: no usable pose line, or a posed image without intrinsics.
    """
    from mickey_ros.mapfree.files import ParseReport, read_intrinsics, read_poses
    from mickey_ros.utils.images import load_rgb

    report = ParseReport()
    entries = read_poses(poses, report)
    calib = read_intrinsics(intrinsics or poses.with_name("intrinsics.txt"), report)
    if report.skipped:
        warn(f"skipped lines:\n{report.summary()}")
    if not entries:
        raise LibraryError(f"{poses} has no usable pose line (format: name qw qx qy qz tx ty tz)")
    for entry in entries:
        if entry.name not in calib:
            raise LibraryError(f"{entry.name} has a pose in {poses} but no line in the "
                               "intrinsics file; add 'name fx fy cx cy width height'")
        T_map_camera = invert_transform(_T_cam_world(entry.q_wxyz, entry.t))
        yield PosedKeyframe(load_rgb(images / entry.name), calib[entry.name].K, T_map_camera,
                            source=entry.name)


def read_posed_bags(bags: Sequence[Path], fixed_frame: str, image_topic: str | None = None,
                    camera_frame: str | None = None, min_distance_m: float = 0.5,
                    min_angle_deg: float = 15.0, min_sharpness: float = 20.0,
                    warn: Warn = print) -> Iterator[PosedKeyframe]:
    """Keyframes of mapping bags: a frame after ``min_distance_m`` or ``min_angle_deg`` of
    motion since the last keyframe, unless blurred (``blur_score`` below ``min_sharpness``)."""
    from mickey_ros.bags.posed_images import (
        KeyframeSelector,
        PosedImageReport,
        blur_score,
        read_posed_images,
    )

    selector = KeyframeSelector(min_distance_m, min_angle_deg)
    report = PosedImageReport()
    blurred = 0
    for frame in read_posed_images(bags, fixed_frame=fixed_frame, image_topic=image_topic,
                                   camera_frame=camera_frame, report=report,
                                   want=lambda _stamp, T: selector.wants(T)):
        if blur_score(frame.image_rgb) < min_sharpness:
            blurred += 1
            continue
        selector.keep(frame.T_fixed_camera)
        yield PosedKeyframe(frame.image_rgb, frame.K, frame.T_fixed_camera, frame.stamp_ns,
                            f"{Path(frame.bag).name} {frame.topic} @ {frame.stamp_ns / 1e9:.3f}")
    dropped = ", ".join(f"{n} {why}" for why, n in report.dropped.items())
    if blurred or dropped:
        warn(f"frames not used: {blurred} blurred (sharpness < {min_sharpness:g})"
             + (f", {dropped}" if dropped else ""))


def build_library(out: Path, estimator: RelativePoseEstimator, source: FeatureSource,
                  keyframes: Iterable[PosedKeyframe], overwrite: bool = False,
                  append: bool = False, warn: Warn = print,
                  progress: Callable[[int], object] | None = None) -> KeyframeLibrary:
    """Write ``keyframes`` as a library at ``out``; returns it (features on the device).

    Raises:
        FileExistsError: ``out`` exists and neither ``overwrite`` nor ``append``.
        LibraryError: no keyframe at all (nothing is written).
    """
    out = Path(out)
    if append:
        lib = KeyframeLibrary.open(out, estimator, source, warn)
        return _fill(lib, keyframes, progress)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or --append to add "
                              "keyframes to it")
    staging = staging_path(out)
    try:
        lib = _fill(KeyframeLibrary.create(staging, estimator, source), keyframes, progress)
        if len(lib) == 0:
            raise LibraryError("no keyframe to write: the input holds no usable posed image")
        publish_directory(staging, out, overwrite)
    finally:
        discard_staging(staging)
    lib.root = out
    return lib


def _fill(lib: KeyframeLibrary, keyframes: Iterable[PosedKeyframe],
          progress: Callable[[int], object] | None) -> KeyframeLibrary:
    for kf in keyframes:
        lib.add(kf.rgb, kf.K, kf.T_map_camera, kf.stamp_ns, kf.source)
        if progress is not None:
            progress(len(lib))
    return lib
