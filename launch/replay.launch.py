"""Replay a rosbag2 with ``--clock`` next to the relocalisation node (sim time).

Example::

    ros2 launch mickey_ros replay.launch.py bag:=/data/run1 checkpoint:=/models/mickey.ckpt \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

Every argument of relocalize.launch.py is accepted; ``use_sim_time`` is forced to true. A looping
bag (``loop:=true``) makes the clock jump back: the node then resets its keyframe, map->odom and TF
buffer. Record keyframe topics and ``/tf_static`` with TRANSIENT_LOCAL offered QoS (rosbags and
``ros2 bag record`` do), or replayed statics are not latched.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    TimerAction,
)
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def _bag_player(context, *args, **kwargs):
    cmd = ["ros2", "bag", "play", LaunchConfiguration("bag").perform(context), "--clock",
           "--rate", LaunchConfiguration("rate").perform(context)]
    if LaunchConfiguration("loop").perform(context) == "true":
        cmd.append("--loop")
    # the node loads and warms up its model first; frames played before that would be lost
    delay_s = float(LaunchConfiguration("start_delay_s").perform(context))
    return [TimerAction(period=delay_s, actions=[ExecuteProcess(cmd=cmd, output="screen")])]


def generate_launch_description():
    """Bag player (with /clock) + relocalize.launch.py with use_sim_time."""
    relocalize = os.path.join(get_package_share_directory("mickey_ros"), "launch",
                              "relocalize.launch.py")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 directory or .mcap file"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback rate"),
        DeclareLaunchArgument("loop", default_value="false", choices=["true", "false"],
                              description="Loop the bag (the node resets on the clock jump)"),
        DeclareLaunchArgument("start_delay_s", default_value="5.0",
                              description="Seconds to wait for the model before playing"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(relocalize),
                                 launch_arguments={"use_sim_time": "true"}.items()),
        OpaqueFunction(function=_bag_player),
    ])
