"""`./intradp faults`: the robot under faults, with the real nodes on the emulated link of `./intradp bench`.

robot_node and aggregator_node (and camera_player at its usual rate) run in the robot's namespace under the
quarter-core cap, edge_node in the edge's, plan auto on a measured link. Once the plan is settled on a
collaborative plan, the scenarios run one after the other:

- ``edge-kill``: ``kill -9`` of edge_node mid-stream; restarted ``--outage`` s later;
- ``link-down``: the veth between the namespaces down for ``--outage`` s;
- ``flood``: a hostile host in the edge's namespace publishes ``--flood-rate`` garbage tiles and outputs per
  second for ``--flood-s`` s;
- ``bomb``: a tile and an output whose 1.1 MB lz4 payload expands to 256 MiB;
- ``replay``: the genuine outputs of a few seconds published again as they were, and under another session.

Prints (and writes to ``<out>/faults.md``) one row per scenario: frames robot_node accepted, frames answered,
answered within their deadline, max latency, stale or duplicate results published, and the time from the fault's
end to the first detection under a collaborative plan. Needs root (namespaces, tc, cgroups), like the bench.

    ./intradp faults --out bench_results/faults
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from intradp_ros.tools import netem
from intradp_ros.tools.bench_config import config_file
from intradp_ros.tools.bench_run import Run, die_with_parent
from intradp_ros.tools.faults_report import Row, log_rate, prediction_error, scenario_row, seq_at, table

__all__ = ["main", "SCENARIOS"]

SCENARIOS = ("edge-kill", "link-down", "flood", "bomb", "replay")


class Faults:
    """One run of the scenarios: the bench's Run (testbed and nodes), the observer, the injector."""

    def __init__(self, a: argparse.Namespace):
        self.a = a
        cfg = yaml.safe_load(config_file("bench.yaml").read_text())
        cfg.update(bandwidths_mbps=[a.bandwidth], strategies=["intra-dp"], bandwidth_source="measured",
                   domain_id=random.randint(120, 229))
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.run = Run(cfg, self.out, echo=False)
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self.observer: subprocess.Popen | None = None

    def log(self, text: str) -> None:
        print(f"[faults] {text}", file=sys.stderr, flush=True)

    # -- processes ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.run.start_nodes(camera=True, robot_updates={"camera_player": {
            "rate_hz": self.a.camera_hz, "loop": True, "wait_for_subscribers": 1}})
        argv = self.run.tb.wrap([sys.executable, "-m", "intradp_ros.tools.faults_observer"], "robot")
        self.observer = subprocess.Popen(argv, env=self.run.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True, bufsize=1, preexec_fn=die_with_parent)
        threading.Thread(target=self._read, daemon=True, name="observer").start()

    def _read(self) -> None:
        for line in self.observer.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(e)
                self._cond.notify_all()

    def wait_for(self, cond, what: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        with self._cond:
            while not cond():
                left = end - time.monotonic()
                if left <= 0:
                    self.log(f"gave up waiting for {what} after {timeout:.0f} s")
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def inject(self, *args: str) -> dict:
        """Run the hostile host (faults_inject) in the edge's namespace, at the lowest CPU priority: on this one
        machine its own CPU (a Python loop publishing 1000 messages a second takes most of a core) would otherwise
        be taken from the robot and the edge it attacks, which a real attacker, another machine, cannot do."""
        argv = self.run.tb.wrap(["nice", "-n", "19", sys.executable, "-m", "intradp_ros.tools.faults_inject", *args],
                                "edge")
        p = subprocess.run(argv, env=self.run.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=120)
        return json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}

    def close(self) -> None:
        if self.observer is not None and self.observer.poll() is None:
            self.observer.send_signal(signal.SIGINT)
            try:
                self.observer.wait(5)
            except subprocess.TimeoutExpired:
                self.observer.kill()
        self.run.close()
        with open(self.out / "events.jsonl", "w", encoding="utf-8") as f:
            for e in self.events:
                f.write(json.dumps(e) + "\n")

    # -- helpers ------------------------------------------------------------------------------------------------
    def plan(self) -> dict | None:
        plans = [e for e in self.events if e["ev"] == "plan"]
        return plans[-1] if plans else None

    def collaborative(self) -> bool:
        p = self.plan()
        return p is not None and p["settled"] and p["plan"] != p["local_spec"] and "edge is gone" not in p["reason"]

    def seq(self) -> int:
        """robot_node's frames accepted so far, after its next /diagnostics report."""
        t = time.time()
        self.wait_for(lambda: any(e["ev"] == "diag" and e["node"] == "robot_node" and e["t"] > t + 1.0
                                  for e in self.events[-200:]), "robot_node's counters", 10)
        return seq_at(self.events, time.time())

    def window(self, name: str, act, settle_s: float = 5.0, note=lambda t0, t1: "") -> Row:
        """Run ``act()`` (returns when the fault is over, and when), wait until the plan is collaborative again,
        then ``settle_s`` more; the row covers the frames accepted from before the fault to the end."""
        first = self.seq() + 1
        t0 = time.time()
        self.log(f"{name}: from frame {first}")
        restored = act()
        if restored is not None:
            self.wait_for(self.collaborative, f"{name}: a collaborative plan again", 60)
        time.sleep(settle_s)     # frames after recovery, for the measured-vs-predicted check
        last = self.seq()
        self.wait_for(lambda: max((e["seq"] for e in self.events if e["ev"] == "det"), default=0) >= last,
                      f"{name}: the answers of frames up to {last}", 15)
        t1 = time.time()
        row = scenario_row(name, self.events, first, last, restored, note=note(t0, t1))
        self.log(f"{name}: {row}")
        return row

    # -- scenarios ----------------------------------------------------------------------------------------------
    def edge_kill(self) -> Row:
        def act():
            launch = next(la for la in self.run.launches if "edge_node" in la.processes)
            os.kill(launch.processes["edge_node"].pid, signal.SIGKILL)
            killed = time.time()
            self.wait_for(lambda: any(e["ev"] == "plan" and e["t"] > killed and "edge is gone" in e["reason"]
                                      for e in self.events[-50:]), "degraded mode", 10)
            said = next((e["t"] for e in self.events if e["ev"] == "plan" and e["t"] > killed
                         and "edge is gone" in e["reason"]), None)
            self.degraded_after = None if said is None else said - killed
            time.sleep(max(self.a.outage - (time.time() - killed), 0.0))
            self.run.launches.remove(launch)
            launch.stop(timeout=5.0)
            self.run.launch_node("edge_node")
            return time.time()
        return self.window("edge-kill", act, note=lambda t0, t1: f"degraded {self.degraded_after:.2f} s after the "
                           f"kill" if self.degraded_after is not None else "degraded mode never reported")

    def link_down(self) -> Row:
        tb = self.run.tb

        def act():
            for side in ("robot", "edge"):
                netem._run("ip", "-n", tb.ns[side], "link", "set", "dev", tb.dev[side], "down")
            time.sleep(self.a.outage)
            for side in ("robot", "edge"):
                netem._run("ip", "-n", tb.ns[side], "link", "set", "dev", tb.dev[side], "up")
                netem._run("ip", "-n", tb.ns[side], "route", "replace", "224.0.0.0/4", "dev", tb.dev[side])
            return time.time()

        def note(t0, t1):
            pe = prediction_error(self.events, t1 - 5.0, t1)
            return "" if pe is None else (f"after recovery {pe[0].split('|', 1)[-1]} measures {pe[1]:.0f} ms, "
                                          f"predicted {pe[2]:.0f} ms ({pe[1] / pe[2] - 1:+.0%})")
        return self.window("link-down", act, settle_s=10.0, note=note)

    def flood(self) -> Row:
        span, cpu = {}, {}
        base = [e["lat_ms"] for e in self.events if e["ev"] == "det"][-20:]

        def act():
            pids = self.pids()
            before = {n: _cpu_s(p) for n, p in pids.items()}
            time.sleep(self.a.flood_s)                       # the same time without the flood, for comparison
            quiet = {n: _cpu_s(p) - before[n] for n, p in pids.items()}
            before = {n: _cpu_s(p) for n, p in pids.items()}
            span.update(self.inject("--mode", "flood", "--rate", str(self.a.flood_rate), "--seconds",
                                    str(self.a.flood_s)))
            cpu.update({n: (quiet[n], _cpu_s(p) - before[n]) for n, p in pids.items()})
            return None

        def note(t0, t1):
            if not span:
                return "the injector failed"
            during = [e["lat_ms"] for e in self.events if e["ev"] == "det" and span["start"] <= e["t"] <= span["end"]]
            p50 = sorted(during)[len(during) // 2] if during else float("nan")
            b50 = sorted(base)[len(base) // 2] if base else float("nan")
            lines = {n: log_rate(list(la.output.get(n, ())), span["start"], span["end"])
                     for la in self.run.launches for n in la.output}
            worst = max(lines.items(), key=lambda kv: kv[1]) if lines else ("-", 0)
            used = ", ".join(f"{n} {q:.1f} -> {f:.1f}" for n, (q, f) in cpu.items())
            return (f"{span['published']} garbage messages in {self.a.flood_s:.0f} s; p50 {p50:.0f} ms during vs "
                    f"{b50:.0f} ms before ({p50 / b50:.2f}x); most log lines in a second: {worst[1]} ({worst[0]}); "
                    f"CPU s without -> with the flood: {used}")
        return self.window("flood", act, settle_s=2.0, note=note)

    def pids(self) -> dict[str, int]:
        return {n: la.processes[n].pid for la in self.run.launches for n in la.processes
                if n in ("edge_node", "aggregator_node", "robot_node") and la.processes[n].poll() is None}

    def bomb(self) -> Row:
        grown = {}

        def act():
            pids = {n: p for n, p in self.pids().items() if n != "robot_node"}
            before = {n: _peak_kib(p) for n, p in pids.items()}
            self.inject("--mode", "bomb")
            time.sleep(2.0)
            grown.update({n: (_peak_kib(p) - before[n]) / 1024 for n, p in pids.items()})
            return None
        return self.window("bomb", act, settle_s=2.0, note=lambda t0, t1: "peak RSS grew " + ", ".join(
            f"{n} {mib:.1f} MiB" for n, mib in grown.items()))

    def replay(self) -> Row:
        sent = {}

        def act():
            sent.update(self.inject("--mode", "replay", "--seconds", "5"))
            return None
        return self.window("replay", act, settle_s=2.0,
                           note=lambda t0, t1: f"{sent.get('published', 0)} replayed or foreign outputs published")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_results/faults")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    ap.add_argument("--bandwidth", type=float, default=50.0, help="the shaped link, Mbit/s")
    ap.add_argument("--camera-hz", type=float, default=2.0, help="camera_player's rate")
    ap.add_argument("--outage", type=float, default=10.0, help="seconds without the edge / the link")
    ap.add_argument("--flood-rate", type=float, default=1000.0)
    ap.add_argument("--flood-s", type=float, default=10.0)
    ap.add_argument("--baseline-s", type=float, default=20.0, help="frames before the first fault")
    a = ap.parse_args(argv)
    names = [s for s in a.scenarios.split(",") if s]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    why = netem.unavailable_reason()
    if why:
        print(f"intradp faults: {why}", file=sys.stderr)
        return 2
    f = Faults(a)
    rows = []
    try:
        f.start()
        f.log("waiting for plan auto to settle on a collaborative plan")
        f.wait_for(f.collaborative, "a settled collaborative plan", 300)
        rows.append(f.window("no fault", lambda: time.sleep(a.baseline_s), settle_s=0.0))
        for name in names:
            rows.append(getattr(f, name.replace("-", "_"))())
    finally:
        f.close()
    text = table(rows)
    (f.out / "faults.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
