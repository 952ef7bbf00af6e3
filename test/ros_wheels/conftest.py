"""driver.py runs under the ROS venv's python (rclpy), never in this pytest process."""

collect_ignore = ["driver.py"]
