"""Offline rosbag replay through the node's own session and message code.

``run`` (the replay loop and ``main``), ``replay_io`` (its inputs and output files),
``trajectory_metrics``; the tf2-like buffer for ground truth is ``mickey_ros.bags.tf_buffer``.
"""

from mickey_ros.replay.run import ReplayConfig, ReplayResult, main, replay

__all__ = ["ReplayConfig", "ReplayResult", "main", "replay"]
