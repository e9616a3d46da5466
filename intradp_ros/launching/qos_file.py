"""The QoS file a launch gives every node: ``qos_file`` (standard ``qos_overrides.`` parameters), re-keyed for the
launch's namespace, its remappings (the camera topic) and, on a robot, the namespaces of the edges it may use
(robot_node names its edge-facing topics in each: ``edge_namespace``); and those remappings.

rclpy names an override by the entity's fully resolved topic (``qos_overrides./robot1/camera/image_raw.
subscription.depth``), so config/qos.yaml, written for the root namespace, would not apply to ``namespace:=robot1``.
The launchers pass a copy whose topic keys are resolved as the nodes will resolve them; a key that is not one of
our topics, or a topic outside the namespace (``/diagnostics``), stays as written. With ``edge_namespace:=*`` the
edges are found at run time: the edge-facing overrides are keyed for an edge in the root namespace.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from intradp_ros.launching.arguments import LaunchError
from intradp_ros.launching.scratch import write_derived
from intradp_ros.topology import EDGE_FACING, TOPICS, parse_edge_namespaces, resolve

__all__ = ["resolve", "namespaced", "qos_file_for", "remappings", "edge_namespaces"]


def remappings(host: str, values: dict[str, str]) -> dict[str, str]:
    """Topic remappings of ``host``'s nodes (relative topic -> target): the camera topic."""
    return {TOPICS["camera"].name: values["camera_topic"]} if "camera_topic" in values else {}


def edge_namespaces(host: str, values: dict[str, str]) -> list[str]:
    """The edge namespaces a robot's QoS overrides name its edge-facing topics in ([] on an edge, or for one
    launch of both hosts: there they are in the launch's namespace).

    Raises:
        LaunchError: an ``edge_namespace`` robot_node would refuse.
    """
    if host != "robot":
        return []
    try:
        return parse_edge_namespaces(values.get("edge_namespace", "/")) or ["/"]
    except ValueError as e:
        raise LaunchError(str(e)) from None


def namespaced(params: dict, namespace: str, remaps: dict[str, str], edges: list[str] = ()) -> dict:
    """``params`` (a parsed parameter file) with every node block's ``qos_overrides`` topics re-keyed as the nodes
    resolve them in ``namespace`` after ``remaps``; the edge-facing topics once per namespace of ``edges``."""
    keys = {resolve(t.name, ""): [resolve(remaps.get(t.name, t.name), namespace)] for t in TOPICS.values()}
    for key in EDGE_FACING if edges else ():
        keys[resolve(TOPICS[key].name, "")] = [resolve(TOPICS[key].name, ns) for ns in edges]
    out = {}
    for node, block in params.items():
        block = dict(block or {})
        ros = dict(block.get("ros__parameters") or {})
        if isinstance(ros.get("qos_overrides"), dict):
            ros["qos_overrides"] = {k: v for topic, v in ros["qos_overrides"].items()
                                    for k in keys.get(topic, [topic])}
        block["ros__parameters"] = ros
        out[node] = block
    return out


def qos_file_for(path: str, namespace: str, remaps: dict[str, str], edges: list[str] = ()) -> str:
    """The file to pass as the nodes' QoS parameters: ``path`` itself when nothing is re-keyed, else a copy."""
    params = yaml.safe_load(Path(path).read_text()) or {}
    keyed = namespaced(params, namespace, remaps, edges)
    if keyed == params:
        return path
    return write_derived(yaml.safe_dump(keyed, sort_keys=False), "qos", ".yaml")
