"""Planner report: predicted per-frame latency of every strategy across a bandwidth sweep.

    ./intradp plan-report --model yolov3_tiny --bandwidths 5,10,25,50,100,200,500

Profiles are measured here (cached): the robot on ``--robot-threads`` threads with its times multiplied by
``--robot-slowdown`` (a robot computer is several times slower than a workstation core), the edge on
``--edge-threads`` threads, or taken from JSON profiles recorded on the real devices (``--robot-profile``,
``--edge-profile``: the files robot_node and edge_node cache in ``profile_cache_dir``, e.g. a CPU-capped robot's
from ``./intradp bench`` and a GPU edge's).

    ./intradp plan-report --robot-profile bench_results/X/profiles/robot-q2500-p10000/<key>-cpu-t1.json \
        --edge-profile ~/.cache/intradp_ros/<key>-cuda0-t16.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from intradp_ros.engine.cost import LinkModel
from intradp_ros.engine.profile import DeviceProfile
from intradp_ros.engine.profiler import load_or_profile
from intradp_ros.engine.search import Problem, SearchOptions, choose
from intradp_ros.runtime import ModelConfig, ModelRuntime


def _profile(m: ModelRuntime, threads: int) -> DeviceProfile:
    torch.set_num_threads(threads)
    return load_or_profile(m.graph, m.profile_input(), output_fn=m.task.output_fn, log=lambda s: print("#", s))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov3_tiny")
    ap.add_argument("--input-size", type=int, default=0)
    ap.add_argument("--bandwidths", default="5,10,25,50,100,200,500", help="Mbit/s, comma separated")
    ap.add_argument("--latency-ms", type=float, default=1.0, help="one-way per-message latency")
    ap.add_argument("--encodings", default="raw,lz4")
    ap.add_argument("--min-split-gain", type=float, default=0.05, help="as robot_node's min_split_gain")
    ap.add_argument("--robot-threads", type=int, default=1)
    ap.add_argument("--robot-slowdown", type=float, default=4.0)
    ap.add_argument("--edge-threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--robot-profile", type=Path, help="DeviceProfile JSON measured on the robot (no slowdown applied)")
    ap.add_argument("--edge-profile", type=Path, help="DeviceProfile JSON measured on the edge")
    ap.add_argument("--ops", action="store_true", help="list the captured ops (local or barrier, and why) and stop")
    a = ap.parse_args(argv)

    try:   # trained weights matter: a detector's output size (box candidates) depends on them
        m = ModelRuntime(ModelConfig(model=a.model, input_size=a.input_size))
    except FileNotFoundError as e:
        print(f"# {e}\n# planning with random weights instead")
        m = ModelRuntime(ModelConfig(model=a.model, input_size=a.input_size), load_weights=False)
    if a.ops:     # what capture made of the model: op numbers as plans and plan descriptions count them (from 1)
        print(f"# model {a.model} @ {m.size}px: {len(m.graph.ops)} ops, "
              f"{sum(op.local for op in m.graph.ops)} local (split by rows); a barrier runs whole on one side")
        for op in m.graph.ops:
            kind = "local  " if op.local else "barrier"
            print(f"{op.index + 1:4d} {kind} {op.name:28s} {tuple(op.shape)} {op.reason}")
        return 0
    loaded = {}
    for side, path in (("robot", a.robot_profile), ("edge", a.edge_profile)):
        if path:
            loaded[side] = DeviceProfile.from_json(path.read_text())
            if loaded[side].key != m.graph.key:
                print(f"# {path} is a profile of another model, weights or input size ({loaded[side].key}, "
                      f"this one {m.graph.key})", file=sys.stderr)
                return 2
    robot = loaded.get("robot") or _profile(m, a.robot_threads).scaled(a.robot_slowdown)
    edge = loaded.get("edge") or _profile(m, a.edge_threads)
    a.robot_threads, a.robot_slowdown = (robot.threads, 1.0) if "robot" in loaded else (a.robot_threads,
                                                                                        a.robot_slowdown)
    encs = [e for e in a.encodings.split(",") if e]
    n = len(m.graph.ops)
    print(f"# model {a.model} @ {m.size}px, {n} ops ({sum(op.local for op in m.graph.ops)} local); robot "
          f"{sum(robot.op_ms) * robot.scale:.1f} ms whole ({a.robot_threads} thread(s) x{a.robot_slowdown:g}), edge "
          f"{sum(edge.op_ms) * edge.scale:.1f} ms on {edge.device}; latency {a.latency_ms} ms/message; "
          f"encodings {encs}")
    print("| Mbit/s | all-local ms | all-offload ms | best cut ms | best split ms | Intra-DP (chosen) ms "
          "| vs best baseline | chosen plan |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    worse = 0
    options = SearchOptions(encodings=tuple(encs), min_split_gain=a.min_split_gain)
    for bw in [float(b) for b in a.bandwidths.split(",") if b]:
        d = choose(Problem(m.graph, a.model, robot, edge, LinkModel(bw, a.latency_ms)), options)
        b = d.baselines
        best = min(p.latency_ms for p in b.values())
        split = f"{d.best_split.latency_ms:.1f}" if d.best_split else "-"
        worse += d.chosen.latency_ms > best + 1e-9
        print(f"| {bw:g} | {b['local'].latency_ms:.1f} | {b['offload'].latency_ms:.1f} | "
              f"{b['best-cut'].latency_ms:.1f} | {split} | {d.chosen.latency_ms:.1f} | "
              f"{d.chosen.latency_ms / best:.2f}x | {d.chosen.name} `{d.chosen.plan.spec()}` |")
    print(f"# Intra-DP above the best baseline at {worse} bandwidth(s)")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
