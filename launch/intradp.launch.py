"""intradp_ros on one machine: the robot's nodes (camera_player, robot_node, aggregator_node) and edge_node.

    ros2 launch intradp_ros intradp.launch.py [start_camera:=false] [device:=cpu] [model:=resnet18] ...
    ros2 launch intradp_ros intradp.launch.py --show-args

start_camera defaults to true here (camera_player plays the sample images). Each side keeps its own parameter
file (robot_params_file, edge_params_file); every other argument applies to both. Without `ros2 launch` the
same arguments work with `python -m intradp_ros.launcher all name:=value ...`; both read the argument table
intradp_ros.launcher.LAUNCH_ARGS and the node set intradp_ros.topology.nodes_for('all').
"""
from intradp_ros.launch_description import generate_for

HOST = 'all'


def generate_launch_description():
    return generate_for(HOST)
