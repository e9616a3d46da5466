"""The one source of truth for topic names, default QoS and the node set.

The nodes, the launch files (``launch/*.launch.py``) and the pip-only launcher (``intradp_ros.launcher``) all
read this module; it imports nothing from ROS so that all three can.
"""
from __future__ import annotations

import dataclasses
import re

__all__ = ["Topic", "QosDefaults", "NodeSpec", "TOPICS", "QOS", "NODES", "PACKAGE", "EDGE_FACING", "nodes_for",
           "resolve", "parse_edge_namespaces", "DISCOVER_EDGES"]

PACKAGE = "intradp_ros"


@dataclasses.dataclass(frozen=True)
class QosDefaults:
    """Default QoS of a class of topics; every policy is overridable per topic and entity by rclpy's
    ``qos_overrides.<topic>.<publisher|subscription>.<policy>`` parameters (see ``config/qos.yaml``)."""
    reliability: str      # "reliable" | "best_effort"
    depth: int            # history depth (keep_last)
    durability: str       # "volatile" | "transient_local"
    lease_s: float = 0.0  # DDS liveliness lease (automatic), seconds: a writer silent this long is not alive to its
                          # readers, judged by the middleware's own threads; 0 = infinite (no liveliness)


QOS = {
    # camera frames: newest wins, a late frame is worthless (sensor-data profile)
    "sensor_data": QosDefaults("best_effort", 1, "volatile"),
    # tensor tiles: every tile of an accepted frame must arrive; deep enough for all tiles of a few frames
    "tiles": QosDefaults("reliable", 100, "volatile"),
    # results users act on
    "results": QosDefaults("reliable", 10, "volatile"),
    # state a late joiner needs (the edge's profile, the plan in force)
    "latched": QosDefaults("reliable", 1, "transient_local"),
    # the edge's heartbeat: newest wins; the middleware tells the robot within the lease that the edge's process
    # or the link is gone, even while the robot's Python threads are busy (its own timeout needs the executor)
    "heartbeat": QosDefaults("best_effort", 1, "volatile", 0.5),
}


@dataclasses.dataclass(frozen=True)
class Topic:
    name: str       # relative: resolved in the nodes' namespace (default "/": /intradp/detections)
    type: str       # ROS interface type, for docs and `ros2 topic` users
    qos: str        # key into QOS


# Names are relative so that `namespace:=robot1` gives /robot1/intradp/detections etc. and several robots can
# share a ROS domain; /diagnostics is global by ROS convention.
TOPICS = {
    "camera": Topic("camera/image_raw", "sensor_msgs/msg/Image", "sensor_data"),
    "to_edge": Topic("intradp/tiles/to_edge", "intradp_ros/msg/TensorTile", "tiles"),
    "outputs": Topic("intradp/tiles/outputs", "intradp_ros/msg/TensorTile", "tiles"),
    # aggregator_node's detections_type: vision_msgs' type where vision_msgs is installed (auto), else ours
    "detections": Topic("intradp/detections", "vision_msgs/msg/Detection2DArray (or intradp_ros/msg/DetectionArray)",
                        "results"),
    "classifications": Topic("intradp/classifications", "intradp_ros/msg/Classification", "results"),
    # dense models: a class id per camera pixel (mono8)
    "segmentation": Topic("intradp/segmentation", "sensor_msgs/msg/Image", "results"),
    "annotated": Topic("intradp/annotated_image", "sensor_msgs/msg/Image", "sensor_data"),
    "timing": Topic("intradp/frame_timing", "intradp_ros/msg/FrameTiming", "results"),
    "edge_profile": Topic("intradp/edge_profile", "intradp_ros/msg/EdgeProfile", "latched"),
    "plan": Topic("intradp/plan", "intradp_ros/msg/PlanStatus", "latched"),
    "link": Topic("intradp/link", "intradp_ros/msg/LinkEstimate", "results"),
    # the edge's heartbeat: newest wins, a late one is worthless
    "edge_status": Topic("intradp/edge_status", "intradp_ros/msg/EdgeStatus", "heartbeat"),
    # the robots an edge serves: each robot_node's PlanStatus again, in the edge's namespace (its session admits
    # its tiles there)
    "roster": Topic("intradp/robots", "intradp_ros/msg/PlanStatus", "latched"),
    "diagnostics": Topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "results"),
}


# Topics between a robot and its edge: robot_node names them in each edge's namespace (its parameter and launch
# argument edge_namespace, default the root), so robots in any namespace share one edge_node, and a robot can use
# any of several edges.
# The outputs topic is the robot's own: the edge publishes each robot's outputs in that robot's namespace
# (PlanStatus.robot_namespace), so that an aggregator receives its robot's outputs only.
EDGE_FACING = ("to_edge", "edge_profile", "link", "edge_status", "roster")


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    name: str                 # node name (also the key in the YAML parameter files)
    executable: str           # console script: `ros2 run intradp_ros <executable>`
    host: str                 # "robot" | "edge": which launch file starts it
    params_file: str          # file in config/ with its parameters
    optional: str = ""        # launch argument that must be true to start it ("" = always)
    description: str = ""


NODES = (
    NodeSpec("camera_player", "camera_player", "robot", "robot.yaml", optional="start_camera",
             description="publishes frames from a video, an image folder or a pattern"),
    NodeSpec("robot_node", "robot_node", "robot", "robot.yaml",
             description="converts frames, plans, computes the robot's tiles, sends the edge's share"),
    NodeSpec("aggregator_node", "aggregator_node", "robot", "robot.yaml",
             description="reassembles outputs, publishes detections / classifications and timing"),
    NodeSpec("edge_node", "edge_node", "edge", "edge.yaml",
             description="computes the edge's tiles as they arrive and the rest of the model"),
)

QOS_FILE = "qos.yaml"          # shared QoS parameters, applied to every node after its own file


def nodes_for(host: str) -> tuple[NodeSpec, ...]:
    """Nodes started on ``host`` ("robot", "edge" or "all")."""
    return tuple(n for n in NODES if host == "all" or n.host == host)


def resolve(name: str, namespace: str) -> str:
    """``name`` as a node in ``namespace`` resolves it (absolute names stay)."""
    if name.startswith("/"):
        return name
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{name}"


DISCOVER_EDGES = "*"          # edge_namespace: every edge on the domain (found by its heartbeat topic)
_NAMESPACE = re.compile(r"^/([A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*)?$")


def parse_edge_namespaces(text: str, own: str = "/") -> list[str] | None:
    """robot_node's ``edge_namespace`` as absolute namespaces in order of preference; None = every edge ("*");
    empty = ``own`` (the robot's namespace: one launch of robot and edge together).

    Raises:
        ValueError: an empty list, ``*`` beside namespaces, or a name that is no ROS namespace.
    """
    if not str(text).strip():
        text = own
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if names == [DISCOVER_EDGES]:
        return None
    if not names or DISCOVER_EDGES in names:
        raise ValueError(f"edge_namespace {text!r}: give one namespace, a comma-separated list, or "
                         f"{DISCOVER_EDGES!r} (every edge on the domain)")
    out = []
    for n in names:
        ns = "/" + n.strip("/")
        if not _NAMESPACE.match(ns):
            raise ValueError(f"edge_namespace {text!r}: {n!r} is no ROS namespace (letters, digits and _ per "
                             "token, a token starts with no digit)")
        if ns not in out:
            out.append(ns)
    return out
