"""Benchmark on an emulated robot-edge link: `./intradp bench`.

    ./intradp bench                                  # yolov3_tiny, 10..200 Mbit/s, 4 strategies, 10 + 50 frames
    ./intradp bench --model vgg19_bn --frames 20
    ./intradp bench --quick                          # CI smoke test: 50 Mbit/s, 2 + 3 frames
    ./intradp bench --bandwidths 25,100 --strategies local,intra-dp --out /tmp/b

One machine plays both hosts (root needed): two network namespaces joined by a veth pair, shaped with tbf in both
directions to each bandwidth of the sweep. robot_node, aggregator_node and the bench's camera client run in the
robot namespace under a cgroup v1 CPU quota (default 2.5 ms per 10 ms = a quarter core; torch on one thread),
edge_node runs in the edge namespace uncapped. Every process uses config/fastdds_udp.xml (UDP only): Fast DDS's
shared memory would otherwise carry robot <-> edge samples through /dev/shm, past the shaped link; the veth byte
counters prove that the tiles crossed it. Per bandwidth and strategy (all-local, all-offload, the planner's best
single layer-wise cut, Intra-DP = plan auto) the client sets robot_node's `plan` and `bandwidth_mbps` and runs a
closed loop of warm-up + measured frames. Output in --out (default bench_results/<timestamp>/): frames.csv (every
frame), summary.md, PNG plots, run.json (set-up, machine, planner decisions), logs/. Defaults: config/bench.yaml.
"""
from __future__ import annotations

import argparse
import atexit
import csv
import datetime
import json
import os
import platform
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from intradp_ros.engine.plan import Plan
from intradp_ros.tools import bench_report, netem
from intradp_ros.tools.bench_client import turns

CSV_COLUMNS = ["model", "bandwidth_mbps", "strategy", "round", "phase", "index", "image", "ok", "plan_spec",
               "plan_kind", "frame_plan", "plan_settled", "latency_ms", "agg_latency_ms", "predicted_ms",
               "robot_compute_ms", "edge_compute_ms", "cpu_robot_s", "cpu_client_s", "busy_core_s", "tx_bytes",
               "rx_bytes", "wire_bytes", "wall_s", "energy_j", "energy_idle_j", "energy_compute_j", "energy_radio_j",
               "n_results", "top"]


def _config_file(name: str) -> Path:
    """config/<name> of the installed share directory, else of this checkout."""
    from intradp_ros.launcher import _share_dir
    for base in (_share_dir(), Path(__file__).resolve().parents[2]):
        if (base / "config" / name).is_file():
            return base / "config" / name
    raise FileNotFoundError(f"config/{name} not found")


def load_config(path: Path | None, a: argparse.Namespace) -> dict:
    cfg = yaml.safe_load((path or _config_file("bench.yaml")).read_text())
    if a.quick:
        cfg.update(cfg.get("quick", {}))
    for opt, keyname in (("model", "model"), ("warmup", "warmup"), ("frames", "frames"), ("input_size", "input_size"),
                         ("frame_timeout", "frame_timeout_s"), ("rounds", "rounds"), ("settle_max", "settle_max")):
        if getattr(a, opt) is not None:
            cfg[keyname] = getattr(a, opt)
    if a.bandwidths:
        cfg["bandwidths_mbps"] = [float(b) for b in a.bandwidths.split(",") if b]
    if a.strategies:
        cfg["strategies"] = [s for s in a.strategies.split(",") if s]
    if a.bandwidth_source:
        cfg["bandwidth_source"] = a.bandwidth_source
    if a.executor:
        cfg["executor"] = a.executor
    if a.edge_threads is not None:
        cfg["edge"]["threads"] = a.edge_threads
    if a.cpu_quota is not None:
        cfg["robot"]["cpu_quota_us"] = a.cpu_quota
    if a.cpu_period is not None:
        cfg["robot"]["cpu_period_us"] = a.cpu_period
    unknown = set(cfg["strategies"]) - set(bench_report.STRATEGIES)
    if unknown:
        raise SystemExit(f"unknown strategies {sorted(unknown)}; known: {', '.join(bench_report.STRATEGIES)}")
    return cfg


