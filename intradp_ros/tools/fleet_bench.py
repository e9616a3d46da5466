"""The fleet benchmark: `./intradp bench --robots 1,2,4` (several robots, ONE edge_node).

    ./intradp bench --robots 1,2,4 --bandwidths 50
    ./intradp bench --robots 1,2 --bandwidths 25 --strategies offload,intra-dp --frames 20

The testbed (:class:`intradp_ros.tools.netem.Testbed` with ``robots=N``) gives every robot its own network
namespace, its own veth to the one edge namespace shaped to the bandwidth, and its own CPU cap (the bench's quarter
core), holding its robot_node, its aggregator_node (launched with ``namespace:=robotK``) and its bench client. One
edge_node serves them all. Robots start one at a time: the first profiles itself under its cap, the others reuse
that profile (same cap, same model).

Per bandwidth every client takes robot_node's decision with the edge idle (the baselines: all-local, all-offload,
the best layer-wise cut for an unloaded edge); then for each fleet size N in ``--robots``, the first N robots run the
strategies' turns together, every robot the same strategy at once, the others idle. A turn's start is a barrier
(each client asks ``mark``; the bench answers once all N asked); after its measured frames a client goes on with
unmeasured "tail" frames until all N have measured theirs, so every measured frame met the whole fleet's load.
Client 1 reports the edge's heartbeats per turn: its busy fraction (utilisation) and frames done per second.

Output in --out: frames.csv (the bench's columns + robots, robot), edge.csv, fleet_summary.md, fleet_p50.png,
run.json, logs/.
"""
from __future__ import annotations

import atexit
import csv
import datetime
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from intradp_ros.engine.plan import Plan
from intradp_ros.launching.arguments import resolve_arguments
from intradp_ros.launching.commands import node_commands
from intradp_ros.launching.supervisor import Launch
from intradp_ros.tools import bench_report, fleet_report, netem
from intradp_ros.tools.bench_config import CSV_COLUMNS, machine_info
from intradp_ros.tools.bench_run import (client_settings, die_with_parent, run_environments, shape_links, stop_process,
                                         write_run_params)

__all__ = ["FleetRun", "run", "FLEET_COLUMNS"]

FLEET_COLUMNS = [*CSV_COLUMNS, "robots", "robot"]
EDGE_COLUMNS = ["bandwidth_mbps", "robots", "strategy", "round", "span_s", "busy_fraction", "frames_per_s",
                "sessions"]


