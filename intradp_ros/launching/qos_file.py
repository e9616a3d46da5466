"""The QoS file a launch gives every node: ``qos_file`` (standard ``qos_overrides.`` parameters), re-keyed for the
launch's namespace and camera remapping.

rclpy names an override by the entity's fully resolved topic (``qos_overrides./robot1/intradp/tiles/to_edge.
publisher.depth``), so config/qos.yaml, written for the root namespace, would not apply to ``namespace:=robot1``.
The launchers pass a copy whose topic keys are resolved as the nodes will resolve them; a key that is not one of
our topics, or a topic outside the namespace (``/diagnostics``), stays as written.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from intradp_ros.launching.scratch import write_derived
from intradp_ros.topology import TOPICS

__all__ = ["resolve", "namespaced", "qos_file_for"]


def resolve(name: str, namespace: str) -> str:
    """``name`` as a node in ``namespace`` resolves it (absolute names stay)."""
    if name.startswith("/"):
        return name
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{name}"


def namespaced(params: dict, namespace: str, camera_topic: str) -> dict:
    """``params`` (a parsed parameter file) with every node block's ``qos_overrides`` topics re-keyed."""
    keys = {resolve(t.name, ""): resolve(camera_topic if k == "camera" else t.name, namespace)
            for k, t in TOPICS.items()}
    out = {}
    for node, block in params.items():
        block = dict(block or {})
        ros = dict(block.get("ros__parameters") or {})
        if isinstance(ros.get("qos_overrides"), dict):
            ros["qos_overrides"] = {keys.get(topic, topic): v for topic, v in ros["qos_overrides"].items()}
        block["ros__parameters"] = ros
        out[node] = block
    return out


def qos_file_for(path: str, namespace: str, camera_topic: str) -> str:
    """The file to pass as the nodes' QoS parameters: ``path`` itself when nothing is re-keyed, else a copy."""
    params = yaml.safe_load(Path(path).read_text()) or {}
    keyed = namespaced(params, namespace, camera_topic)
    if keyed == params:
        return path
    return write_derived(yaml.safe_dump(keyed, sort_keys=False), "qos", ".yaml")