def _params(name: str, path: Path, updates: dict[str, dict]) -> Path:
    base = yaml.safe_load(_config_file(name).read_text())
    for node, params in updates.items():
        base.setdefault(f"/**/{node}", {}).setdefault("ros__parameters", {}).update(params)
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def machine_info() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    git = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[2]), "describe", "--always", "--dirty"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    return {"git": git, "cpu_model": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3]}


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
    def start(self) -> None:
        from intradp_ros.launcher import Launch, node_commands, resolve_arguments
        cfg, out, tb = self.cfg, self.out, self.tb
        netem.cleanup_stale(self.log)
        tb.setup()
        self.shape(cfg["bandwidths_mbps"][0])
        (out / "params").mkdir(parents=True, exist_ok=True)
        prof = Path(cfg.get("profile_cache") or out / "profiles")
        r, e = cfg["robot"], cfg["edge"]
        executor = cfg.get("executor", "single")
        robot_yaml = _params("robot.yaml", out / "params" / "robot.yaml", {
            "robot_node": {"model": cfg["model"], "input_size": int(cfg["input_size"]), "threads": int(r["threads"]),
                           "device": r["device"], "plan": "auto", "bandwidth_mbps": float(cfg["bandwidths_mbps"][0]),
                           "link_latency_ms": float(cfg["link_latency_ms"]), "encodings": cfg["encodings"],
                           "bandwidth_source": cfg["bandwidth_source"], "executor": executor,
                           "edge_wait_s": 3600.0,
                           "profile_cache_dir": str(prof / f"robot-q{r['cpu_quota_us']}-p{r['cpu_period_us']}")},
            "aggregator_node": {"model": cfg["model"], "input_size": int(cfg["input_size"]),
                                "executor": executor,
                                "frame_timeout_s": float(cfg["frame_timeout_s"])}})
        edge_yaml = _params("edge.yaml", out / "params" / "edge.yaml", {
            "edge_node": {"model": cfg["model"], "input_size": int(cfg["input_size"]), "threads": int(e["threads"]),
                          "device": e["device"], "frame_timeout_s": float(cfg["frame_timeout_s"]),
                          "executor": executor,
                          "profile_cache_dir": str(prof / "edge")}})
        dds = _config_file("fastdds_udp.xml")
        env = dict(os.environ, ROS_DOMAIN_ID=str(cfg["domain_id"]), FASTRTPS_DEFAULT_PROFILES_FILE=str(dds),
                   RMW_IMPLEMENTATION="rmw_fastrtps_cpp", ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET",
                   ROS_STATIC_PEERS=";".join(tb.ip.values()), PYTHONUNBUFFERED="1")
        env.pop("ROS_LOCALHOST_ONLY", None)
        self.env = env
        cmds = []
        for host, params, cgroup in (("edge", edge_yaml, None), ("robot", robot_yaml, "nodes")):
            values = resolve_arguments(host, {"params_file": str(params), "dds_profile": str(dds),
                                              "model": cfg["model"]})
            cmds += [(host, spec, tb.wrap(argv, host, cgroup)) for spec, argv in node_commands(host, values)]
        # One node at a time, each once the previous one is up: edge_node and robot_node profile their operators
        # while starting, and a profile taken while another node starts on the same CPU (the aggregator shares the
        # robot's quota) would price every op for a CPU share the run never sees again.
        order = {"edge_node": 0, "aggregator_node": 1, "robot_node": 2}
        for host, spec, argv in sorted(cmds, key=lambda c: order.get(c[1].name, 1)):
            launch = Launch(host, [(spec, argv)], env, echo=self.echo, log_dir=out / "logs")
            self.launches.append(launch)
            if spec.name != "robot_node":
                self.log(f"started {spec.name}; waiting until it is up")
                launch.wait_for_output(rf"{spec.name}: model ", node=spec.name, timeout=900)
        self.log("started robot_node; waiting for it to profile itself under the CPU cap")
        client_cfg = out / "params" / "client.json"
        fds = [os.open(tb.acct_file(g), os.O_RDONLY) for g in ("nodes", "client")]
        client_cfg.write_text(json.dumps({
            "model": cfg["model"], "bandwidths": cfg["bandwidths_mbps"], "strategies": cfg["strategies"],
            "warmup": int(cfg["warmup"]), "frames": int(cfg["frames"]), "rounds": int(cfg.get("rounds", 1)),
            "round_warmup": int(cfg.get("round_warmup", 0)), "settle_max": int(cfg.get("settle_max", 0)),
            "frame_timeout_s": float(cfg["frame_timeout_s"]),
            "startup_timeout_s": float(cfg.get("startup_timeout_s", 900)), "plan_timeout_s": 300.0,
            "status_quiet_s": 1.0,
            "bandwidth_source": cfg["bandwidth_source"],
            "nodes_fd": fds[0], "client_fd": fds[1], "dev": tb.dev["robot"]}))
        argv = tb.wrap([sys.executable, "-m", "intradp_ros.tools.bench_client", str(client_cfg)], "robot", "client")
        self.client_log = open(out / "logs" / "client.log", "w", encoding="utf-8")  # noqa: SIM115
        self.client = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self.client_log, text=True, bufsize=1, pass_fds=fds,
                                       preexec_fn=_die_with_parent)
        for fd in fds:
            os.close(fd)
        threading.Thread(target=self._read_client, daemon=True, name="client output").start()

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
        if self.client is not None and self.client.poll() is None:
            self.client.send_signal(signal.SIGINT)
            try:
                self.client.wait(10)
            except subprocess.TimeoutExpired:
                self.client.kill()
                self.client.wait()
        for launch in reversed(self.launches):
            launch.stop(timeout=10.0)
        self.tb.close()

    # ------------------------------------------------------------------ during the run
    def shape(self, mbps: float) -> None:
        link = self.cfg["link"]
        s = self.tb.shape(mbps, burst_ms=float(link["burst_ms"]), min_burst=int(link["min_burst_bytes"]),
                          queue_bytes=int(link["queue_bytes"]))
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


