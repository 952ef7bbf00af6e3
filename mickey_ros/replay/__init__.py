"""Offline rosbag replay through the node's own session and message code.

``run`` (the replay loop and ``main``), ``replay_io`` (its inputs and output files),
``tf_buffer`` (a tf2-like buffer for ground truth), ``trajectory_metrics``.
"""

from mickey_ros.replay.run import ReplayConfig, ReplayResult, main, replay

__all__ = ["ReplayConfig", "ReplayResult", "main", "replay"]
