"""Relocalise a live frame against the best of a keyframe library.

Per live frame: the query's features are computed once; candidates are the keyframes nearest the
pose prior (position and viewing direction) plus ``retrieval_check`` found by appearance or,
without a prior (start-up, lost, kidnapped), the ``k`` whose global descriptor is most like the
query's; MicKey runs against them with their cached features, batched; the estimate with the
highest confidence wins and, if it passes the gate, becomes the prior of the next frame
(tracking).

Convention:
    ``Localization.estimate`` is ``T_query_kf`` (MicKey's output against the winning keyframe);
    ``T_map_camera = T_map_kf @ inv(T_query_kf)`` is the live camera in the map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mickey_ros.estimator.relative_pose import ImageFeatures
from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.geometry.pose import invert_transform
from mickey_ros.keyframes.descriptor import pooled_descriptor
from mickey_ros.keyframes.library import KeyframeLibrary
from mickey_ros.keyframes.selection import select_by_appearance, select_near_prior
from mickey_ros.keyframes.store import KeyframeEntry

if TYPE_CHECKING:
    from mickey_ros.relocalization.params import NodeParams

MODES = ("prior", "retrieval", "tracking", "none")


@dataclass(frozen=True)
class LocalizerConfig:
    """How keyframes are chosen per live frame (the node's ``keyframes.*`` parameters)."""

    k: int = 3  # keyframes MicKey runs against per live frame (batched)
    retrieval: bool = True  # appearance retrieval when there is no usable prior
    prior_radius_m: float = 3.0  # keyframes farther from the prior's camera are not tried
    prior_max_angle_deg: float = 60.0  # ... nor those looking more than this away from it
    recheck_every: int = 0  # while tracking: frames between full top-k checks (0 = every frame)
    min_confidence: float = 0.05  # inlier ratio of a fix that counts as tracking (the gate's)
    track: bool = True  # the last fix that passed the gate is the next frame's prior
    max_failures: int = 2  # failed frames in a row before the prior is ignored (retrieval)
    # appearance candidates tried beside those near a prior: a wrong prior that still passes
    # the gate (the robot was carried away) is overruled by the place the camera really sees
    retrieval_check: int = 1

    @classmethod
    def from_node_params(cls, params: NodeParams) -> LocalizerConfig:
        """The node's (and replay's) ``keyframes.*`` parameters and its gate."""
        kf = params.keyframes
        return cls(k=kf.k, retrieval=kf.retrieval, prior_radius_m=kf.prior_radius_m,
                   recheck_every=kf.recheck_interval, min_confidence=params.gate.min_confidence)

    def __post_init__(self) -> None:
        if self.k < 1 or self.recheck_every < 0 or self.max_failures < 1 or (
                self.retrieval_check < 0):
            raise ValueError(f"keyframes: k and max_failures must be >= 1, recheck_every and "
                             f"retrieval_check >= 0, got {self.k}, {self.max_failures}, "
                             f"{self.recheck_every}, {self.retrieval_check}")
        if self.prior_radius_m <= 0 or not 0 < self.prior_max_angle_deg <= 180:
            raise ValueError("keyframes: prior_radius_m must be > 0 and prior_max_angle_deg in "
                             f"(0, 180], got {self.prior_radius_m}, {self.prior_max_angle_deg}")


@dataclass
class Localization:
    """The outcome for one live frame.

    Attributes:
        estimate: the winner's ``T_query_kf`` (invalid with a reason when nothing was tried or
            nothing was solved).
        keyframe: the winning keyframe (None when none).
        T_map_camera: (4, 4) live camera in the map from the winner (None unless valid).
        mode: how candidates were chosen: 'prior', 'retrieval', 'tracking' or 'none'.
        candidates: ids of the keyframes tried, in the order chosen.
        confidences: their confidences (soft inliers; 0 for an invalid estimate), same order.
        runner_up_id: the second-best keyframe ('' when fewer than two were tried).
        runner_up_confidence: its confidence (0 when none).
        index: the winner's index in ``library.entries`` (-1 when none).
    """

    estimate: PoseEstimate
    keyframe: KeyframeEntry | None = None
    T_map_camera: np.ndarray | None = None
    mode: str = "none"
    candidates: list[str] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    runner_up_id: str = ""
    runner_up_confidence: float = 0.0
    index: int = -1


def _estimate_grouped(library: KeyframeLibrary, query: ImageFeatures,
                      indices: list[int]) -> list[PoseEstimate]:
    """``estimate_against`` per feature-grid size (one batch each), in ``indices`` order."""
    out: dict[int, PoseEstimate] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for i in indices:
        groups.setdefault(library.features[i].feats.grid_hw, []).append(i)
    for members in groups.values():
        refs = [library.features[i] for i in members]
        out.update(zip(members, library.estimator.estimate_against(query, refs)))
    return [out[i] for i in indices]


class LibraryLocalizer:
    """Chooses keyframes for each live frame and keeps the track between frames.

    Example::

        localizer = LibraryLocalizer(KeyframeLibrary.open(lib, est, source), LocalizerConfig())
        fix = localizer.localize(rgb, K)                   # no prior: appearance retrieval
        fix = localizer.localize(rgb, K, T_map_prior=T)    # keyframes near the prior
    """

    def __init__(self, library: KeyframeLibrary, config: LocalizerConfig = LocalizerConfig()):
        self.library, self.config = library, config
        self.reset()

    def reset(self) -> None:
        """Forget the track (the robot was carried away, the map changed)."""
        self._last_fix: np.ndarray | None = None
        self._last_index: int | None = None
        self._since_check = 0
        self._failures = 0

    def _candidates(
        self, query: ImageFeatures, prior: np.ndarray | None
    ) -> tuple[list[int], str, str]:
        """(indices, mode, why none) for this frame."""
        cfg, lib = self.config, self.library
        if len(lib) == 0:
            return [], "none", (f"keyframe library {lib.root} has no usable keyframe: build one "
                                "(mickey-ros keyframes build) or capture one")
        tracking = cfg.recheck_every and self._last_index is not None and self._failures == 0
        if tracking and self._since_check < cfg.recheck_every:
            return [self._last_index], "tracking", ""
        if prior is None and cfg.track and self._failures < cfg.max_failures:
            prior = self._last_fix
        if prior is not None and self._failures >= cfg.max_failures:
            prior = None  # the prior keeps failing: the robot may have been carried away
        why = "no pose prior and retrieval is off"
        if prior is not None:
            indices = select_near_prior(prior, lib.poses, cfg.k, cfg.prior_radius_m,
                                        cfg.prior_max_angle_deg)
            if indices:
                check = self._retrieve(query, cfg.retrieval_check) if cfg.retrieval else []
                return indices + [i for i in check if i not in indices], "prior", ""
            why = (f"no keyframe within {cfg.prior_radius_m:g} m and "
                   f"{cfg.prior_max_angle_deg:g} deg of the pose prior")
        if cfg.retrieval:
            return self._retrieve(query, cfg.k), "retrieval", ""
        hint = (" (turn retrieval on to search by appearance: replay without --no-retrieval, "
                "node parameter keyframes.retrieval true)")
        return [], "none", why + hint

    def _retrieve(self, query: ImageFeatures, k: int) -> list[int]:
        feats = query.feats
        desc = pooled_descriptor(feats.descriptors[0], feats.scores[0], feats.grid_hw)
        return select_by_appearance(desc, self.library.descriptors, k)

    def localize(self, rgb: np.ndarray, K: np.ndarray,
                 T_map_prior: np.ndarray | None = None) -> Localization:
        """Localise one live frame (RGB uint8 (H, W, 3), K (3, 3)) in the library's map.

        Args:
            T_map_prior: (4, 4) the live camera's pose guess in the map (from TF), or None.

        Raises:
            ValueError / ImageError: unusable image or K (from the estimator).
        """
        query = self.library.estimator.extract_features(rgb, K)
        indices, mode, why = self._candidates(query, T_map_prior)
        if not indices:
            self._failures += 1
            return Localization(PoseEstimate.invalid(why, query.timings_ms), mode=mode)
        estimates = _estimate_grouped(self.library, query, indices)
        conf = [e.confidence if e.valid else 0.0 for e in estimates]
        order = sorted(range(len(indices)), key=lambda j: -conf[j])
        best = order[0]
        fix = self._result(indices, estimates, conf, order, mode)
        self._update_track(fix, indices[best], mode)
        return fix

    def _result(self, indices: list[int], estimates: list[PoseEstimate], conf: list[float],
                order: list[int], mode: str) -> Localization:
        entries = [self.library.entries[i] for i in indices]
        best, estimate = order[0], estimates[order[0]]
        T_map_camera = None
        if estimate.valid:
            T_map_camera = entries[best].T_map_camera @ invert_transform(estimate.T_query_ref)
        runner = order[1] if len(order) > 1 else None
        return Localization(
            estimate, entries[best], T_map_camera, mode, [e.id for e in entries], conf,
            entries[runner].id if runner is not None else "",
            conf[runner] if runner is not None else 0.0, indices[best])

    def _update_track(self, fix: Localization, index: int, mode: str) -> None:
        passed = fix.estimate.valid and fix.estimate.inlier_ratio >= self.config.min_confidence
        if passed:
            self._last_fix, self._last_index, self._failures = fix.T_map_camera, index, 0
            self._since_check = self._since_check + 1 if mode == "tracking" else 0
        else:
            self._failures += 1
