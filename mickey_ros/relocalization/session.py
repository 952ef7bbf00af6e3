"""ROS-free relocalisation logic shared by the ROS node and the offline replay.

A ``RelocalizationSession`` holds the reference keyframe, runs the estimator on live frames, gates
poses on quality and works out every transform the node broadcasts, so the node and
``mickey-ros replay`` produce identical outputs for the same input (only the latency fields
differ). ``LatestFrameSlot`` is the "latest frame only" hand-over between a subscriber and the
inference worker.

Convention:
    ``T_a_b`` (4, 4) maps frame-b points into frame a, i.e. the pose of b in a, which is what a TF
    transform parent=a -> child=b carries. The estimator returns ``T_query_ref``; the relative pose
    published is its inverse ``T_ref_query``.

Frames per ``tf_mode`` (``reference_frame``/``query_frame`` are parameters):
    - ``relative``: reference_frame -> query_frame carries T_ref_query (two new frames, so the
      robot's tree never gets a second parent).
    - ``attach_reference``: <live camera frame from the image header> -> reference_frame carries
      T_query_ref (the keyframe hangs under the robot's camera).
    - ``map_to_odom``: map -> odom carries T_map_odom = T_map_ref T_ref_query inv(T_odom_query),
      with T_odom_query the live camera in odom at the image stamp (REP-105), future-dated by
      ``transform_tolerance_s`` and re-broadcast by the caller through ``rebroadcast``.
    - ``none``: no TF; topics only.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from mickey_ros.estimator.result import PoseEstimate, PoseEstimator

TF_MODES = ("relative", "attach_reference", "map_to_odom", "none")
NO_REFERENCE = (
    "no reference keyframe yet: publish reference/image + reference/camera_info, call "
    "~/capture_reference or set reference.image_path"
)
ItemT = TypeVar("ItemT")


def _is_rotation(R: np.ndarray) -> bool:
    return bool(np.allclose(R @ R.T, np.eye(3), atol=1e-4) and np.linalg.det(R) > 0)


@dataclass(frozen=True)
class SessionConfig:
    """Frames, TF mode and quality gate of a session (the node's ``output``/``gate`` params)."""

    tf_mode: str = "relative"  # one of TF_MODES
    reference_frame: str = "mickey_reference_optical"  # new frame of the keyframe camera
    query_frame: str = "mickey_query_optical"  # new frame of the live camera (tf_mode relative)
    map_frame: str = "map"  # REP-105
    odom_frame: str = "odom"  # REP-105
    map_to_reference: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # x y z qx qy qz qw
    transform_tolerance_s: float = 0.1  # future-dating of map->odom, as AMCL's transform_tolerance
    min_confidence: float = 0.05  # minimum inlier ratio = soft inliers / sampled matches, in [0, 1]
    expected_camera_frame: str = ""  # live frames from another frame_id are rejected; '' = any
    covariance_translation_m: float = 0.05  # 1-sigma position at inlier ratio 1 (heuristic)
    covariance_rotation_rad: float = 0.02  # 1-sigma rotation at inlier ratio 1 (heuristic)

    def __post_init__(self) -> None:
        if self.tf_mode not in TF_MODES:
            raise ValueError(f"tf_mode must be one of {TF_MODES}, got {self.tf_mode!r}")
        for name in ("reference_frame", "query_frame", "map_frame", "odom_frame"):
            value = getattr(self, name)
            if not value or value.startswith("/"):
                raise ValueError(f"{name} {value!r} must be non-empty and not start with '/'")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(
                f"min_confidence is an inlier ratio in [0, 1], got {self.min_confidence}"
            )
        pose = np.asarray(self.map_to_reference, dtype=np.float64)
        if pose.shape != (7,) or not np.all(np.isfinite(pose)) or np.linalg.norm(pose[3:]) < 1e-9:
            raise ValueError(
                f"map_to_reference must be 7 finite numbers x y z qx qy qz qw with a non-zero "
                f"quaternion, got {list(self.map_to_reference)}"
            )


@dataclass(frozen=True)
class Frame:
    """One decoded camera image: RGB uint8 (H, W, 3), K (3, 3) of that image, stamp, frame id."""

    rgb: np.ndarray
    K: np.ndarray
    stamp_ns: int
    frame_id: str


@dataclass(frozen=True)
class StampedTransform:
    """``T_parent_child`` (4, 4) at ``stamp_ns``: one TF edge or one stamped pose."""

    T_parent_child: np.ndarray
    parent: str
    child: str
    stamp_ns: int


@dataclass
class SessionResult:
    """Everything published for one processed live frame.

    Attributes:
        estimate: the estimator's output (invalid with a reason when no pose was computed).
        stamp_ns: stamp of the live image (every output carries it, never 'now').
        camera_frame: frame id of the live image header.
        publish: the pose passed the gate: publish ``~/relative_pose``, TF and the pose topic.
        gate_reason: why it did not (None when ``publish``).
        has_pose: the solver returned a usable pose (valid, finite, a proper rotation), whether
            or not it passed the gate: ``valid`` of ``~/estimate``.
        relative: T_ref_query, reference_frame -> query_frame (``~/relative_pose``, ``~/estimate``):
            the solver's pose whenever ``has_pose`` (also for a frame the gate rejected, as the
            replay CSV reports it), identity otherwise.
        pose: the query camera pose for PoseWithCovarianceStamped (map frame in map_to_odom).
        transforms: TF edges to broadcast for ``tf_mode`` (empty unless ``publish``).
        tf_error: why ``transforms`` is empty although ``publish`` (e.g. no odom TF at the stamp).
        covariance: (6, 6) of (x, y, z, rot_x, rot_y, rot_z), heuristic from the inlier ratio.
        reference_stamp_ns: stamp of the keyframe the pose refers to.
        inference_ms: wall time of the estimator call.
        e2e_ms: image stamp to result, ``now_ns - stamp_ns`` + inference.
        keyframe_id: library mode: the keyframe the pose was solved against ('' otherwise).
        runner_up_confidence: library mode: the best other keyframe's confidence (0 if none).
    """

    estimate: PoseEstimate
    stamp_ns: int
    camera_frame: str
    publish: bool
    gate_reason: str | None
    has_pose: bool
    relative: StampedTransform
    pose: StampedTransform
    transforms: list[StampedTransform] = field(default_factory=list)
    tf_error: str | None = None
    covariance: np.ndarray = field(default_factory=lambda: np.eye(6))
    reference_stamp_ns: int = 0
    inference_ms: float = 0.0
    e2e_ms: float = 0.0
    keyframe_id: str = ""
    runner_up_confidence: float = 0.0

    @property
    def status(self) -> str:
        """'ok' or the gate reason (the ``status`` field of ``~/estimate``)."""
        return "ok" if self.gate_reason is None else self.gate_reason


@dataclass
class SessionStats:
    """Counters for diagnostics (the caller adds dropped frames from its ``LatestFrameSlot``)."""

    processed: int = 0
    published: int = 0
    rejected: int = 0  # processed but not published (gate, no keyframe, wrong camera, inference)
    bad_frames: int = 0  # never reached the estimator (decode errors, bad CameraInfo), via reject
    resets: int = 0
    last_reason: str | None = None
    last_published: bool = False  # whether the last processed frame passed the gate
    last_confidence: float = 0.0
    last_inlier_ratio: float = 0.0
    last_inference_ms: float = 0.0


def _map_anchor(config: SessionConfig) -> np.ndarray:
    """T_map_ref (4, 4) from ``config.map_to_reference`` = (x, y, z, qx, qy, qz, qw)."""
    from mickey_ros.geometry.pose import transform_from_xyz_qxyzw  # lazily: no torch at launch

    pose = config.map_to_reference
    return transform_from_xyz_qxyzw(pose[:3], pose[3:])


def _invert(T_b_a: np.ndarray) -> np.ndarray:
    from mickey_ros.geometry.pose import invert_transform  # lazily: no torch at launch

    return invert_transform(np.asarray(T_b_a, dtype=np.float64))


class RelocalizationSession:
    """Reference keyframe + gated relative poses + the TF edges of one camera.

    Not thread-safe: the node serialises ``process``/``set_reference``/``reset`` with one lock.

    Example (``estimator`` is a ``RelativePoseEstimator`` or any ``PoseEstimator``)::

        session = RelocalizationSession(estimator, SessionConfig(tf_mode="relative"))
        session.set_reference(Frame(rgb_ref, K_ref, stamp_ns=0, frame_id="camera_optical"))
        result = session.process(Frame(rgb, K, 10**9, "camera_optical"), now_ns=10**9)
    """

    def __init__(self, estimator: PoseEstimator, config: SessionConfig = SessionConfig()) -> None:
        self.estimator = estimator
        self.config = config
        self.stats = SessionStats()
        self.reference: Frame | None = None
        self._last_map_odom: np.ndarray | None = None
        self._T_map_ref = _map_anchor(config)

    @property
    def T_map_ref(self) -> np.ndarray:
        """(4, 4) keyframe camera pose in the map (``map_to_reference``), for a static TF."""
        return self._T_map_ref.copy()

    def set_config(self, config: SessionConfig) -> None:
        """Swap in a new config (dynamic parameters such as ``min_confidence``)."""
        self.config = config
        self._T_map_ref = _map_anchor(config)

    # ------------------------------------------------------------------ keyframe
    def set_reference(self, frame: Frame) -> None:
        """Make ``frame`` the keyframe; its features are computed (and cached) by the estimator.

        Raises:
            ValueError / ImageError: from the estimator for an unusable image or K (the old
                keyframe is kept).
        """
        self.estimator.set_reference(frame.rgb, frame.K)
        self.reference = frame
        self._last_map_odom = None

    def keyframe_age_s(self, now_ns: int) -> float | None:
        """Seconds since the keyframe's stamp, or None without keyframe."""
        return None if self.reference is None else (now_ns - self.reference.stamp_ns) / 1e9

    def reset(self, keep_reference: bool = False) -> None:
        """Forget the last map->odom and (unless ``keep_reference``) the keyframe.

        Called on a backwards clock jump (bag loop); a keyframe loaded from disk is kept.
        """
        self._last_map_odom = None
        self.stats.resets += 1
        if not keep_reference:
            self.reference = None
            clear = getattr(self.estimator, "clear_reference", None)
            if clear is not None:
                clear()

    def reject(self, reason: str) -> None:
        """Count a frame that never reached the estimator (undecodable image, bad CameraInfo)."""
        self.stats.bad_frames += 1
        self.stats.last_reason = reason

    # ------------------------------------------------------------------ processing
    def _estimate(self, frame: Frame) -> PoseEstimate:
        import torch

        expected = self.config.expected_camera_frame
        if self.reference is None:
            return PoseEstimate.invalid(NO_REFERENCE)
        if expected and frame.frame_id != expected:
            return PoseEstimate.invalid(
                f"frame from camera {frame.frame_id!r}, expected {expected!r} "
                "(parameter input.expected_camera_frame)"
            )
        try:
            return self.estimator.estimate(frame.rgb, frame.K)
        except torch.cuda.OutOfMemoryError as err:
            torch.cuda.empty_cache()
            return PoseEstimate.invalid(
                f"GPU out of memory, frame dropped ({err}); lower model.input_width/height or "
                "use model.precision fp16"
            )
        except ValueError as err:  # ImageError included: bad image or K for the estimator
            return PoseEstimate.invalid(f"{type(err).__name__}: {err}")
        except RuntimeError as err:  # torch kernel failures; the frame is dropped, not the node
            return PoseEstimate.invalid(f"inference failed with {type(err).__name__}: {err}")

    @staticmethod
    def _pose_problem(estimate: PoseEstimate) -> str | None:
        """Why the estimate carries no usable pose, or None if it does (before the gate)."""
        if not estimate.valid:
            return estimate.reason or "invalid estimate"
        R, t = np.asarray(estimate.R, np.float64), np.asarray(estimate.t, np.float64)
        if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))) or not _is_rotation(R):
            return "solver returned a non-finite or degenerate pose"
        return None

    def _gate(self, estimate: PoseEstimate) -> str | None:
        problem = self._pose_problem(estimate)
        if problem is not None:
            return problem
        if estimate.inlier_ratio < self.config.min_confidence:
            # two different counts: the soft-inlier sum the ratio is made of, and the hard
            # count that ~/estimate's num_inliers carries (issue 28)
            return (
                f"low confidence: inlier ratio {estimate.inlier_ratio:.3f} < min_confidence "
                f"{self.config.min_confidence:.3f} (soft-inlier sum {estimate.confidence:.0f} of "
                f"{estimate.num_samples} sampled matches; hard inlier count {estimate.num_inliers})"
            )
        return None

    def _covariance(self, estimate: PoseEstimate) -> np.ndarray:
        ratio = min(max(estimate.inlier_ratio if estimate.valid else 0.0, 1e-3), 1.0)
        sigma_t = self.config.covariance_translation_m / ratio
        sigma_r = self.config.covariance_rotation_rad / ratio
        return np.diag([sigma_t**2] * 3 + [sigma_r**2] * 3)

    def _transforms(
        self, frame: Frame, T_ref_query: np.ndarray, T_odom_camera: np.ndarray | None
    ) -> tuple[list[StampedTransform], str | None]:
        cfg, stamp = self.config, frame.stamp_ns
        if cfg.tf_mode == "relative":
            edge = StampedTransform(T_ref_query, cfg.reference_frame, cfg.query_frame, stamp)
            return [edge], None
        if cfg.tf_mode == "attach_reference":
            if not frame.frame_id or frame.frame_id.startswith("/"):
                return [], (
                    f"image header frame_id {frame.frame_id!r} is not a TF frame; fix the camera "
                    "driver's frame_id or use tf_mode relative"
                )
            T_query_ref = _invert(T_ref_query)
            return [StampedTransform(T_query_ref, frame.frame_id, cfg.reference_frame, stamp)], None
        if cfg.tf_mode == "map_to_odom":
            if T_odom_camera is None:
                return [], (
                    f"no {cfg.odom_frame} -> {frame.frame_id} transform at the image stamp; "
                    "map->odom not updated (is odometry running and the camera in the TF tree?)"
                )
            T_map_odom = self._T_map_ref @ T_ref_query @ _invert(T_odom_camera)
            self._last_map_odom = T_map_odom
            stamp += int(cfg.transform_tolerance_s * 1e9)
            return [StampedTransform(T_map_odom, cfg.map_frame, cfg.odom_frame, stamp)], None
        return [], None

    def process(
        self, frame: Frame, now_ns: int, T_odom_camera: np.ndarray | None = None
    ) -> SessionResult:
        """Estimate, gate and build the outputs for one live frame.

        Args:
            frame: the live image, its K (original resolution; the estimator resizes) and header.
            now_ns: the frame's stamp plus its age now, for ``e2e_ms`` (the node measures the
                age on a steady clock, the replay takes the decode time).
            T_odom_camera: (4, 4) pose of the live camera optical frame in odom at the image
                stamp; needed only by ``tf_mode: map_to_odom``.
        """
        cfg = self.config
        t0 = time.perf_counter()
        estimate = self._estimate(frame)
        inference_ms = (time.perf_counter() - t0) * 1e3
        reason = self._gate(estimate)
        accepted = reason is None
        # a pose the gate rejected is still reported (valid, not accepted) on ~/estimate and in
        # the replay CSV; identity only when there is no pose at all
        has_pose = self._pose_problem(estimate) is None
        T_ref_query = _invert(estimate.T_query_ref) if has_pose else np.eye(4)
        transforms, tf_error = [], None
        if accepted:
            transforms, tf_error = self._transforms(frame, T_ref_query, T_odom_camera)
        stamp = frame.stamp_ns
        pose = StampedTransform(T_ref_query, cfg.reference_frame, cfg.query_frame, stamp)
        if cfg.tf_mode == "map_to_odom":
            T_map_query = self._T_map_ref @ T_ref_query
            pose = StampedTransform(T_map_query, cfg.map_frame, cfg.query_frame, stamp)
        self._count(estimate, reason, inference_ms)
        return SessionResult(
            estimate=estimate, stamp_ns=stamp, camera_frame=frame.frame_id, publish=accepted,
            gate_reason=reason, has_pose=has_pose,
            relative=StampedTransform(T_ref_query, cfg.reference_frame, cfg.query_frame, stamp),
            pose=pose, transforms=transforms, tf_error=tf_error,
            covariance=self._covariance(estimate),
            reference_stamp_ns=self.reference.stamp_ns if self.reference is not None else 0,
            inference_ms=inference_ms, e2e_ms=(now_ns - stamp) / 1e6 + inference_ms,
        )

    def _count(self, estimate: PoseEstimate, reason: str | None, inference_ms: float) -> None:
        stats = self.stats
        stats.processed += 1
        stats.last_confidence = float(estimate.confidence)
        stats.last_inlier_ratio = float(estimate.inlier_ratio)
        stats.last_inference_ms = inference_ms
        stats.last_published = reason is None
        if reason is None:
            stats.published += 1
        else:
            stats.rejected += 1
            stats.last_reason = reason

    def rebroadcast(self, now_ns: int) -> list[StampedTransform]:
        """The last map->odom stamped ``now + transform_tolerance`` ([] otherwise)."""
        cfg = self.config
        if cfg.tf_mode != "map_to_odom" or self._last_map_odom is None:
            return []
        stamp = now_ns + int(cfg.transform_tolerance_s * 1e9)
        return [StampedTransform(self._last_map_odom, cfg.map_frame, cfg.odom_frame, stamp)]


class LatestFrameSlot(Generic[ItemT]):
    """Thread-safe single slot: ``put`` replaces the waiting item (counted as dropped).

    Frames are dropped, never queued, while the consumer (GPU inference) is busy, so latency
    stays bounded by one inference whatever the input rate.

    >>> slot = LatestFrameSlot()
    >>> slot.put(1), slot.put(2), slot.take(), slot.take(), slot.dropped
    (False, True, 2, None, 1)
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: ItemT | None = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: ItemT) -> bool:
        """Offer the newest item; returns True when it replaced (dropped) a waiting one."""
        with self._cond:
            replaced = self._item is not None
            self.dropped += int(replaced)
            self.received += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float = 0.0) -> ItemT | None:
        """The newest item (removing it), waiting up to ``timeout`` s; None if none or closed."""
        with self._cond:
            if self._item is None and timeout > 0 and not self._closed:
                self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        """Discard a waiting item (counted as dropped), e.g. after a clock jump."""
        with self._cond:
            self.dropped += int(self._item is not None)
            self._item = None

    def close(self) -> None:
        """Wake a waiting consumer for shutdown; later ``take`` calls do not wait."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
