"""The Map-free thresholds, metric names and per-scene errors shared by the scorer and its report.

Constants from reference/mapfree_benchmark.md (the official ``benchmark/config.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

T_THRESHOLD_M = 0.25  # official benchmark/config.py t_threshold
R_THRESHOLD_DEG = 5.0  # official R_threshold
VCRE_THRESHOLD_PX = 90.0  # official vcre_threshold
KEY_T = "Average Median Translation Error"
KEY_R = "Average Median Rotation Error"
KEY_VCRE = "Average Median Reprojection Error"
KEY_POSE_PREC = "Precision @ Pose Error < (25.0cm, 5deg)"
KEY_POSE_AUC = "AUC @ Pose Error < (25.0cm, 5deg)"
KEY_VCRE_PREC = "Precision @ VCRE < 90px"
KEY_VCRE_AUC = "AUC @ VCRE < 90px"
KEY_COVERAGE = "Estimates for % of frames"
OFFICIAL_KEYS = (
    KEY_T,
    KEY_R,
    KEY_VCRE,
    KEY_POSE_PREC,
    KEY_POSE_AUC,
    KEY_VCRE_PREC,
    KEY_VCRE_AUC,
    KEY_COVERAGE,
)


@dataclass
class SceneScore:
    """Per-frame errors of one scene over its estimated frames, plus its failures.

    Attributes:
        frames: names of the estimated sampled frames, (N,) with the arrays below.
        t_err_m, r_err_deg, vcre_px, confidence: (N,) float64 arrays.
        failures: sampled ground-truth frames without a valid estimate.
    """

    name: str
    frames: list[str] = field(default_factory=list)
    t_err_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    r_err_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vcre_px: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failures: list[str] = field(default_factory=list)
