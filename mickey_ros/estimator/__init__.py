"""The one API every front-end uses: ``RelativePoseEstimator`` and its result, ``PoseEstimate``.

``relative_pose`` (the estimator: model, device, cached keyframe, solver), ``result`` (the result
type and the estimator protocol, free of model imports), ``bench`` (per-stage latency).
``from mickey_ros.estimator import RelativePoseEstimator`` stays the public import. The names are
resolved on first use: the session logic and the launch file import ``result`` without paying
for torch and the model code.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEMO_CHECKPOINT": "relative_pose",
    "EstimatorConfig": "relative_pose",
    "RelativePoseEstimator": "relative_pose",
    "PoseEstimate": "result",
    "PoseEstimator": "result",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mickey_ros.estimator' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mickey_ros.estimator.{_EXPORTS[name]}"), name)
