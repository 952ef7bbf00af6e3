#!/usr/bin/env python3
"""Executable ``ros2 run mickey_ros train``: the training entry point (same as ``mickey-train``).

Training needs no ROS; this wrapper only makes it reachable from a colcon install.
"""

import sys

from mickey_ros.train.main import cli

if __name__ == "__main__":
    sys.exit(cli())
