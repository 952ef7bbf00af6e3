"""``RelocalizationSession`` against a keyframe library (library mode of replay and the node).

Each live frame's keyframe is chosen by a ``LibraryLocalizer``; everything else (gate, covariance,
TF edges, counters, error handling) is the single-keyframe session's, with the winning
keyframe's map pose as the anchor of that frame. So ``result.relative`` is ``T_kf_query``
(relative to the keyframe named by ``last.keyframe``) and ``result.pose`` is always the live
camera in the map, whatever ``tf_mode``; ``map_to_odom`` broadcasts map -> odom from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.geometry.pose import invert_transform
from mickey_ros.keyframes.localizer import LibraryLocalizer, Localization, LocalizerConfig
from mickey_ros.keyframes.store import KeyframeEntry, LibraryError
from mickey_ros.relocalization.session import (
    Frame,
    RelocalizationSession,
    SessionConfig,
    SessionResult,
    StampedTransform,
)
from mickey_ros.utils.outputs import is_empty_directory


class _LocalizerEstimator:
    """The session's ``estimator``: ``estimate`` runs the localizer with the frame's prior."""

    def __init__(self, session: LibrarySession) -> None:
        self.session = session
        self.model_name = session.localizer.library.estimator.model_name

    def estimate(self, image: np.ndarray, K: np.ndarray) -> PoseEstimate:
        fix = self.session.localizer.localize(image, K, self.session.prior)
        self.session.last = fix
        return fix.estimate

    def set_reference(self, image: np.ndarray, K: np.ndarray) -> None:
        raise ValueError("library mode: keyframes come from the keyframe library; add one with "
                         "the capture service or `mickey-ros keyframes build --append`")

    def clear_reference(self) -> None:
        self.session.localizer.reset()

    @property
    def has_reference(self) -> bool:
        return len(self.session.localizer.library) > 0


class LibrarySession(RelocalizationSession):
    """Relocalisation against the best of many posed keyframes.

    Attributes:
        localizer: chooses the keyframes and keeps the track.
        last: the last frame's ``Localization`` (keyframe used, runner-up), None before one.
        prior: ``T_map_camera`` guess of the frame being processed (``process`` sets it).
    """

    def __init__(self, localizer: LibraryLocalizer, config: SessionConfig = SessionConfig()):
        self.localizer = localizer
        self.last: Localization | None = None
        self.prior: np.ndarray | None = None
        super().__init__(_LocalizerEstimator(self), config)
        self._keyframe_id = ""
        self._T_map_odom: np.ndarray | None = None  # from the last accepted fix

    def _estimate(self, frame: Frame) -> PoseEstimate:
        library = self.localizer.library
        if len(library) == 0:
            return PoseEstimate.invalid(
                f"keyframe library {library.root} has no usable keyframe: build one with "
                "`mickey-ros keyframes build` or capture one")
        self.last = None
        if self.reference is None:  # the base class needs one; the winner replaces it below
            self.reference = Frame(np.zeros((1, 1, 3), np.uint8), np.eye(3), 0, "")
        estimate = super()._estimate(frame)
        if self.last is not None and self.last.index >= 0:
            self._use_keyframe(self.last.index)
        return estimate

    def _use_keyframe(self, index: int) -> None:
        entry = self.localizer.library.entries[index]
        self._T_map_ref = entry.T_map_camera.copy()
        if entry.id == self._keyframe_id:
            return
        try:  # only the debug image needs the pixels; a missing file costs just that
            rgb = self.localizer.library.image(index)
        except LibraryError:
            rgb = np.zeros((1, 1, 3), np.uint8)
        self.reference = Frame(rgb, entry.K, entry.stamp_ns, entry.id)
        self._keyframe_id = entry.id

    def process(self, frame: Frame, now_ns: int, T_odom_camera: np.ndarray | None = None,
                T_map_prior: np.ndarray | None = None) -> SessionResult:
        """As ``RelocalizationSession.process``; ``T_map_prior`` (4, 4) is the live camera's
        map pose guess (TF). Without one, the last accepted fix moved on by odometry
        (``T_odom_camera``) is the prior; without odometry the localizer keeps its own track or
        retrieves by appearance."""
        if T_map_prior is None and T_odom_camera is not None and self._T_map_odom is not None:
            T_map_prior = self._T_map_odom @ T_odom_camera  # last fix moved on by odometry
        self.prior = T_map_prior
        result = super().process(frame, now_ns, T_odom_camera)
        if self.last is not None and self.last.keyframe is not None:
            result.keyframe_id = self.last.keyframe.id
            result.runner_up_confidence = float(self.last.runner_up_confidence)
        cfg = self.config
        T_map_query = self._T_map_ref @ result.relative.T_parent_child
        result.pose = StampedTransform(T_map_query, cfg.map_frame, cfg.query_frame,
                                       result.stamp_ns)
        if result.publish and T_odom_camera is not None:
            self._T_map_odom = T_map_query @ invert_transform(T_odom_camera)
        return result

    def reset(self, keep_reference: bool = False) -> None:
        """As ``RelocalizationSession.reset``; also forgets the map -> odom of the last fix."""
        self._T_map_odom = None
        if not keep_reference:
            self._keyframe_id = ""  # the next winner becomes the reference again, same id or not
        super().reset(keep_reference)

    def set_options(self, options: LocalizerConfig) -> None:
        """New selection settings (the node's dynamic ``keyframes.*``); the track is kept."""
        self.localizer.config = options

    def capture(self, frame: Frame, T_map_camera: np.ndarray) -> KeyframeEntry:
        """Add ``frame`` at ``T_map_camera`` (4, 4) to the library and persist it at once.

        Raises:
            ValueError / ImageError: unusable image, K or pose (the library is unchanged).
            OSError: the library directory cannot be written.
        """
        return self.localizer.library.add(frame.rgb, frame.K, T_map_camera, frame.stamp_ns,
                                          source=f"capture {frame.frame_id}")


def open_library_session(root: str | Path, estimator: Any, params: Any,
                         options: LocalizerConfig = LocalizerConfig(),
                         warn: Callable[[str], object] = print,
                         create: bool = False) -> LibrarySession:
    """A ``LibrarySession`` on the library at ``root`` for the node parameters ``params``.

    The localizer's gate is the session's (``params.gate.min_confidence``); the features are
    checked against ``params.model.checkpoint`` (or the estimator's weights without one).
    With ``create`` (the node), a missing or empty directory becomes an empty library (one
    ``warn`` line), to be filled by the capture service.

    Raises:
        LibraryError: no library at ``root`` or a corrupt manifest (one line with the fix).
    """
    from mickey_ros.keyframes.library import KeyframeLibrary, feature_source

    source = feature_source(estimator, params.model.checkpoint or None)
    root = Path(root)
    if create and (not root.exists() or is_empty_directory(root)):
        library = KeyframeLibrary.create(root, estimator, source)
        warn(f"keyframe library {root} did not exist: created it empty; add keyframes with the "
             "~/capture_keyframe service or `mickey-ros keyframes build --append`")
    else:
        library = KeyframeLibrary.open(root, estimator, source, warn)
    options = dataclasses.replace(options, min_confidence=params.gate.min_confidence)
    return LibrarySession(LibraryLocalizer(library, options), params.session_config())