def _die_with_parent() -> None:
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - not Linux
        pass


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_signal(signum, _frame):
    """First Ctrl-C / SIGTERM / SIGHUP: unwind into the cleanup; later ones must not interrupt the cleanup."""
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(cfg: dict, out: Path, echo: bool = False) -> int:
    """Run the benchmark described by ``cfg``; write everything into ``out``. Returns the exit status."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    cfg.setdefault("domain_id", random.randint(120, 229))
    meta = {"command": " ".join(["./intradp bench", *sys.argv[1:]]), "started": datetime.datetime.now().isoformat(),
            "machine": machine_info(), "config": cfg}
    runner = Run(cfg, out, echo)
    atexit.register(runner.close)
    old = {s: signal.signal(s, _on_signal) for s in _SIGNALS}   # SIGINT too: even where a shell ignored it
    csv_file = open(out / "frames.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
    writer = csv.DictWriter(csv_file, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    total = len(cfg["bandwidths_mbps"]) * sum(w + n for _, _, w, n in turns(
        cfg["strategies"], int(cfg["frames"]), int(cfg.get("rounds", 1)), int(cfg["warmup"]),
        int(cfg.get("round_warmup", 0))))
    bar = tqdm(total=total, desc=f"bench {cfg['model']}", unit="frame", file=sys.stderr, dynamic_ncols=True)
    status = 0
    power = bench_report.PowerModel.from_config(cfg["power"], runner.tb.cpu_fraction)
    try:
        runner.start()
        meta["testbed"] = {"netns": runner.tb.ns, "veth": runner.tb.dev, "ip": runner.tb.ip,
                           "cgroup_cpu": str(runner.tb.cpu_dir), "cpu_fraction": runner.tb.cpu_fraction}
        deadline_idle = float(cfg.get("startup_timeout_s", 900)) + 60
        last = time.monotonic()
        while True:
            try:
                ev = runner.events.get(timeout=0.5)
            except queue.Empty:
                ev = {"event": "idle"}
            if ev is not None and ev.get("event") == "idle":
                runner.check_alive()
                if time.monotonic() - last > deadline_idle:
                    raise RuntimeError(f"no progress for {deadline_idle:.0f} s")
                continue
            last = time.monotonic()
            if ev is None:
                raise RuntimeError(f"the bench client exited ({runner.client.wait()}); see {out}/logs/client.log")
            kind = ev.pop("event")
            if kind == "shape":
                runner.shape(ev["mbps"])
                runner.answer()
            elif kind == "mark":
                runner.marks[(ev["mbps"], ev["strategy"], ev.get("round", 0), ev["phase"])] = {
                    side: runner.tb.qdisc_stats(side) for side in ("robot", "edge")}
                runner.answer()
            elif kind == "ready":
                runner.log("robot_node is ready; measuring")
            elif kind == "decision":
                runner.decisions.append(ev)
                if "local" in ev["baselines"]:
                    runner.n_ops = Plan.parse(ev["baselines"]["local"][0]).k1
                runner.log(f"{ev['mbps']:g} Mbit/s: planner chose {ev['reason']} "
                           f"({ev['predicted_ms']:.1f} ms predicted)")
            elif kind == "plan":
                runner.plans[(ev["mbps"], ev["strategy"])] = ev
            elif kind == "frame":
                row = bench_report.frame_row(cfg["model"], ev, power, runner.n_ops)
                writer.writerow(row)
                csv_file.flush()
                if ev["phase"] == "settle":      # beyond the schedule: the planner was still measuring
                    bar.total += 1
                bar.update(1)
                if not ev["ok"]:
                    runner.log(f"frame lost: {ev['strategy']} @ {ev['mbps']:g} Mbit/s ({ev['image']})")
            elif kind in ("log", "error"):
                runner.log(f"client: {ev.get('text')}")
                if kind == "error":
                    raise RuntimeError(ev.get("text"))
            elif kind == "done":
                try:                        # let it exit on its own: a signal mid-exit only litters its log
                    runner.client.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
                break
    except KeyboardInterrupt as e:
        runner.log(f"interrupted ({e or 'Ctrl-C'}): cleaning up")
        status = 130
    except (RuntimeError, netem.NetemError, OSError) as e:
        runner.log(f"failed: {e}")
        status = 1
    finally:
        bar.close()
        csv_file.close()
        runner.close()
        for s, h in old.items():
            signal.signal(s, h)
        atexit.unregister(runner.close)
    meta["finished"] = datetime.datetime.now().isoformat()
    meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    meta["decisions"] = runner.decisions
    meta["plans"] = [dict(v, mbps=k[0], strategy=k[1]) for k, v in runner.plans.items()]
    meta["tbf"] = [{"mbps": k[0], "strategy": k[1], "round": k[2], "phase": k[3], **v}
                   for k, v in runner.marks.items()]
    (out / "run.json").write_text(json.dumps(meta, indent=1, default=str))
    if status == 0:
        text = bench_report.report(out, cfg, meta)
        print(text)
        print(f"\nresults: {out}/ (frames.csv, summary.md, *.png, run.json, logs/)")
    return status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: the config's quick block (50 Mbit/s, 2+3 frames)")
    ap.add_argument("--model", help="model of intradp_ros.models (default yolov3_tiny)")
    ap.add_argument("--input-size", type=int, dest="input_size", help="network input side, 0 = the model's default")
    ap.add_argument("--bandwidths", help="Mbit/s, comma separated (default 10,25,50,100,200)")
    ap.add_argument("--strategies", help=f"comma separated subset of {','.join(bench_report.STRATEGIES)}")
    ap.add_argument("--warmup", type=int, help="warm-up frames per bandwidth and strategy (default 10)")
    ap.add_argument("--frames", type=int, help="measured frames per bandwidth and strategy (default 50)")
    ap.add_argument("--settle-max", type=int, dest="settle_max",
                    help="after the warm-up, frames a turn may go on until robot_node's plan is settled (default 40)")
    ap.add_argument("--rounds", type=int, help="strategies take turns in this many rounds per bandwidth (default 5; "
                    "1 = each strategy's frames in one block)")
    ap.add_argument("--frame-timeout", type=float, dest="frame_timeout", help="seconds before a frame counts as lost")
    ap.add_argument("--cpu-quota", type=int, dest="cpu_quota", help="robot cpu.cfs_quota_us (default 2500)")
    ap.add_argument("--cpu-period", type=int, dest="cpu_period", help="robot cpu.cfs_period_us (default 10000)")
    ap.add_argument("--bandwidth-source", dest="bandwidth_source", choices=("parameter", "measured"),
                    help="what robot_node plans for: the shaped rate (parameter, default) or its own measurement")
    ap.add_argument("--executor", choices=("single", "multi"),
                    help="rclpy executor of the three nodes (default single; multi = MultiThreadedExecutor)")
    ap.add_argument("--edge-threads", type=int, dest="edge_threads", help="edge_node torch threads (default 1)")
    ap.add_argument("--profile-cache", dest="profile_cache",
                    help="reuse operator profiles from this folder (default: profile afresh into <out>/profiles)")
    ap.add_argument("--config", type=Path, help="YAML of defaults (default config/bench.yaml)")
    ap.add_argument("--out", type=Path, help="output folder (default bench_results/<timestamp>)")
    ap.add_argument("--verbose", action="store_true", help="echo the nodes' log lines")
    ap.add_argument("--report-only", type=Path, metavar="DIR", help="rebuild summary and plots of a finished run")
    a = ap.parse_args(argv)
    if a.report_only:
        meta = json.loads((a.report_only / "run.json").read_text())
        print(bench_report.report(a.report_only, meta["config"], meta))
        return 0
    cfg = load_config(a.config, a)
    if a.profile_cache:
        cfg["profile_cache"] = a.profile_cache
    reason = netem.unavailable_reason()
    if reason:
        print(f"intradp bench: cannot emulate the link here: {reason}", file=sys.stderr)
        return 2
    out = a.out or Path(os.environ.get("INTRADP_ROOT", ".")) / "bench_results" / \
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return run(cfg, out.resolve(), echo=a.verbose)


if __name__ == "__main__":
    sys.exit(main())
