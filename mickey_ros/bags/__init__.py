"""rosbag2 files without ROS (rosbags).

``writer`` (type store, QoS profiles, writing), ``reader`` (tolerant reading that reports
damaged bags instead of aborting), ``tf_buffer`` (a ROS-free tf2-like buffer) and
``posed_images`` (camera frames with their pose in a fixed frame, keyframe selection).
"""
