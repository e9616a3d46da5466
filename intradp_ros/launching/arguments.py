"""The launch arguments: one table (:data:`LAUNCH_ARGS`) read by the launch files and by the launcher.

:func:`resolve_arguments` turns ``name:=value`` pairs into the values of every argument a host declares: the
defaults filled in, share paths made absolute, booleans and files checked.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib

from intradp_ros.topology import NODES, PACKAGE, QOS_FILE, TOPICS, NodeSpec

__all__ = ["LaunchArg", "LAUNCH_ARGS", "HOSTS", "LaunchError", "launch_arguments", "params_argument",
           "node_overrides", "node_parameters", "native", "typed", "truthy", "share_dir", "resolve_arguments"]

HOSTS = ("robot", "edge", "all")
HOST_PARAMS = {spec.host: spec.params_file for spec in NODES}       # {"robot": "robot.yaml", "edge": ...}
MODEL_NODES = ("robot_node", "edge_node", "aggregator_node")
DEVICE_NODES = ("robot_node", "edge_node")


@dataclasses.dataclass(frozen=True)
class LaunchArg:
    """One launch argument of the launch files and of this launcher."""
    name: str
    default: str
    description: str
    hosts: tuple[str, ...] = HOSTS        # launch files ("robot", "edge", "all") that declare it
    share_path: bool = False              # default is a path relative to share/intradp_ros ("" stays "")
    parameter_of: tuple[str, ...] = ()    # nodes that get it as the parameter `name` when non-empty
    kind: type = str                      # the parameter's type (bool, float): the value is checked and written so
                                          # that rcl's YAML reading gives that type ("2" would be an integer)


LAUNCH_ARGS = (
    LaunchArg("namespace", "", "namespace of every node (e.g. 'robot1'); empty = the root namespace"),
    LaunchArg("params_file", f"config/{HOST_PARAMS['robot']}",
              "parameters of camera_player, robot_node and aggregator_node", hosts=("robot",), share_path=True),
    LaunchArg("params_file", f"config/{HOST_PARAMS['edge']}", "parameters of edge_node", hosts=("edge",),
              share_path=True),
    *(LaunchArg(f"{host}_params_file", f"config/{file}", f"parameters of the {host}'s nodes", hosts=("all",),
                share_path=True) for host, file in HOST_PARAMS.items()),
    LaunchArg("qos_file", f"config/{QOS_FILE}", "QoS of every topic (qos_overrides. parameters, written for the root "
              "namespace), given to every node",
              share_path=True),
    LaunchArg("model", "", "model of robot_node, edge_node and aggregator_node; empty = as in the params files",
              parameter_of=MODEL_NODES),
    LaunchArg("device", "", "torch device of robot_node and edge_node (cpu | cuda | cuda:N | auto); "
              "empty = as in the params files", parameter_of=DEVICE_NODES),
    LaunchArg("autostart", "true", "robot_node and edge_node configure and activate themselves (false: they wait "
              "for `ros2 lifecycle set <node> configure`, then activate)", parameter_of=DEVICE_NODES, kind=bool),
    LaunchArg("camera_topic", TOPICS["camera"].name, f"camera image topic (remaps {TOPICS['camera'].name})",
              hosts=("robot", "all")),
    LaunchArg("edge_namespace", "/", "the edge_node(s) this robot may use: a namespace (default the root: robots in "
              "any namespace share one edge), a comma-separated list in order of preference, or * for every edge on "
              "the domain; the robot fails over between them", hosts=("robot",), parameter_of=("robot_node",)),
    LaunchArg("start_camera", "false", "start camera_player (false: a real camera driver publishes "
              "camera_topic)", hosts=("robot",)),
    LaunchArg("start_camera", "true", "start camera_player (the sample images)", hosts=("all",)),
    LaunchArg("loop", "", "camera_player: cycle through its source forever (true | false); empty = as in the "
              "params file", hosts=("robot", "all"), parameter_of=("camera_player",), kind=bool),
    LaunchArg("rate_hz", "", "camera_player: frames per second; empty = as in the params file",
              hosts=("robot", "all"), parameter_of=("camera_player",), kind=float),
    LaunchArg("dds_profile", "config/fastdds.xml", "Fast DDS XML profile, exported as "
              "FASTRTPS_DEFAULT_PROFILES_FILE; empty = leave the environment's", share_path=True),
    LaunchArg("enclaves", "", "SROS2: every node runs with --enclave <enclaves>/<node name> (e.g. /intradp: "
              "/intradp/robot_node); empty = the keystore's root enclave, or no security"),
    LaunchArg("dds_interfaces", "", "comma list of this host's addresses DDS may use besides loopback (Fast DDS "
              "interface whitelist); empty = all"),
    LaunchArg("dds_peers", "", "comma list of the other hosts' addresses (the edge's, on the robot): discovery "
              "with them and this host only (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, ROS_STATIC_PEERS; Jazzy+); "
              "empty = the environment's"),
    LaunchArg("discovery_server", "", "host:port of a Fast DDS Discovery Server (on the edge: `fastdds discovery "
              "-i 0 -l <its address> -p 11811`): every node discovers through it, no multicast (ROS_DISCOVERY_SERVER); "
              "empty = the environment's"),
)


class LaunchError(RuntimeError):
    """Bad launch arguments, or a node that cannot be started."""


def launch_arguments(host: str) -> tuple[LaunchArg, ...]:
    """The arguments the launch file of ``host`` declares, in order."""
    if host not in HOSTS:
        raise LaunchError(f"unknown host {host!r}: one of {', '.join(HOSTS)}")
    return tuple(a for a in LAUNCH_ARGS if host in a.hosts)


def params_argument(host: str, spec: NodeSpec) -> str:
    """Name of the launch argument holding the params file of node ``spec`` when launching ``host``."""
    return "params_file" if host != "all" else f"{spec.host}_params_file"


def node_overrides(node: str, values: dict[str, str]) -> dict[str, str]:
    """Parameters that the launch argument values set on ``node`` (only the non-empty ones), each written as its
    type reads.

    Raises:
        LaunchError: a value that is not of its argument's type.
    """
    return {a.name: typed(a, values[a.name]) for a in LAUNCH_ARGS
            if node in a.parameter_of and values.get(a.name, "") != ""}


def node_parameters(node: str, values: dict[str, str]) -> dict[str, object]:
    """:func:`node_overrides` as native values, for launch_ros (it writes a Python str as a YAML string, so
    "true" would reach a boolean parameter as the string 'true')."""
    return {a.name: native(a, values[a.name]) for a in LAUNCH_ARGS
            if node in a.parameter_of and values.get(a.name, "") != ""}


def native(arg: LaunchArg, value: str):
    """``value`` as its argument's type; LaunchError when it is not one."""
    if arg.kind is bool:
        return truthy(arg.name, value)
    if arg.kind is float:
        try:
            return float(value)
        except ValueError:
            raise LaunchError(f"{arg.name}:={value!r} is not a number") from None
    return value


