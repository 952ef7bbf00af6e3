"""The node's ROS-free logic, shared by the ROS node (``ros/``) and the replay (``replay/``).

``session`` (keyframe, gating, TF edges), ``messages`` (ROS message <-> numpy, by field name),
``params`` (the node's parameter schema), ``health`` (diagnostics content). Nothing here imports
rclpy or torch at import time, so the launch file can read ``params`` cheaply.
"""
