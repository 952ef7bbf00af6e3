"""Keep ``pytest --doctest-modules`` from importing the ROS modules where ROS is not installed.

They hold no doctests; the ROS node is tested by test/ros/ under launch_testing. Not installed by
CMakeLists.txt.
"""

import importlib.util

if importlib.util.find_spec("rclpy") is None:
    collect_ignore_glob = ["*.py"]
