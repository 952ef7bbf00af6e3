"""The result type every front-end consumes, and the estimator interface they code against.

Kept free of model imports so the session logic, replay, evaluation and their tests can use a
model double (any object with the ``PoseEstimator`` methods) without building a network.

Convention:
    ``T_query_ref`` maps reference-camera points into the query camera: ``X_query = R X_ref + t``,
    metres. Same as MicKey's output and Map-free's world-to-camera pose with the reference as world.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class PoseEstimate:
    """Metric relative pose of a query image with respect to the reference keyframe.

    Attributes:
        valid: False when no pose could be estimated; ``reason`` then says why.
        R: (3, 3) rotation R_query_ref (identity when invalid).
        t: (3,) translation t_query_ref in metres (zeros when invalid).
        confidence: soft-inlier count at the refinement threshold (0..num_samples), the Map-free
            confidence; 0 when invalid.
        num_inliers: hard inliers of the final pose among the sampled correspondences.
        num_samples: correspondences sampled per draw (2048 for the official solver).
        timings_ms: per-stage wall time in milliseconds (e.g. backbone, heads, matching, solver).
        reason: why the estimate is invalid (None when valid).
        matches: optional visualisation data: ``kpts_ref`` (M, 2), ``kpts_query`` (M, 2) inlier
            pixel positions in the original images, ``depth_ref`` and ``depth_query`` maps.
    """

    valid: bool
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))
    confidence: float = 0.0
    num_inliers: int = 0
    num_samples: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    matches: dict[str, np.ndarray] | None = None

    @property
    def T_query_ref(self) -> np.ndarray:
        """(4, 4) homogeneous transform reference camera -> query camera."""
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t
        return T

    @property
    def q_wxyz(self) -> np.ndarray:
        """(4,) unit quaternion (w, x, y, z) of ``R``, w >= 0."""
        import torch

        from mickey_ros.geometry.pose import rotmat_to_quat_wxyz

        return rotmat_to_quat_wxyz(torch.from_numpy(np.asarray(self.R, dtype=np.float64))).numpy()

    @property
    def inlier_ratio(self) -> float:
        """Confidence / num_samples in [0, 1] (the ratio MicKey's web demo shows)."""
        return self.confidence / self.num_samples if self.num_samples else 0.0

    @classmethod
    def invalid(cls, reason: str, timings_ms: dict[str, float] | None = None) -> PoseEstimate:
        """An invalid estimate carrying the reason."""
        return cls(valid=False, reason=reason, timings_ms=dict(timings_ms or {}))

    def to_dict(self) -> dict:
        """JSON-friendly view (the ``mickey-ros pose --json`` output)."""
        out = {
            "valid": self.valid,
            "R": np.asarray(self.R).tolist(),
            "t": np.asarray(self.t).tolist(),
            "q_wxyz": self.q_wxyz.tolist(),
            "confidence": float(self.confidence),
            "num_inliers": int(self.num_inliers),
            "num_samples": int(self.num_samples),
            "inlier_ratio": self.inlier_ratio,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }
        if not self.valid:
            out["reason"] = self.reason
        return out


class PoseEstimator(Protocol):
    """What front-ends need from an estimator (``RelativePoseEstimator`` or a test double).

    Images are RGB uint8 (H, W, 3); K is (3, 3) float intrinsics of that image.
    """

    def set_reference(self, image: np.ndarray, K: np.ndarray) -> None:
        """Set the keyframe."""

    def clear_reference(self) -> None:
        """Forget the keyframe (clock jump, new map)."""

    @property
    def has_reference(self) -> bool:
        """Whether a keyframe is set."""

    def estimate(self, image: np.ndarray, K: np.ndarray) -> PoseEstimate:
        """Pose of one query relative to the keyframe."""

    def estimate_batch(
        self, images: list[np.ndarray], Ks: list[np.ndarray]
    ) -> list[PoseEstimate]:
        """Poses of several queries."""
