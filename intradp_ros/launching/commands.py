"""The command lines of the nodes: what ``launch_ros`` would pass to each executable.

Each node runs as the installed executable ``<prefix>/lib/intradp_ros/<exe>`` (or ``python -c 'from
intradp_ros.nodes.<exe> import main ...'`` without a colcon install) with ``--ros-args``: node name, namespace,
the params file, the QoS file (re-keyed for the namespace: launching.qos_file), ``-p`` overrides and the topic
remappings (the camera's).
"""
from __future__ import annotations

import os
import pathlib
import sys

from intradp_ros.launching.arguments import node_overrides, params_argument, truthy
from intradp_ros.launching.qos_file import edge_namespaces, qos_file_for, remappings
from intradp_ros.topology import PACKAGE, NodeSpec, nodes_for

__all__ = ["executable", "node_commands", "enclave_arguments"]


def executable(spec: NodeSpec) -> list[str]:
    """The argv prefix that runs node ``spec``: its installed executable, else its module's ``main``."""
    try:
        from ament_index_python.packages import get_package_prefix

        exe = pathlib.Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / spec.executable
        if os.access(exe, os.X_OK):
            return [str(exe)]
    except Exception:  # noqa: BLE001 - not in the ament index: run the module with this interpreter
        pass
    module = f"{PACKAGE}.nodes.{spec.executable}"
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def enclave_arguments(spec: NodeSpec, values: dict[str, str]) -> list[str]:
    """``--enclave <enclaves>/<node>`` (SROS2: one enclave per node) when the ``enclaves`` argument is set."""
    root = values.get("enclaves", "").strip().rstrip("/")
    return ["--enclave", f"{root if root.startswith('/') else '/' + root}/{spec.name}"] if root else []


def node_commands(host: str, values: dict[str, str]) -> list[tuple[NodeSpec, list[str]]]:
    """The nodes to start for ``host`` and their command lines (``values`` from ``resolve_arguments``)."""
    namespace = values["namespace"].strip()
    if namespace and not namespace.startswith("/"):
        namespace = "/" + namespace
    remaps = remappings(host, values)
    qos = qos_file_for(values["qos_file"], namespace, remaps, edge_namespaces(host, values))
    commands = []
    for spec in nodes_for(host):
        if spec.optional and not truthy(spec.optional, values[spec.optional]):
            continue
        argv = executable(spec) + ["--ros-args", "-r", f"__node:={spec.name}"]
        if namespace and namespace != "/":
            argv += ["-r", f"__ns:={namespace}"]
        argv += ["--params-file", values[params_argument(host, spec)], "--params-file", qos]
        for name, value in node_overrides(spec.name, values).items():
            argv += ["-p", f"{name}:={value}"]
        for name, target in remaps.items():
            argv += ["-r", f"{name}:={target}"]
        argv += enclave_arguments(spec, values)
        commands.append((spec, argv))
    return commands
