"""Fixtures of the keyframe library tests: a small random-weight estimator, its feature source.

This directory is put on ``sys.path`` (as test/unit is by its conftest) so the tests import their
helpers as ``import kf_helpers``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from kf_helpers import FAST_SOLVER  # noqa: E402
from small_models import small_demo_cnn  # noqa: E402

from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator  # noqa: E402
from mickey_ros.keyframes.library import feature_source  # noqa: E402


@pytest.fixture(scope="module")
def estimator() -> RelativePoseEstimator:
    return RelativePoseEstimator.from_model_config(
        small_demo_cnn(), EstimatorConfig(solver=FAST_SOLVER))


@pytest.fixture(scope="module")
def source(estimator):
    return feature_source(estimator)
