"""Benchmark on an emulated robot-edge link: `./intradp bench`.

    ./intradp bench                                  # yolov3_tiny, 10..200 Mbit/s, 4 strategies, 10 + 50 frames
    ./intradp bench --model vgg19_bn --frames 20
    ./intradp bench --quick                          # CI smoke test: 50 Mbit/s, 2 + 3 frames
    ./intradp bench --bandwidths 25,100 --strategies local,intra-dp --out /tmp/b
    ./intradp bench --robots 1,2,4 --bandwidths 50      # a fleet on ONE edge_node (intradp_ros.tools.fleet_bench)

One machine plays both hosts (root needed): two network namespaces joined by a veth pair, shaped with tbf in both
directions to each bandwidth of the sweep. robot_node, aggregator_node and the bench's camera client run in the
robot namespace under a cgroup v1 CPU quota (default 2.5 ms per 10 ms = a quarter core; torch on one thread),
edge_node runs in the edge namespace uncapped. edge_node uses config/fastdds_udp.xml (UDP only), the robot's
processes config/fastdds_robot_shm.xml (shared memory among themselves, as on a robot, and UDP): since the edge
announces no shared-memory locator, robot <-> edge samples cannot take /dev/shm past the shaped link; the veth
byte counters prove that the tiles crossed it. Per bandwidth and strategy (all-local, all-offload, the planner's best
single layer-wise cut, Intra-DP = plan auto) the client sets robot_node's `plan` (with `--bandwidth-source
parameter` also `bandwidth_mbps`, the oracle) and runs a closed loop of warm-up + measured frames. Output in --out
(default bench_results/<timestamp>/): frames.csv (every frame), summary.md, PNG plots, run.json (set-up, machine,
planner decisions), logs/. Defaults: config/bench.yaml.
"""
from __future__ import annotations

import argparse
import atexit
import csv
import datetime
import json
import os
import queue
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from intradp_ros.engine.plan import Plan
from intradp_ros.tools import bench_report, fleet_bench, netem
from intradp_ros.tools.bench_client import turns
from intradp_ros.tools.bench_config import CSV_COLUMNS, load_config, machine_info
from intradp_ros.tools.bench_run import Run

__all__ = ["CSV_COLUMNS", "run", "main"]


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
                    runner.n_ops = Plan.parse(ev["baselines"]["local"][0]).seg_start
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
                    help="what robot_node plans for: its own measurement (measured, default: as deployed) or the "
                    "shaped rate (parameter: an oracle)")
    ap.add_argument("--executor", choices=("single", "multi"),
                    help="rclpy executor of the three nodes (default single; multi = MultiThreadedExecutor)")
    ap.add_argument("--edge-threads", type=int, dest="edge_threads", help="edge_node torch threads (default 1)")
    ap.add_argument("--profile-cache", dest="profile_cache",
                    help="reuse operator profiles from this folder (default: profile afresh into <out>/profiles)")
    ap.add_argument("--robots", help="fleet sizes, comma separated (e.g. 1,2,4): that many robots, each with its own "
                    "namespace, cap and link, share ONE edge_node; the config's fleet block applies")
    ap.add_argument("--config", type=Path, help="YAML of defaults (default config/bench.yaml)")
    ap.add_argument("--out", type=Path, help="output folder (default bench_results/<timestamp>)")
    ap.add_argument("--verbose", action="store_true", help="echo the nodes' log lines")
    ap.add_argument("--report-only", type=Path, metavar="DIR", help="rebuild summary and plots of a finished run")
    a = ap.parse_args(argv)
    if a.report_only:
        meta = json.loads((a.report_only / "run.json").read_text())
        report = fleet_bench.fleet_report.report if "robots" in meta else bench_report.report
        print(report(a.report_only, meta["config"], meta))
        return 0
    try:
        sizes = sorted({int(n) for n in a.robots.split(",") if n}) if a.robots else []
    except ValueError:
        sizes = [0]
    if sizes and (sizes[0] < 1 or sizes[-1] > 8):
        print(f"intradp bench: --robots takes fleet sizes from 1 to 8, comma separated (got {a.robots!r})",
              file=sys.stderr)
        return 2
    cfg = load_config(a.config, a)
    if a.profile_cache:
        cfg["profile_cache"] = a.profile_cache
    reason = netem.unavailable_reason()
    if reason:
        print(f"intradp bench: cannot emulate the link here: {reason}", file=sys.stderr)
        return 2
    out = a.out or Path(os.environ.get("INTRADP_ROOT", ".")) / "bench_results" / \
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if not sizes:
        return run(cfg, out.resolve(), echo=a.verbose)
    old = {s: signal.signal(s, _on_signal) for s in _SIGNALS}
    try:
        return fleet_bench.run(cfg, out.resolve(), sizes, echo=a.verbose)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main())
