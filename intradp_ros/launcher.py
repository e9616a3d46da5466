"""Start the intradp_ros nodes without ``ros2 launch`` (which PyPI does not provide).

    python -m intradp_ros.launcher {robot|edge|all} [name:=value ...]
    python -m intradp_ros.launcher robot --show-args      # the arguments, their defaults and meaning
    python -m intradp_ros.launcher all start_camera:=false --dry-run   # print the commands only

It takes the same arguments, with the same defaults, as ``launch/{robot,edge,intradp}.launch.py``: both read
:data:`LAUNCH_ARGS` below (the one table of launch arguments) and the node set of
:func:`intradp_ros.topology.nodes_for`. Each node runs as its own process, the installed executable
``<prefix>/lib/intradp_ros/<exe>`` (or ``python -c 'from intradp_ros.nodes.<exe> import main ...'`` without a
colcon install) with ``--ros-args``: node name, namespace, the params file, the QoS file, ``-p`` overrides and
the camera topic remapping, exactly what ``launch_ros`` passes.

Supervision: each child's output lines are printed prefixed with ``[<node name>]``; SIGINT/SIGTERM are
forwarded to every child; a child exiting non-zero stops the others and the launcher exits with its status;
a child exiting 0 (camera_player with ``exit_when_done``) is fine, and the launcher returns 0 once all did.

Python API (used by the demo and the tests)::

    with start("all", {"start_camera": "true"}, env={"ROS_DOMAIN_ID": "42"}) as launch:
        launch.wait_for_output(r"published", node="camera_player", timeout=30)
        print(launch.output["robot_node"][-5:])
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Iterable

from intradp_ros.topology import NODES, PACKAGE, QOS_FILE, TOPICS, NodeSpec, nodes_for

__all__ = ["LaunchArg", "LAUNCH_ARGS", "HOSTS", "LaunchError", "Launch", "launch_arguments", "params_argument",
           "node_overrides", "resolve_arguments", "node_commands", "start", "main"]

HOSTS = ("robot", "edge", "all")
_HOST_PARAMS = {spec.host: spec.params_file for spec in NODES}       # {"robot": "robot.yaml", "edge": ...}
_MODEL_NODES = ("robot_node", "edge_node", "aggregator_node")
_DEVICE_NODES = ("robot_node", "edge_node")


@dataclasses.dataclass(frozen=True)
class LaunchArg:
    """One launch argument of the launch files and of this launcher."""
    name: str
    default: str
    description: str
    hosts: tuple[str, ...] = HOSTS        # launch files ("robot", "edge", "all") that declare it
    share_path: bool = False              # default is a path relative to share/intradp_ros ("" stays "")
    parameter_of: tuple[str, ...] = ()    # nodes that get it as the parameter `name` when non-empty


LAUNCH_ARGS = (
    LaunchArg("namespace", "", "namespace of every node (e.g. 'robot1'); empty = the root namespace"),
    LaunchArg("params_file", f"config/{_HOST_PARAMS['robot']}",
              "parameters of camera_player, robot_node and aggregator_node", hosts=("robot",), share_path=True),
    LaunchArg("params_file", f"config/{_HOST_PARAMS['edge']}", "parameters of edge_node", hosts=("edge",),
              share_path=True),
    *(LaunchArg(f"{host}_params_file", f"config/{file}", f"parameters of the {host}'s nodes", hosts=("all",),
                share_path=True) for host, file in _HOST_PARAMS.items()),
    LaunchArg("qos_file", f"config/{QOS_FILE}", "QoS of every topic (qos.<topic>.* parameters), given to every node",
              share_path=True),
    LaunchArg("model", "", "model of robot_node, edge_node and aggregator_node; empty = as in the params files",
              parameter_of=_MODEL_NODES),
    LaunchArg("device", "", "torch device of robot_node and edge_node (cpu | cuda | cuda:N | auto); "
              "empty = as in the params files", parameter_of=_DEVICE_NODES),
    LaunchArg("camera_topic", TOPICS["camera"].name, f"camera image topic (remaps {TOPICS['camera'].name})"),
    LaunchArg("start_camera", "false", "start camera_player (false: a real camera driver publishes "
              "camera_topic)", hosts=("robot",)),
    LaunchArg("start_camera", "true", "start camera_player (the sample images)", hosts=("all",)),
    LaunchArg("dds_profile", "config/fastdds.xml", "Fast DDS XML profile, exported as "
              "FASTRTPS_DEFAULT_PROFILES_FILE; empty = leave the environment's", share_path=True),
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
    """Parameters that the launch argument values set on ``node`` (only the non-empty ones)."""
    return {a.name: values[a.name] for a in LAUNCH_ARGS
            if node in a.parameter_of and values.get(a.name, "") != ""}


def _truthy(name: str, value: str) -> bool:
    """Like launch's IfCondition: true/false/1/0, case-insensitive."""
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise LaunchError(f"{name}:={value!r} is not a boolean (true | false | 1 | 0)")