def typed(arg: LaunchArg, value: str) -> str:
    """``value`` written so that rcl's YAML reading of ``-p name:=value`` gives its argument's type (a string that
    YAML would read as something else, such as ``*`` or ``yes``, quoted)."""
    v = native(arg, value)
    if arg.kind is bool:
        return "true" if v else "false"
    if arg.kind is float:
        return repr(v)
    return v if _reads_as_itself(v) else json.dumps(v)


def _reads_as_itself(text: str) -> bool:
    import yaml
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def truthy(name: str, value: str) -> bool:
    """Like launch's IfCondition: true/false/1/0, case-insensitive."""
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise LaunchError(f"{name}:={value!r} is not a boolean (true | false | 1 | 0)")


def share_dir() -> pathlib.Path:
    """share/intradp_ros of the colcon install, else this checkout (pip install / no install)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return pathlib.Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - no colcon install (pip install / checkout): use the checkout's files
        return pathlib.Path(__file__).resolve().parents[2]


def resolve_arguments(host: str, args: dict[str, str] | None = None) -> dict[str, str]:
    """All launch arguments of ``host``: ``args`` over the defaults, share paths made absolute.

    Raises:
        LaunchError: an argument ``host`` does not declare, a bad boolean, or a file that does not exist.
    """
    declared = {a.name: a for a in launch_arguments(host)}
    unknown = sorted(set(args or {}) - set(declared))
    if unknown:
        raise LaunchError(f"unknown launch argument(s) for {host}: {', '.join(unknown)}; "
                          f"known: {', '.join(declared)}")
    share = None
    values = {}
    for name, arg in declared.items():
        value = str((args or {}).get(name, arg.default))
        if name not in (args or {}) and arg.share_path and value:
            share = share or share_dir()
            value = str(share / value)
        values[name] = value
    for name, arg in declared.items():
        if arg.share_path and values[name] and not os.path.isfile(values[name]):
            raise LaunchError(f"{name}:={values[name]} does not exist")
    if "start_camera" in values:
        truthy("start_camera", values["start_camera"])
    for arg in declared.values():
        if arg.parameter_of and values[arg.name] != "":
            typed(arg, values[arg.name])
    return values
