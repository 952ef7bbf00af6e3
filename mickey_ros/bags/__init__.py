"""rosbag2 files without ROS (rosbags).

``writer`` (type store, QoS profiles, writing) and ``reader`` (tolerant reading that reports
damaged bags instead of aborting).
"""