def _share_dir() -> pathlib.Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        return pathlib.Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - no colcon install (pip install / checkout): use the checkout's files
        return pathlib.Path(__file__).resolve().parents[1]


def _executable(spec: NodeSpec) -> list[str]:
    try:
        from ament_index_python.packages import get_package_prefix

        exe = pathlib.Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / spec.executable
        if os.access(exe, os.X_OK):
            return [str(exe)]
    except Exception:  # noqa: BLE001 - not in the ament index: run the module with this interpreter
        pass
    module = f"{PACKAGE}.nodes.{spec.executable}"
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


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
            share = share or _share_dir()
            value = str(share / value)
        values[name] = value
    for name, arg in declared.items():
        if arg.share_path and values[name] and not os.path.isfile(values[name]):
            raise LaunchError(f"{name}:={values[name]} does not exist")
    if "start_camera" in values:
        _truthy("start_camera", values["start_camera"])
    return values


def node_commands(host: str, values: dict[str, str]) -> list[tuple[NodeSpec, list[str]]]:
    """The nodes to start for ``host`` and their command lines (``values`` from :func:`resolve_arguments`)."""
    namespace = values["namespace"].strip()
    if namespace and not namespace.startswith("/"):
        namespace = "/" + namespace
    commands = []
    for spec in nodes_for(host):
        if spec.optional and not _truthy(spec.optional, values[spec.optional]):
            continue
        argv = _executable(spec) + ["--ros-args", "-r", f"__node:={spec.name}"]
        if namespace and namespace != "/":
            argv += ["-r", f"__ns:={namespace}"]
        argv += ["--params-file", values[params_argument(host, spec)], "--params-file", values["qos_file"]]
        for name, value in node_overrides(spec.name, values).items():
            argv += ["-p", f"{name}:={value}"]
        argv += ["-r", f"{TOPICS['camera'].name}:={values['camera_topic']}"]
        commands.append((spec, argv))
    return commands


