"""The QoS file a launch gives every node: ``qos_file`` (standard ``qos_overrides.`` parameters), re-keyed for the
launch's namespace and remappings (the camera topic, the edge-facing topics of a robot); and those remappings.

rclpy names an override by the entity's fully resolved topic (``qos_overrides./robot1/intradp/tiles/to_edge.
publisher.depth``), so config/qos.yaml, written for the root namespace, would not apply to ``namespace:=robot1``.
The launchers pass a copy whose topic keys are resolved as the nodes will resolve them; a key that is not one of
our topics, or a topic outside the namespace (``/diagnostics``), stays as written.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from intradp_ros.launching.scratch import write_derived
from intradp_ros.topology import EDGE_FACING, TOPICS

__all__ = ["resolve", "namespaced", "qos_file_for", "remappings"]


def resolve(name: str, namespace: str) -> str:
    """``name`` as a node in ``namespace`` resolves it (absolute names stay)."""
    if name.startswith("/"):
        return name
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{name}"


def remappings(host: str, values: dict[str, str]) -> dict[str, str]:
    """Topic remappings of ``host``'s nodes (relative topic -> target): the camera topic, and on a robot the
    edge-facing topics into ``edge_namespace`` (absolute), so robots in any namespace find one shared edge."""
    out = {}
    if "camera_topic" in values:
        out[TOPICS["camera"].name] = values["camera_topic"]
    if host == "robot":
        edge_ns = "/" + values.get("edge_namespace", "/").strip().strip("/")
        for key in EDGE_FACING:
            target = resolve(TOPICS[key].name, edge_ns)
            if target != resolve(TOPICS[key].name, values.get("namespace", "")):
                out[TOPICS[key].name] = target
    return out


def namespaced(params: dict, namespace: str, remaps: dict[str, str]) -> dict:
    """``params`` (a parsed parameter file) with every node block's ``qos_overrides`` topics re-keyed as the nodes
    resolve them in ``namespace`` after ``remaps``."""
    keys = {resolve(t.name, ""): resolve(remaps.get(t.name, t.name), namespace) for t in TOPICS.values()}
    out = {}
    for node, block in params.items():
        block = dict(block or {})
        ros = dict(block.get("ros__parameters") or {})
        if isinstance(ros.get("qos_overrides"), dict):
            ros["qos_overrides"] = {keys.get(topic, topic): v for topic, v in ros["qos_overrides"].items()}
        block["ros__parameters"] = ros
        out[node] = block
    return out


def qos_file_for(path: str, namespace: str, remaps: dict[str, str]) -> str:
    """The file to pass as the nodes' QoS parameters: ``path`` itself when nothing is re-keyed, else a copy."""
    params = yaml.safe_load(Path(path).read_text()) or {}
    keyed = namespaced(params, namespace, remaps)
    if keyed == params:
        return path
    return write_derived(yaml.safe_dump(keyed, sort_keys=False), "qos", ".yaml")
