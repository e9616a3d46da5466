"""Robot side of intradp_ros: robot_node, aggregator_node and, with start_camera:=true, camera_player.

    ros2 launch intradp_ros robot.launch.py [start_camera:=true] [namespace:=robot1] [device:=cuda] ...
    ros2 launch intradp_ros robot.launch.py --show-args

start_camera defaults to false: on a real robot a camera driver publishes camera_topic (remapped onto the
nodes' /camera/image_raw). Without `ros2 launch` (ROS 2 from PyPI) the same arguments work with
`python -m intradp_ros.launcher robot name:=value ...`; both read the argument table
intradp_ros.launcher.LAUNCH_ARGS and the node set intradp_ros.topology.nodes_for('robot').
"""
from intradp_ros.launch_description import generate_for

HOST = 'robot'


def generate_launch_description():
    return generate_for(HOST)
