"""Evaluation front-end: Map-free submissions and scoring, pair-list relative-pose metrics."""

from mickey_ros.eval.common import ModelSettings
from mickey_ros.eval.mapfree import MapfreeEvalConfig
from mickey_ros.eval.pairs import PairsEvalConfig

__all__ = ["MapfreeEvalConfig", "ModelSettings", "PairsEvalConfig"]
