"""Keyframes of the bags, streamed to a staging folder: motion, blur, jumps and the optical frame.

Every camera frame with a pose passes ``_Gate.want`` before it is decoded: the first one fixes
the camera-frame convention (the gravity check), a jump or a hole in the stream starts a new
scene, and too little motion since the last keyframe skips it. A wanted frame is then decoded,
dropped if blurred, and written as ``<index>.jpg`` (+ ``<index>.depth.png``); only its pose,
intrinsics and a small depth grid stay in memory.

Convention:
    ``T_fixed_camera`` (4, 4) is the pose of the optical camera frame in the fixed frame, whose
    z axis points up (REP 103: ``map``, ``odom``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mickey_ros.bags.posed_images import (
    R_BODY_OPTICAL,
    KeyframeSelector,
    PosedImage,
    PosedImageReport,
    blur_score,
    read_posed_images,
)
from mickey_ros.dataset.config import DatasetConfig, DatasetError
from mickey_ros.geometry.pose import rotation_angle_deg
from mickey_ros.synth.overlap import stride_for, subsample_depth
from mickey_ros.utils.images import save_depth_png

MIN_BLUR_HISTORY = 5  # frames of sharpness history before the blur test applies


@dataclass
class FrameRecord:
    """One kept frame: its staged files are ``<staging>/<index:06d>.jpg`` (+ ``.depth.png``).

    Attributes:
        T_fixed_camera: (4, 4) pose of the optical frame in the fixed frame.
        K: (3, 3) intrinsics at ``size_wh`` = (W, H).
        depth_small: (h, w) depth subsampled for overlaps (metres, 0 = none) or None;
            K_small is its (3, 3) intrinsics.
    """

    index: int
    segment: int
    stamp_ns: int
    T_fixed_camera: np.ndarray
    K: np.ndarray
    size_wh: tuple[int, int]
    bag: str
    topic: str
    depth_small: np.ndarray | None = None
    K_small: np.ndarray | None = None


@dataclass
class CollectResult:
    """Kept frames and what happened to the others."""

    frames: list[FrameRecord] = field(default_factory=list)
    report: PosedImageReport = field(default_factory=PosedImageReport)
    posed: int = 0  # frames with a pose (before keyframe selection)
    jumps: int = 0  # consecutive frames farther apart than a robot moves
    convention: str = ""  # the camera-frame convention used: optical or body
    notes: list[str] = field(default_factory=list)


def camera_orientation(T_fixed_camera: np.ndarray) -> str:
    """'optical' (y axis down), 'body' (z axis up) or 'unknown' (looking up or down) in a z-up
    fixed frame.

    >>> camera_orientation(np.eye(4))
    'body'
    """
    R = T_fixed_camera[:3, :3]
    if R[2, 1] < -0.5:  # the camera's y axis points down: REP 103 optical
        return "optical"
    if R[2, 2] > 0.5:  # its z axis points up: a body frame (x forward, z up)
        return "body"
    return "unknown"


def resolve_convention(T_fixed_camera: np.ndarray, frame: str, asked: str) -> str:
    """The convention of the camera frame: ``asked`` checked against gravity ('auto' detects).

    Raises:
        DatasetError: the frame contradicts ``asked`` (the poses would be rotated 90 degrees
            against the images), or 'auto' cannot tell.
    """
    seen = camera_orientation(T_fixed_camera)
    fix = (f"pass --camera-convention body (x forward, z up) or name the optical frame with "
           f"--camera-frame")
    if asked == "auto":
        if seen != "unknown":
            return seen
        if "optical" in frame:
            return "optical"
        raise DatasetError(f"cannot tell whether camera frame {frame!r} is an optical frame (it "
                           f"looks up or down); pass --camera-convention optical or body")
    rotated = T_fixed_camera.copy()
    if asked == "body":
        rotated[:3, :3] = rotated[:3, :3] @ R_BODY_OPTICAL
    if camera_orientation(rotated) == "optical" or (seen == "unknown" and asked == "optical"):
        return asked
    if asked == "optical":
        raise DatasetError(f"camera frame {frame!r} has its z axis up in the fixed frame: a body "
                           f"frame (x forward), not REP 103 optical (z forward, y down); the "
                           f"poses would be rotated against the images; {fix}")
    raise DatasetError(f"--camera-convention body, but camera frame {frame!r} already has its y "
                       f"axis down (REP 103 optical); leave out --camera-convention")


class _Gate:
    """``want(stamp, T)`` for ``read_posed_images``: convention, jumps, scenes, motion."""

    def __init__(self, cfg: DatasetConfig, result: CollectResult) -> None:
        self.cfg, self.result = cfg, result
        self.selector = KeyframeSelector(cfg.min_translation_m, cfg.min_rotation_deg)
        self.prev: tuple[int, np.ndarray] | None = None
        self.segment = 0

    def new_segment(self) -> None:
        self.segment += 1
        self.selector.reset()

    def _jumped(self, stamp: int, T: np.ndarray) -> bool:
        if self.prev is None:
            return False
        dt = (stamp - self.prev[0]) / 1e9
        if dt <= 0 or dt > self.cfg.new_scene_gap_s:
            return True
        speed = np.linalg.norm(T[:3, 3] - self.prev[1][:3, 3]) / dt
        turn = rotation_angle_deg(self.prev[1][:3, :3].T @ T[:3, :3]) / dt
        if speed > self.cfg.max_speed_mps or turn > self.cfg.max_turn_dps:
            self.result.jumps += 1
            return True
        return False

    def want(self, stamp: int, T: np.ndarray) -> bool:
        result = self.result
        if not result.convention:
            frame = result.report.camera_frame
            result.convention = resolve_convention(T, frame, self.cfg.camera_convention)
            if result.convention == "body" and self.cfg.camera_convention == "auto":
                result.notes.append(f"camera frame {frame!r} is a body frame (x forward, z up): "
                                    "rotated into the optical frame (--camera-convention body)")
        result.posed += 1
        if self._jumped(stamp, T):
            self.new_segment()
        self.prev = (stamp, T)
        if self.selector.wants(T):
            return True
        result.report.drop("too little motion", "not a keyframe")
        return False


def _stage(frame: PosedImage, path: Path, cfg: DatasetConfig) -> None:
    bgr = cv2.cvtColor(frame.image_rgb, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]):
        raise OSError(f"cannot write {path}")
    if frame.depth_m is not None:
        save_depth_png(path.with_suffix(".depth.png"), frame.depth_m)


def _record(frame: PosedImage, index: int, segment: int, cfg: DatasetConfig,
            convention: str) -> FrameRecord:
    T = frame.T_fixed_camera.copy()
    if convention == "body":
        T[:3, :3] = T[:3, :3] @ R_BODY_OPTICAL
    H, W = frame.image_rgb.shape[:2]
    record = FrameRecord(index, segment, frame.stamp_ns, T, frame.K, (W, H), frame.bag,
                         frame.topic)
    if frame.depth_m is not None:
        stride = stride_for((W, H), cfg.overlap_points)
        record.depth_small, record.K_small = subsample_depth(frame.depth_m, frame.K, stride)
    return record


def collect_frames(
    cfg: DatasetConfig, bags: Sequence[str | Path], staging: Path, progress: bool = True
) -> CollectResult:
    """Stream the keyframes of ``bags`` into ``staging``; a new bag starts a new scene.

    Raises:
        BagError, DatasetError: a bad input, named in one line.
    """
    result = CollectResult()
    gate = _Gate(cfg, result)
    sharpness: deque[float] = deque(maxlen=cfg.blur_window)
    bar = tqdm(desc="frames", unit="frame", disable=not progress)
    for bag in bags:
        gate.new_segment()
        gate.prev = None
        for frame in read_posed_images(
            [bag], fixed_frame=cfg.fixed_frame, image_topic=cfg.image_topic,
            camera_frame=cfg.camera_frame, pose_topic=cfg.pose_topic,
            depth_topic=cfg.depth_topic, max_tf_gap_s=cfg.max_tf_gap_s, want=gate.want,
            report=result.report,
        ):
            bar.update(result.report.frames_read - bar.n)
            score = blur_score(frame.image_rgb)
            median = float(np.median(sharpness)) if len(sharpness) >= MIN_BLUR_HISTORY else 0.0
            sharpness.append(score)
            if score < cfg.blur_ratio * median:
                result.report.drop("blurred", f"sharpness {score:.0f} < {cfg.blur_ratio} x "
                                   f"median {median:.0f} at {frame.stamp_ns} ns")
                continue
            gate.selector.keep(frame.T_fixed_camera)
            index = len(result.frames)
            _stage(frame, staging / f"{index:06d}.jpg", cfg)
            result.frames.append(_record(frame, index, gate.segment, cfg, result.convention))
    bar.update(result.report.frames_read - bar.n)
    bar.close()
    return result
