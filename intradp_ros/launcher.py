"""Start the intradp_ros nodes without ``ros2 launch`` (which PyPI does not provide).

    python -m intradp_ros.launcher {robot|edge|all} [name:=value ...]
    python -m intradp_ros.launcher robot --show-args      # the arguments, their defaults and meaning
    python -m intradp_ros.launcher all start_camera:=false --dry-run   # print the commands only

It takes the same arguments, with the same defaults, as ``launch/{robot,edge,intradp}.launch.py``: both read
:data:`LAUNCH_ARGS` (the one table of launch arguments, in :mod:`intradp_ros.launching.arguments`) and the node set of
:func:`intradp_ros.topology.nodes_for`. Each node runs as its own process, the installed executable
``<prefix>/lib/intradp_ros/<exe>`` (or ``python -c 'from intradp_ros.nodes.<exe> import main ...'`` without a
colcon install) with ``--ros-args``: node name, namespace, the params file, the QoS file, ``-p`` overrides and
the camera topic remapping, exactly what ``launch_ros`` passes.

Supervision: each child's output lines are printed prefixed with ``[<node name>]``; SIGINT/SIGTERM are
forwarded to every child; a child exiting non-zero stops the others and the launcher exits with its status;
a child exiting 0 (camera_player with ``exit_when_done``) is fine, and the launcher returns 0 once all did.

The pieces live in :mod:`intradp_ros.launching` (the argument table, the command lines, the supervision of the
processes); this module re-exports them and adds :func:`start` and the command line.

Python API (used by the demo and the tests)::

    with start("all", {"start_camera": "true"}, env={"ROS_DOMAIN_ID": "42"}) as launch:
        launch.wait_for_output(r"published", node="camera_player", timeout=30)
        print(launch.output["robot_node"][-5:])
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Iterable

from intradp_ros.launching.arguments import (HOSTS, LAUNCH_ARGS, LaunchArg, LaunchError, launch_arguments,
                                             node_overrides, params_argument, resolve_arguments, share_dir)
from intradp_ros.launching.commands import node_commands
from intradp_ros.launching.dds_profile import discovery_environment, profile_for
from intradp_ros.launching.supervisor import Launch, emit

__all__ = ["LaunchArg", "LAUNCH_ARGS", "HOSTS", "LaunchError", "Launch", "launch_arguments", "params_argument",
           "node_overrides", "resolve_arguments", "node_commands", "share_dir", "start", "main"]



def start(host: str, args: dict[str, str] | None = None, env: dict[str, str] | None = None, echo: bool = False,
          log_dir: str | os.PathLike | None = None) -> Launch:
    """Start the nodes of ``host`` ("robot", "edge" or "all") with launch arguments ``args``.

    Args:
        host: which launch file to mirror.
        args: launch argument values (strings), as ``name:=value`` on the command line.
        env: variables added to this process's environment for the children (e.g. ROS_DOMAIN_ID).
        echo: print the children's output lines, prefixed, as they come.
        log_dir: also write each node's output to ``<log_dir>/<node>.log``.

    Returns:
        The running :class:`Launch` (a context manager that stops the nodes on exit). Call this from a thread
        that outlives the launch (normally the main thread): on Linux the children get SIGTERM when the thread
        that started them ends.

    Raises:
        LaunchError: bad arguments, or an executable that cannot be started.
    """
    values = resolve_arguments(host, args)
    child_env = dict(os.environ)
    child_env.update(env or {})
    if dds_profile(values):
        child_env["FASTRTPS_DEFAULT_PROFILES_FILE"] = dds_profile(values)
    child_env.update(_discovery(values))
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    return Launch(host, node_commands(host, values), child_env, echo=echo, log_dir=log_dir)


def dds_profile(values: dict[str, str]) -> str:
    """The Fast DDS profile to export (see :mod:`intradp_ros.launching.dds_profile`); "" = the environment's."""
    try:
        return profile_for(values["dds_profile"], values["dds_interfaces"])
    except (OSError, ValueError) as e:
        raise LaunchError(f"dds_interfaces: {e}") from e


def _discovery(values: dict[str, str]) -> dict[str, str]:
    """The discovery variables to export (see :func:`intradp_ros.launching.dds_profile.discovery_environment`)."""
    try:
        return discovery_environment(values["dds_peers"], values["discovery_server"])
    except ValueError as e:
        raise LaunchError(str(e)) from e


def _usage(host: str | None = None) -> str:
    text = [__doc__.split("\n\n")[1].rstrip(), ""]
    for h in [host] if host else HOSTS:
        text.append(f"arguments of {h} (launch/{'intradp' if h == 'all' else h}.launch.py):")
        for arg in launch_arguments(h):
            default = f"<share>/{arg.default}" if arg.share_path and arg.default else repr(arg.default)
            text.append(f"  {arg.name}:=  {arg.description} (default {default})")
    return "\n".join(text)


def _parse(argv: Iterable[str]) -> tuple[str, dict[str, str], set[str]]:
    argv = list(argv)
    flags = {a for a in argv if a.startswith("-")}
    rest = [a for a in argv if not a.startswith("-")]
    if not rest or rest[0] not in HOSTS:
        raise LaunchError(f"first argument: one of {', '.join(HOSTS)}")
    args = {}
    for item in rest[1:]:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchError(f"{item!r}: launch arguments are written name:=value")
        args[name] = value
    unknown_flags = flags - {"-h", "--help", "--show-args", "--dry-run"}
    if unknown_flags:
        raise LaunchError(f"unknown option(s) {', '.join(sorted(unknown_flags))}")
    return rest[0], args, flags


def main(argv: list[str] | None = None) -> int:
    """``python -m intradp_ros.launcher``: see the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or {"-h", "--help"} & set(argv) and not [a for a in argv if a in HOSTS]:
        print(_usage())
        return 0 if argv else 2
    try:
        host, args, flags = _parse(argv)
        if flags & {"-h", "--help", "--show-args"}:
            print(_usage(host))
            return 0
        values = resolve_arguments(host, args)
        if "--dry-run" in flags:
            if dds_profile(values):
                print(f"FASTRTPS_DEFAULT_PROFILES_FILE={dds_profile(values)}")
            for k, v in _discovery(values).items():
                print(f"{k}={v}")
            for spec, command in node_commands(host, values):
                print(f"[{spec.name}] {subprocess.list2cmdline(command)}")
            return 0
        launch = start(host, args, echo=True)
    except LaunchError as e:
        print(f"intradp_ros.launcher: {e}", file=sys.stderr)
        return 2

    received = []

    def forward(signum, _frame):
        received.append(signum)
        launch.announce(f"{signal.Signals(signum).name}: stopping the nodes")
        threading.Thread(target=launch.stop, daemon=True).start()   # not in the handler: stop() blocks

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    names = ", ".join(launch.processes)
    emit(sys.stderr, f"[launcher] started {names} ({host}); Ctrl-C stops them")
    status = launch.wait()
    if received:
        codes = launch.stop()
        status = 0 if all(c in (0, -signal.SIGINT, -signal.SIGTERM) for c in codes.values()) else 1
    return status


if __name__ == "__main__":
    sys.exit(main())