def _child_setup() -> None:
    """In the child, before exec (Linux; elsewhere a no-op).

    SIGINT/SIGTERM back to their defaults (a launcher started as a background job of a script inherits
    SIGINT ignored, and the nodes would then ignore the forwarded Ctrl-C); SIGTERM when the thread that
    started the child ends (PR_SET_PDEATHSIG), so nodes do not outlive a launcher killed with SIGKILL.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        for sig in (signal.SIGINT, signal.SIGTERM):
            libc.signal(int(sig), 0)                  # SIG_DFL
        libc.prctl(1, int(signal.SIGTERM))            # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: children may outlive a killed launcher
        pass


_EMIT_LOCK = threading.Lock()


def _emit(stream, line: str) -> None:
    """Write one whole line: ``print`` writes text and newline separately, so lines from two reader threads
    could interleave ("[a] x[b] y")."""
    with _EMIT_LOCK:
        stream.write(line + "\n")
        stream.flush()


class Launch:
    """The running nodes of one launch. Use :func:`start` to create one.

    Attributes:
        processes: node name -> ``subprocess.Popen``.
        output: node name -> its output lines (stdout and stderr, newest last, at most ``max_lines``).
        lines: every output line, prefixed with ``[<node name>]``, in arrival order.
        commands: node name -> command line.
    """

    def __init__(self, host: str, commands: list[tuple[NodeSpec, list[str]]], env: dict[str, str],
                 echo: bool = False, log_dir: str | os.PathLike | None = None, max_lines: int = 10000):
        self.host = host
        self.commands = {spec.name: argv for spec, argv in commands}
        self.processes: dict[str, subprocess.Popen] = {}
        self.output: dict[str, collections.deque] = {}
        self.lines: collections.deque = collections.deque(maxlen=max_lines)
        self._echo = echo
        self._changed = threading.Condition()
        self._readers = []
        self._stopping = False
        log_dir = pathlib.Path(log_dir) if log_dir else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for spec, argv in commands:
                self.output[spec.name] = collections.deque(maxlen=max_lines)
                proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_child_setup)
                self.processes[spec.name] = proc
                log = open(log_dir / f"{spec.name}.log", "w", encoding="utf-8") if log_dir else None  # noqa: SIM115
                reader = threading.Thread(target=self._read, args=(spec.name, proc, log), daemon=True,
                                          name=f"output of {spec.name}")
                reader.start()
                self._readers.append(reader)
        except OSError as e:
            self.stop()
            raise LaunchError(f"cannot start {argv[0]}: {e}") from e

    def _read(self, name: str, proc: subprocess.Popen, log) -> None:
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._changed:
                    self.output[name].append(line)
                    self.lines.append(f"[{name}] {line}")
                    self._changed.notify_all()
                if log:
                    log.write(line + "\n")
                    log.flush()
                if self._echo:
                    _emit(sys.stdout, f"[{name}] {line}")
        finally:
            proc.stdout.close()
            if log:
                log.close()
            proc.wait()
            with self._changed:
                self._changed.notify_all()

    # ------------------------------------------------------------------ queries
    def returncodes(self) -> dict[str, int | None]:
        """Node name -> exit status (None while running; negative: killed by that signal)."""
        return {name: proc.poll() for name, proc in self.processes.items()}

    def wait_for_output(self, pattern: str, node: str | None = None, timeout: float = 30.0) -> str:
        """Block until a line of ``node`` (any node if None) matches the regex ``pattern``; return the line.

        Raises:
            TimeoutError: no match within ``timeout`` s, or every process ended without one.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                sources = [self.output[node]] if node else list(self.output.values())
                for lines in sources:
                    for line in lines:
                        if regex.search(line):
                            return line
                names = [node] if node else list(self.processes)
                ended = all(self.processes[n].poll() is not None for n in names) and not any(
                    r.is_alive() for r in self._readers)
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    why = "exited" if ended else f"did not print it within {timeout} s"
                    raise TimeoutError(f"no line matching {pattern!r} from {node or 'any node'}: {why}; last lines:\n"
                                       + "\n".join(list(self.lines)[-20:]))
                self._changed.wait(min(left, 0.5))

    def poll(self) -> int | None:
        """Supervise once: None while the launch goes on, else its exit status (see the module docstring).

        A child that exited non-zero stops the others first.
        """
        codes = self.returncodes()
        failed = {n: c for n, c in codes.items() if c not in (None, 0)}
        if failed and not self._stopping:
            name, code = next(iter(failed.items()))
            self._announce(f"{name} exited with status {code}: stopping the other nodes")
            self.stop()
            return code if code > 0 else 128 - code
        if all(c is not None for c in codes.values()):
            return 0 if not failed or self._stopping else 1
        return None

    def wait(self, timeout: float | None = None) -> int | None:
        """Supervise until the launch ends (see :meth:`poll`); None if ``timeout`` s passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.poll()
            if status is not None:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return None
            with self._changed:
                self._changed.wait(0.2)   # woken when a child's output ends; the timeout bounds the poll

    # ------------------------------------------------------------------ stopping
    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to every child still running."""
        for proc in self.processes.values():
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGINT every child, then SIGTERM after ``timeout`` s, then SIGKILL; return the exit statuses."""
        self._stopping = True
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            self.send_signal(sig)
            deadline = time.monotonic() + (timeout if sig != signal.SIGKILL else 5.0)
            for proc in self.processes.values():
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            if all(p.poll() is not None for p in self.processes.values()):
                break
            self._announce(f"nodes still running {timeout:.0f} s after {signal.Signals(sig).name}: "
                           f"sending the next signal")
        for reader in self._readers:
            reader.join(timeout=5.0)
        return self.returncodes()

    def _announce(self, text: str) -> None:
        with self._changed:
            self.lines.append(f"[launcher] {text}")
        _emit(sys.stderr, f"[launcher] {text}")

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


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
    if values["dds_profile"]:
        child_env["FASTRTPS_DEFAULT_PROFILES_FILE"] = values["dds_profile"]
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    return Launch(host, node_commands(host, values), child_env, echo=echo, log_dir=log_dir)


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
            if values["dds_profile"]:
                print(f"FASTRTPS_DEFAULT_PROFILES_FILE={values['dds_profile']}")
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
        launch._announce(f"{signal.Signals(signum).name}: stopping the nodes")
        threading.Thread(target=launch.stop, daemon=True).start()   # not in the handler: stop() blocks

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    names = ", ".join(launch.processes)
    _emit(sys.stderr, f"[launcher] started {names} ({host}); Ctrl-C stops them")
    status = launch.wait()
    if received:
        codes = launch.stop()
        status = 0 if all(c in (0, -signal.SIGINT, -signal.SIGTERM) for c in codes.values()) else 1
    return status


if __name__ == "__main__":
    sys.exit(main())
