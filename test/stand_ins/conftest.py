"""Stand-ins for ROS libraries without a PyPI wheel: put on a subprocess's path, never collected."""

collect_ignore_glob = ["*.py"]
