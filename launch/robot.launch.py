"""Robot side of intradp_ros: robot_node, aggregator_node and, with start_camera:=true, camera_player.

    ros2 launch intradp_ros robot.launch.py [start_camera:=true] [namespace:=robot1] [device:=cuda] ...
    ros2 launch intradp_ros robot.launch.py --show-args

start_camera defaults to false: on a real robot a camera driver publishes camera_topic (remapped onto the
nodes' /camera/image_raw). Without `ros2 launch` (ROS 2 from PyPI) the same arguments work with
`python -m intradp_ros.launcher robot name:=value ...`; both read the argument table
intradp_ros.launcher.LAUNCH_ARGS and the node set intradp_ros.topology.nodes_for('robot').
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from intradp_ros.launcher import launch_arguments, node_overrides, params_argument
from intradp_ros.topology import PACKAGE, TOPICS, nodes_for

HOST = 'robot'


def launch_nodes(context):
    """The DDS profile and the nodes; model/device are passed only when set (else the params file's)."""
    actions = []
    dds_profile = LaunchConfiguration('dds_profile').perform(context)
    if dds_profile:
        actions.append(SetEnvironmentVariable('FASTRTPS_DEFAULT_PROFILES_FILE', dds_profile))
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in launch_arguments(HOST)}
    for spec in nodes_for(HOST):
        actions.append(Node(
            package=PACKAGE,
            executable=spec.executable,
            name=spec.name,
            namespace=LaunchConfiguration('namespace'),
            parameters=[
                LaunchConfiguration(params_argument(HOST, spec)),
                LaunchConfiguration('qos_file'),
                node_overrides(spec.name, values),
            ],
            remappings=[(TOPICS['camera'].name, LaunchConfiguration('camera_topic'))],
            condition=IfCondition(LaunchConfiguration(spec.optional)) if spec.optional else None,
            output='screen',
        ))
    return actions


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    declared = [
        DeclareLaunchArgument(
            arg.name,
            default_value=(PathJoinSubstitution([share, *arg.default.split('/')])
                           if arg.share_path and arg.default else arg.default),
            description=arg.description)
        for arg in launch_arguments(HOST)
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_nodes)])
