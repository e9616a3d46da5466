"""Per-thread CPU of running node processes: where a robot's milliseconds go (`./intradp thread-cpu`).

    ./intradp thread-cpu robot_node aggregator_node --seconds 30 --fps 7.1

Reads utime/stime of every thread in /proc/<pid>/task twice, ``--seconds`` apart, and prints each thread's CPU
in ms per second, or in ms per frame with ``--fps`` (frames per second over the same window: a bench's progress
bar says it), with its wake-ups (voluntary context switches) in the same unit: under Python every wake-up of a
thread waiting on the middleware costs a fixed share of a millisecond, so a thread's CPU is often its wake-ups.
The nodes name their threads (infer, send, rx camera, rx rx, aggregate, ...; DDS's own are dds.*), so the table
reads as the pipeline. For the functions inside a thread, sample it with py-spy (PyPI):
``py-spy record --pid <pid> --threads --format raw --duration 25``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time

__all__ = ["thread_times", "thread_wakes", "main"]


def thread_times(pid: int) -> dict[int, tuple[str, int, int]]:
    """tid -> (name, user ticks, system ticks) of every thread of ``pid`` now."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue                                     # the thread ended meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (name, int(fields[11]), int(fields[12]))
    return out


def thread_wakes(pid: int) -> dict[int, int]:
    """tid -> voluntary context switches so far (each one a wait that ended: a wake-up)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                out[int(tid)] = next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt"))
        except (OSError, StopIteration, ValueError):
            continue
    return out


def _pids(pattern: str) -> list[int]:
    got = subprocess.run(["pgrep", "-f", f"lib/intradp_ros/{pattern}( |$)"], capture_output=True, text=True).stdout
    return [int(p) for p in got.split()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("nodes", nargs="+", help="node executables (robot_node, aggregator_node, ...) or pids")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--fps", type=float, default=0.0, help="frames per second in the window: print ms per frame")
    a = ap.parse_args(argv)
    pids = [(n, p) for n in a.nodes for p in ([int(n)] if n.isdigit() else _pids(n))]
    if not pids:
        print(f"no running process of {', '.join(a.nodes)}: start the nodes (or a bench) first")
        return 1
    before = {p: thread_times(p) for _, p in pids}
    wakes0 = {p: thread_wakes(p) for _, p in pids}
    time.sleep(a.seconds)
    unit = "ms/frame" if a.fps > 0 else "ms/s"
    per = 1.0 / a.seconds / (a.fps if a.fps > 0 else 1.0)       # counts -> per frame (or per second)
    scale = 1e3 / os.sysconf("SC_CLK_TCK") * per                 # clock ticks -> ms per frame (or per second)
    for node, pid in pids:
        rows, wakes = [], thread_wakes(pid)
        for tid, (name, user, system) in thread_times(pid).items():
            _, u0, s0 = before[pid].get(tid, (name, 0, 0))
            woke = (wakes.get(tid, 0) - wakes0[pid].get(tid, 0)) * per
            if user - u0 + system - s0 or woke:
                rows.append(((user - u0 + system - s0) * scale, (user - u0) * scale, (system - s0) * scale, woke,
                             name))
        print(f"{node} (pid {pid}): {sum(r[0] for r in rows):.2f} {unit}, {sum(r[3] for r in rows):.1f} wake-ups")
        for total, user, system, woke, name in sorted(rows, reverse=True):
            print(f"    {name:16s} {total:6.2f} {unit}  (user {user:.2f}, system {system:.2f})  {woke:5.1f} wake-ups")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
