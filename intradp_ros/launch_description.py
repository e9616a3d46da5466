"""The body of launch/{robot,edge,intradp}.launch.py, written once (those files only pick the host).

launch_ros idiom: every LaunchConfiguration is paired with a DeclareLaunchArgument built from the argument
table :data:`intradp_ros.launcher.LAUNCH_ARGS`, nodes come from :func:`intradp_ros.topology.nodes_for`, paths
from FindPackageShare; no side effects. Imported only by launch files (it needs launch and launch_ros).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, SetEnvironmentVariable
from launch.event_handlers import OnProcessExit
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from intradp_ros.launcher import launch_arguments, params_argument
from intradp_ros.launching.arguments import LaunchError, node_parameters
from intradp_ros.launching.commands import enclave_arguments
from intradp_ros.launching.dds_profile import discovery_environment, profile_for
from intradp_ros.launching.qos_file import edge_namespaces, qos_file_for, remappings
from intradp_ros.topology import PACKAGE, nodes_for

__all__ = ["generate_for"]


def _launch_nodes(context, host):
    """The DDS profile and the nodes; model/device are passed only when set (else the params file's)."""
    actions = []
    dds_profile = profile_for(LaunchConfiguration('dds_profile').perform(context),
                              LaunchConfiguration('dds_interfaces').perform(context))
    if dds_profile:
        actions.append(SetEnvironmentVariable('FASTRTPS_DEFAULT_PROFILES_FILE', dds_profile))
    for name, value in discovery_environment(LaunchConfiguration('dds_peers').perform(context),
                                             LaunchConfiguration('discovery_server').perform(context)).items():
        actions.append(SetEnvironmentVariable(name, value))
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in launch_arguments(host)}
    remaps = remappings(host, values)
    qos = qos_file_for(values['qos_file'], values['namespace'], remaps, edge_namespaces(host, values))
    for spec in nodes_for(host):
        actions.append(Node(
            package=PACKAGE,
            executable=spec.executable,
            name=spec.name,
            namespace=LaunchConfiguration('namespace'),
            parameters=[
                LaunchConfiguration(params_argument(host, spec)),
                qos,
                node_parameters(spec.name, values),
            ],
            remappings=list(remaps.items()),
            ros_arguments=enclave_arguments(spec, values),
            condition=IfCondition(LaunchConfiguration(spec.optional)) if spec.optional else None,
            output='screen',
        ))
    return actions


def _failed(event, context):
    """A node that exits non-zero (one that cannot start says why in one line) ends the launch with status 1:
    launch only logs "process has died" and, in Jazzy, a Shutdown action exits 0; an exception raised in an
    event handler is what makes `ros2 launch` stop the other nodes and return 1."""
    if event.returncode not in (0, None) and not context.is_shutdown:
        raise LaunchError(f"{event.action.name} exited with status {event.returncode}")


def generate_for(host: str) -> LaunchDescription:
    """The launch description of ``host`` ("robot", "edge" or "all"): its arguments, then its nodes."""
    share = FindPackageShare(PACKAGE)
    declared = [
        DeclareLaunchArgument(
            arg.name,
            default_value=(PathJoinSubstitution([share, *arg.default.split('/')])
                           if arg.share_path and arg.default else arg.default),
            description=arg.description)
        for arg in launch_arguments(host)
    ]
    return LaunchDescription(declared + [RegisterEventHandler(OnProcessExit(on_exit=_failed)),
                                         OpaqueFunction(function=_launch_nodes, args=[host])])
