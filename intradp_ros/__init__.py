"""intradp_ros: Intra-DP collaborative DNN inference between a robot and an edge GPU server, over ROS 2.

The engine (``intradp_ros.engine``), the model zoo (``intradp_ros.models``) and the vision helpers
(``intradp_ros.vision``) are plain PyTorch/NumPy and import without rclpy; only ``intradp_ros.nodes`` needs ROS.
"""
import pkgutil

# The generated message module (intradp_ros.msg) lives in the colcon install tree, the Python sources may be
# imported from the checkout: let one package name span both.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