class FleetRun:
    """The testbed, one edge_node, per robot its nodes and bench client; cleanup on every exit path.

    Threading: one reader thread per client puts (robot, event) on :attr:`events`; everything else (barriers,
    answers, the CSV) happens on the caller's thread in :meth:`drive`."""

    def __init__(self, cfg: dict, out: Path, sizes: list[int], echo: bool = False):
        self.cfg, self.out, self.sizes, self.echo = cfg, out, sizes, echo
        self.n = max(sizes)
        r, link = cfg["robot"], cfg["link"]
        self.tb = netem.Testbed(subnet=link["subnet"], cpu_quota_us=int(r["cpu_quota_us"]),
                                cpu_period_us=int(r["cpu_period_us"]), mtu=int(link["mtu"]), log=self.log,
                                robots=self.n)
        self.launches: list[Launch] = []
        self.clients: dict[int, subprocess.Popen] = {}
        self.events: queue.Queue = queue.Queue()
        self.waiting: dict[tuple, set[int]] = {}      # barrier -> robots that asked
        self.decisions: list[dict] = []
        self.marks: list[dict] = []
        self.n_ops: int | None = None
        self.power = bench_report.PowerModel.from_config(cfg["power"], self.tb.cpu_fraction)
        self._closed = False

    def log(self, text: str) -> None:
        from tqdm import tqdm
        tqdm.write(f"[fleet] {text}", file=sys.stderr)

    def side(self, k: int) -> str:
        return self.tb.robots[k - 1]

    # ------------------------------------------------------------------ start / stop
    def start_edge(self) -> None:
        cfg, out, tb = self.cfg, self.out, self.tb
        netem.cleanup_stale(self.log)
        tb.setup()
        self.shape(cfg["bandwidths_mbps"][0])
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.robot_yaml, edge_yaml = write_run_params(cfg, out, edge_updates={"edge_node": {"max_robots": 0}})
        self.dds, self.envs = run_environments(cfg, tb)
        values = resolve_arguments("edge", {"params_file": str(edge_yaml), "dds_profile": str(self.dds["edge"]),
                                            "model": cfg["model"]})
        (spec, argv), = node_commands("edge", values)
        self._launch("edge", spec, self.pinned(tb.wrap(argv, "edge"), "edge"))
        self.log("started edge_node; waiting until it is up (it profiles itself first)")
        self.launches[-1].wait_for_output(r"edge_node: model ", node="edge_node", timeout=900)

    def start_robot(self, k: int) -> None:
        """Robot k's aggregator, robot_node and client in its namespace and cap (ROS namespace robotK)."""
        cfg, tb, side = self.cfg, self.tb, self.side(k)
        values = resolve_arguments("robot", {"params_file": str(self.robot_yaml), "model": cfg["model"],
                                             "dds_profile": str(self.dds["robot"]), "namespace": f"robot{k}"})
        cmds = sorted(node_commands("robot", values), key=lambda c: c[0].name != "aggregator_node")
        for spec, argv in cmds:
            self._launch(side, spec, self.pinned(tb.wrap(argv, side, "nodes"), side))
            if spec.name == "aggregator_node":
                self.launches[-1].wait_for_output(r"aggregator_node: model ", node=spec.name, timeout=900)
        fds = [os.open(tb.acct_file(g, side), os.O_RDONLY) for g in ("nodes", "client")]
        client_cfg = self.out / "params" / f"client{k}.json"
        client_cfg.write_text(json.dumps(dict(client_settings(cfg), namespace=f"/robot{k}",
                                              fleet={"robots": self.sizes, "robot": k}, nodes_fd=fds[0],
                                              client_fd=fds[1], dev=tb.dev[side])))
        argv = self.pinned(tb.wrap([sys.executable, "-m", "intradp_ros.tools.bench_client", str(client_cfg)], side,
                                   "client"), side)
        log = open(self.out / "logs" / f"client{k}.log", "w", encoding="utf-8")  # noqa: SIM115
        self.clients[k] = subprocess.Popen(argv, env=self.envs["robot"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=log, text=True, bufsize=1, pass_fds=fds,
                                           preexec_fn=die_with_parent)
        for fd in fds:
            os.close(fd)
        threading.Thread(target=self._read_client, args=(k, log), daemon=True, name=f"client{k} output").start()
        self.log(f"started robot {k} (namespace /robot{k}, netns {tb.ns[side]}); waiting until it is ready")

    def pinned(self, argv: list[str], side: str) -> list[str]:
        """``argv`` on the edge's core (core 0) or the robots' (the others), with the config's ``pin_cpus``: the
        robots' quarter cores add up to one core, and on one host their compute would otherwise take CPU from the
        edge, which in a real fleet is another machine."""
        cores = os.cpu_count() or 1
        if not self.cfg.get("pin_cpus") or cores < 2:
            return argv
        return ["taskset", "-c", "0" if side == "edge" else f"1-{cores - 1}", *argv]

    def _launch(self, side: str, spec, argv: list[str]) -> None:
        host = "edge" if side == "edge" else "robot"
        log_dir = self.out / "logs" / side
        log_dir.mkdir(parents=True, exist_ok=True)
        self.launches.append(Launch(host, [(spec, argv)], self.envs[host], echo=self.echo, log_dir=log_dir))

    def _read_client(self, k: int, log) -> None:
        for line in self.clients[k].stdout:
            try:
                self.events.put((k, json.loads(line)))
            except ValueError:
                log.write(line)
        self.events.put((k, None))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for c in self.clients.values():
            stop_process(c)
        for launch in reversed(self.launches):
            launch.stop(timeout=10.0)
        self.tb.close()

    # ------------------------------------------------------------------ during the run
    def shape(self, mbps: float) -> None:
        s = shape_links(self.tb, self.cfg, mbps)
        self.log(f"every robot's link shaped to {mbps:g} Mbit/s each way (tbf burst {s.burst_bytes} B)")

    def tell(self, robots, line: str) -> None:
        for k in robots:
            self.clients[k].stdin.write(line + "\n")
            self.clients[k].stdin.flush()

    def barrier(self, key: tuple, k: int, members: range) -> bool:
        """Robot k reached ``key``; True once every member has (the caller then acts and answers them all)."""
        got = self.waiting.setdefault(key, set())
        got.add(k)
        if got >= set(members):
            del self.waiting[key]
            return True
        return False

    def check_alive(self) -> None:
        for launch in self.launches:
            status = launch.poll()
            if status not in (None, 0) or any(c is not None for c in launch.returncodes().values()):
                tail = "\n".join(list(launch.lines)[-30:])
                raise RuntimeError(f"a {launch.host} node stopped (status {status}); last lines:\n{tail}")

    def drive(self, frames: csv.DictWriter, edge: csv.DictWriter, bar) -> None:
        """Start the robots one by one, then answer the clients until all are done."""
        self.start_edge()
        self.start_robot(1)
        everyone = range(1, self.n + 1)
        done: set[int] = set()
        last, idle_limit = time.monotonic(), float(self.cfg.get("startup_timeout_s", 900)) + 60
        while done != set(everyone):
            try:
                k, ev = self.events.get(timeout=0.5)
            except queue.Empty:
                k, ev = 0, {"event": "idle"}
            if ev is not None and ev["event"] == "idle":
                self.check_alive()
                if time.monotonic() - last > idle_limit:
                    raise RuntimeError(f"no progress for {idle_limit:.0f} s")
                continue
            last = time.monotonic()
            if ev is None:
                if k in done:
                    continue
                raise RuntimeError(f"bench client {k} exited ({self.clients[k].wait()}); see logs/client{k}.log")
            kind = ev.pop("event")
            members = range(1, ev.get("robots", self.n) + 1)
            if kind == "ready":
                self.log(f"robot {k} is ready")
                if k < self.n:
                    self.start_robot(k + 1)
            elif kind == "shape" and self.barrier(("shape", ev["mbps"]), k, everyone):
                self.shape(ev["mbps"])
                self.tell(everyone, "ok")
            elif kind == "mark" and self.barrier(("mark", *sorted(ev.items())), k, members):
                self.marks.append({**ev, "tbf": {m: self.tb.qdisc_stats(self.side(m)) for m in members}})
                if ev["phase"] == "start":
                    self.log(f"{ev['mbps']:g} Mbit/s, {len(members)} robot(s): {ev['strategy']} "
                             f"(round {ev['round'] + 1})")
                self.tell(members, "ok")
            elif kind == "measured" and self.barrier(("measured", *sorted(ev.items())), k, members):
                self.tell(members, "stop")
            elif kind == "decision":
                self.decisions.append(dict(ev, robot=k))
                if "local" in ev["baselines"]:
                    self.n_ops = Plan.parse(ev["baselines"]["local"][0]).seg_start
                self.log(f"robot {k} @ {ev['mbps']:g} Mbit/s (edge idle): planner chose {ev['reason']} "
                         f"({ev['predicted_ms']:.1f} ms predicted)")
            elif kind == "frame":
                row = bench_report.frame_row(self.cfg["model"], ev, self.power, self.n_ops)
                frames.writerow(dict(row, robots=ev["robots"], robot=k))
                bar.update(1)
                if not ev["ok"]:
                    self.log(f"robot {k}: frame lost ({ev['strategy']} @ {ev['mbps']:g} Mbit/s, {ev['image']})")
            elif kind == "edge":
                edge.writerow({"bandwidth_mbps": ev["mbps"], **{c: ev[c] for c in EDGE_COLUMNS[1:]}})
            elif kind in ("log", "error"):
                self.log(f"client {k}: {ev.get('text')}")
                if kind == "error":
                    raise RuntimeError(f"client {k}: {ev.get('text')}")
            elif kind == "done":
                done.add(k)


def run(cfg: dict, out: Path, sizes: list[int], echo: bool = False) -> int:
    """The fleet benchmark for fleet sizes ``sizes``; everything into ``out``. Returns the exit status."""
    import random

    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    cfg.setdefault("domain_id", random.randint(120, 229))
    meta = {"command": " ".join(["./intradp bench", *sys.argv[1:]]), "started": datetime.datetime.now().isoformat(),
            "machine": machine_info(), "config": cfg, "robots": sizes}
    runner = FleetRun(cfg, out, sizes, echo)
    atexit.register(runner.close)
    per_turn = int(cfg["warmup"]) + int(cfg["frames"])
    bar = tqdm(total=len(cfg["bandwidths_mbps"]) * len(cfg["strategies"]) * per_turn * sum(sizes),
               desc=f"fleet {cfg['model']}", unit="frame", file=sys.stderr, dynamic_ncols=True)
    status = 0
    with open(out / "frames.csv", "w", newline="", encoding="utf-8") as f, \
            open(out / "edge.csv", "w", newline="", encoding="utf-8") as g:
        frames, edge = csv.DictWriter(f, FLEET_COLUMNS, extrasaction="ignore"), csv.DictWriter(g, EDGE_COLUMNS)
        frames.writeheader()
        edge.writeheader()
        try:
            runner.drive(frames, edge, bar)
        except KeyboardInterrupt:
            runner.log("interrupted: cleaning up")
            status = 130
        except (RuntimeError, netem.NetemError, OSError) as e:
            runner.log(f"failed: {e}")
            status = 1
        finally:
            bar.close()
            runner.close()
            atexit.unregister(runner.close)
    meta.update(finished=datetime.datetime.now().isoformat(), decisions=runner.decisions, marks=runner.marks,
                testbed={"netns": runner.tb.ns, "veth": runner.tb.dev, "cpu_fraction": runner.tb.cpu_fraction})
    (out / "run.json").write_text(json.dumps(meta, indent=1, default=str))
    if status == 0:
        print(fleet_report.report(out, cfg, meta))
        print(f"\nresults: {out}/ (frames.csv, edge.csv, fleet_summary.md, fleet_p50.png, run.json, logs/)")
    return status
