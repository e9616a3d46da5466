"""Edge side of intradp_ros: edge_node, which serves the robots' offloaded tiles.

    ros2 launch intradp_ros edge.launch.py [device:=cuda:1] [namespace:=robot1] ...
    ros2 launch intradp_ros edge.launch.py --show-args

Without `ros2 launch` (ROS 2 from PyPI) the same arguments work with
`python -m intradp_ros.launcher edge name:=value ...`; both read the argument table
intradp_ros.launcher.LAUNCH_ARGS and the node set intradp_ros.topology.nodes_for('edge').
"""
from intradp_ros.launch_description import generate_for

HOST = 'edge'


def generate_launch_description():
    return generate_for(HOST)
