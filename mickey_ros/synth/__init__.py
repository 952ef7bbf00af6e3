"""Synthetic scenes with exact metric ground truth: image pairs, Map-free datasets, robot rosbags.

Rendering uses moderngl on a headless EGL context (Mesa llvmpipe on CPU, NVIDIA EGL on GPU);
see docs/synthetic.md for formats, conventions and throughput.
"""

from mickey_ros.synth.cameras import PairSamplingConfig, hard_pair_config
from mickey_ros.synth.mapfree import write_mapfree_dataset
from mickey_ros.synth.pairs import PairRenderer, SyntheticPair, list_pairs, read_pair, write_pairs
from mickey_ros.synth.render import EGLUnavailableError
from mickey_ros.synth.rosbag import RobotBagTopics, plan_robot_drive, write_robot_bag

__all__ = [
    "EGLUnavailableError",
    "PairRenderer",
    "PairSamplingConfig",
    "RobotBagTopics",
    "SyntheticPair",
    "hard_pair_config",
    "list_pairs",
    "plan_robot_drive",
    "read_pair",
    "write_mapfree_dataset",
    "write_pairs",
    "write_robot_bag",
]
