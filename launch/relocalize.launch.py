"""Start the mickey_ros relocalisation node on one camera.

Example::

    ros2 launch mickey_ros relocalize.launch.py \
        checkpoint:=/models/mickey.ckpt dinov2_weights:=/models/dinov2_vitl14_pretrain.pth \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info \
        tf_mode:=map_to_odom namespace:=front

Arguments and their mapping to parameters and remappings live in
``mickey_ros.relocalization.params``
(``LAUNCH_ARGUMENTS``), where unit tests check them without ROS; this file stays thin. Empty
arguments keep the params file's values.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from mickey_ros.relocalization.params import (
    LAUNCH_ARGUMENTS,
    launch_parameter_overrides,
    launch_remappings,
)


def _relocalize_node(context, *args, **kwargs):
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in LAUNCH_ARGUMENTS}
    params_file = values["params_file"] or os.path.join(
        get_package_share_directory("mickey_ros"), "config", "relocalize.yaml")
    return [LifecycleNode(
        package="mickey_ros",
        executable="relocalize_node",
        name=values["node_name"],
        namespace=values["namespace"],
        parameters=[params_file, launch_parameter_overrides(values)],
        remappings=launch_remappings(values),
        arguments=["--ros-args", "--log-level", values["log_level"]],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    """The launch arguments of ``relocalization.params.LAUNCH_ARGUMENTS`` + the lifecycle node."""
    arguments = [
        DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description,
                              choices=list(arg.choices) if arg.choices else None)
        for arg in LAUNCH_ARGUMENTS
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_relocalize_node)])
