"""ROS 2 front-end, the only package importing rclpy and other ROS Python packages.

Import ``mickey_ros.ros.node`` explicitly: this module stays import-free, so ``import
mickey_ros.ros`` works without ROS.
"""
