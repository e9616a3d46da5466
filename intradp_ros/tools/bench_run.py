"""One benchmark run's processes (:class:`Run`): the emulated link (:class:`intradp_ros.tools.netem.Testbed`: two
network namespaces, a shaped veth pair, cgroup CPU caps), the three nodes started in them one at a time, the bench
client in the robot namespace, and their cleanup on every exit path.

:func:`intradp_ros.tools.bench.run` drives it: it reads the client's events from :attr:`Run.events` and answers
them (shape the link, mark the qdisc counters).
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from intradp_ros.launching.arguments import resolve_arguments
from intradp_ros.launching.commands import node_commands
from intradp_ros.launching.supervisor import Launch
from intradp_ros.tools import netem
from intradp_ros.tools.bench_config import config_file, write_params

__all__ = ["Run", "die_with_parent", "write_run_params", "run_environments", "client_settings",
           "shape_links", "stop_process", "merged_params"]


class Run:
    """One benchmark run: the testbed, the nodes, the client, and cleanup on every exit path."""

    def __init__(self, cfg: dict, out: Path, echo: bool):
        self.cfg, self.out, self.echo = cfg, out, echo
        r, link = cfg["robot"], cfg["link"]
        self.tb = netem.Testbed(subnet=link["subnet"], cpu_quota_us=int(r["cpu_quota_us"]),
                                cpu_period_us=int(r["cpu_period_us"]), mtu=int(link["mtu"]), log=self.log)
        self.launches = []
        self.client: subprocess.Popen | None = None
        self.events: queue.Queue = queue.Queue()
        self.marks: dict[tuple, dict] = {}
        self.decisions: list[dict] = []
        self.plans: dict[tuple, dict] = {}
        self.n_ops: int | None = None
        self._closed = False

    def log(self, text: str) -> None:
        from tqdm import tqdm
        tqdm.write(f"[bench] {text}", file=sys.stderr)

    # ------------------------------------------------------------------ start / stop
    def start_nodes(self, robot_updates: dict | None = None, edge_updates: dict | None = None,
                    camera: bool = False) -> None:
        """The testbed and the three nodes in it, one at a time (``*_updates``: more parameters per node;
        ``camera``: camera_player too, in the robot's namespace and CPU cap, last)."""
        cfg, out, tb = self.cfg, self.out, self.tb
        netem.cleanup_stale(self.log)
        tb.setup()
        self.shape(cfg["bandwidths_mbps"][0])
        (out / "params").mkdir(parents=True, exist_ok=True)
        robot_yaml, edge_yaml = write_run_params(cfg, out, robot_updates, edge_updates)
        dds, self.envs = run_environments(cfg, tb)
        self.env = self.envs["robot"]       # the robot namespace's (nodes and client)
        cmds = []
        for host, params, cgroup in (("edge", edge_yaml, None), ("robot", robot_yaml, "nodes")):
            values = resolve_arguments(host, {"params_file": str(params), "dds_profile": str(dds[host]),
                                              "model": cfg["model"],
                                              **({"start_camera": "true"} if camera and host == "robot" else {})})
            cmds += [(host, spec, tb.wrap(argv, host, cgroup)) for spec, argv in node_commands(host, values)]
        # One node at a time, each once the previous one is up: edge_node and robot_node profile their operators
        # while starting, and a profile taken while another node starts on the same CPU (the aggregator shares the
        # robot's quota) would price every op for a CPU share the run never sees again.
        order = {"edge_node": 0, "aggregator_node": 1, "robot_node": 2, "camera_player": 3}
        self.commands = {spec.name: (host, spec, argv) for host, spec, argv in cmds}
        for _, spec, _ in sorted(cmds, key=lambda c: order.get(c[1].name, 1)):
            launch = self.launch_node(spec.name)
            if spec.name not in ("robot_node", "camera_player"):
                self.log(f"started {spec.name}; waiting until it is up")
                launch.wait_for_output(rf"{spec.name}: model ", node=spec.name, timeout=900)
        self.log("started robot_node; waiting for it to profile itself under the CPU cap")

    def start(self) -> None:
        """The nodes, then the bench client."""
        self.start_nodes()
        cfg, out, tb, env = self.cfg, self.out, self.tb, self.env
        client_cfg = out / "params" / "client.json"
        fds = [os.open(tb.acct_file(g), os.O_RDONLY) for g in ("nodes", "client")]
        client_cfg.write_text(json.dumps(dict(client_settings(cfg), nodes_fd=fds[0], client_fd=fds[1],
                                              dev=tb.dev["robot"])))
        argv = tb.wrap([sys.executable, "-m", "intradp_ros.tools.bench_client", str(client_cfg)], "robot", "client")
        self.client_log = open(out / "logs" / "client.log", "w", encoding="utf-8")  # noqa: SIM115
        self.client = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self.client_log, text=True, bufsize=1, pass_fds=fds,
                                       preexec_fn=die_with_parent)
        for fd in fds:
            os.close(fd)
        threading.Thread(target=self._read_client, daemon=True, name="client output").start()

    def launch_node(self, name: str) -> Launch:
        """Start node ``name`` (again: after a fault killed it) with the command line of the run."""
        host, spec, argv = self.commands[name]
        launch = Launch(host, [(spec, argv)], self.envs[host], echo=self.echo, log_dir=self.out / "logs")
        self.launches.append(launch)
        return launch

    def _read_client(self) -> None:
        for line in self.client.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.client_log.write(line)
        self.events.put(None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.client is not None:
            stop_process(self.client, signal.SIGINT)
        for launch in reversed(self.launches):
            launch.stop(timeout=10.0)
        self.tb.close()

    # ------------------------------------------------------------------ during the run
    def shape(self, mbps: float) -> None:
        s = shape_links(self.tb, self.cfg, mbps)
        self.log(f"link shaped to {mbps:g} Mbit/s each way (tbf burst {s.burst_bytes} B, "
                 f"latency {s.latency_ms:.0f} ms)")

    def answer(self) -> None:
        self.client.stdin.write("ok\n")
        self.client.stdin.flush()

    def check_alive(self) -> None:
        for launch in self.launches:
            rejected = [ln for ln in launch.output.get("robot_node", ()) if "edge profile" in ln and "rejected" in ln]
            if rejected:   # e.g. the two sides run different versions of the code: the robot would wait forever
                raise RuntimeError(f"robot_node cannot use the edge: {rejected[-1]}")
            status = launch.poll()
            if status not in (None, 0) or any(c is not None for c in launch.returncodes().values()):
                tail = "\n".join(list(launch.lines)[-30:])
                raise RuntimeError(f"a {launch.host} node stopped (status {status}); last lines:\n{tail}")


def write_run_params(cfg: dict, out: Path, robot_updates: dict | None = None,
                     edge_updates: dict | None = None) -> tuple[Path, Path]:
    """The run's robot.yaml and edge.yaml in ``out``/params (config/*.yaml with the bench's settings; ``*_updates``:
    more parameters per node)."""
    (out / "params").mkdir(parents=True, exist_ok=True)
    prof = Path(cfg.get("profile_cache") or out / "profiles")
    r, e = cfg["robot"], cfg["edge"]
    executor = cfg.get("executor", "single")
    robot_yaml = write_params("robot.yaml", out / "params" / "robot.yaml", merged_params({
        "robot_node": {"model": cfg["model"], "input_size": int(cfg["input_size"]), "threads": int(r["threads"]),
                       "device": r["device"], "plan": "auto", "bandwidth_mbps": float(cfg["bandwidths_mbps"][0]),
                       "link_latency_ms": float(cfg["link_latency_ms"]), "encodings": cfg["encodings"],
                       "bandwidth_source": cfg["bandwidth_source"], "executor": executor, "edge_wait_s": 3600.0,
                       "profile_cache_dir": str(prof / f"robot-q{r['cpu_quota_us']}-p{r['cpu_period_us']}")},
        "aggregator_node": {"model": cfg["model"], "input_size": int(cfg["input_size"]), "executor": executor,
                            "frame_timeout_s": float(cfg["frame_timeout_s"])},
        }, robot_updates))
    edge_yaml = write_params("edge.yaml", out / "params" / "edge.yaml", merged_params({
        "edge_node": {"model": cfg["model"], "input_size": int(cfg["input_size"]), "threads": int(e["threads"]),
                      "device": e["device"], "frame_timeout_s": float(cfg["frame_timeout_s"]), "executor": executor,
                      "profile_cache_dir": str(prof / "edge")},
        }, edge_updates))
    return robot_yaml, edge_yaml


def run_environments(cfg: dict, tb: netem.Testbed) -> tuple[dict[str, Path], dict[str, dict[str, str]]]:
    """({host: DDS profile}, {host: environment}): the edge UDP only; the robot's processes (and the client)
    shared memory among themselves, UDP to the edge; everyone's static peers the testbed's addresses."""
    dds = {"edge": config_file("fastdds_udp.xml"), "robot": config_file("fastdds_robot_shm.xml")}
    env = dict(os.environ, ROS_DOMAIN_ID=str(cfg["domain_id"]), RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
               ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET", ROS_STATIC_PEERS=";".join(tb.addresses), PYTHONUNBUFFERED="1")
    env.pop("ROS_LOCALHOST_ONLY", None)
    return dds, {host: dict(env, FASTRTPS_DEFAULT_PROFILES_FILE=str(dds[host])) for host in ("robot", "edge")}


def client_settings(cfg: dict) -> dict:
    """The bench client's settings from the run's (its file descriptors and veth are added per client)."""
    return {"model": cfg["model"], "bandwidths": cfg["bandwidths_mbps"], "strategies": cfg["strategies"],
            "warmup": int(cfg["warmup"]), "frames": int(cfg["frames"]), "rounds": int(cfg.get("rounds", 1)),
            "round_warmup": int(cfg.get("round_warmup", 0)), "settle_max": int(cfg.get("settle_max", 0)),
            "frame_timeout_s": float(cfg["frame_timeout_s"]),
            "startup_timeout_s": float(cfg.get("startup_timeout_s", 900)), "plan_timeout_s": 300.0,
            "status_quiet_s": 1.0, "bandwidth_source": cfg["bandwidth_source"]}


def shape_links(tb: netem.Testbed, cfg: dict, mbps: float) -> netem.LinkShape:
    """Every link of the testbed shaped to ``mbps`` each way, as the config's ``link`` block says."""
    link = cfg["link"]
    return tb.shape(mbps, burst_ms=float(link["burst_ms"]), min_burst=int(link["min_burst_bytes"]),
                    queue_bytes=int(link["queue_bytes"]))


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal ``proc`` (if it still runs), wait ``timeout`` s, then kill it."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def merged_params(base: dict[str, dict], more: dict[str, dict] | None) -> dict[str, dict]:
    """{node: parameters} of ``base`` with ``more``'s parameters added node by node."""
    out = {node: dict(params) for node, params in base.items()}
    for node, params in (more or {}).items():
        out.setdefault(node, {}).update(params)
    return out


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the bench dies (PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - not Linux
        pass
