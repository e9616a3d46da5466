"""What a fault scenario did, from the observer's events (:mod:`intradp_ros.tools.faults_observer`): pure
functions, so the table's rules are tested without running the scenarios.

A frame is named by robot_node's sequence number. robot_node numbers every camera frame it accepts, one after the
other, so the frames accepted in a window are the numbers between its counts (``frames_processed`` +
``frame_errors`` on /diagnostics) at the window's start and end, and a number with no detection is a frame with no
answer. A frame is answered in time when its detection came within its deadline: the rescue deadline of the plan
in force when it was taken (``rescue_deadline_factor`` x its prediction, at least ``rescue_deadline_min_s``) plus
the all-local prediction (a rescued frame is computed all-local after the deadline).
"""
from __future__ import annotations

import dataclasses
import statistics

__all__ = ["Row", "seq_at", "scenario_row", "prediction_error", "log_rate", "table"]


@dataclasses.dataclass(frozen=True)
class Row:
    scenario: str
    frames_in: int
    answered: int
    in_time: int
    max_latency_s: float
    stale_published: int          # results older than max_result_age_s, and second results of one frame
    recovery_s: float | None      # fault over -> first detection under a collaborative plan (None: not needed)
    note: str = ""


def _events(events, kind):
    return [e for e in events if e["ev"] == kind]


def seq_at(events, t: float) -> int:
    """robot_node's frames accepted by ``t`` (its last /diagnostics report at or before ``t``; 0 if none)."""
    last = 0
    for e in _events(events, "diag"):
        if e["node"] == "robot_node" and e["t"] <= t:
            v = e["values"]
            last = int(v.get("frames_processed", 0)) + int(v.get("frame_errors", 0))
    return last


def _plan_at(plans, t: float):
    before = [p for p in plans if p["t"] <= t]
    return before[-1] if before else None


def scenario_row(name: str, events, first_seq: int, last_seq: int, restored_t: float | None = None,
                 max_age_s: float = 5.0, factor: float = 4.0, min_s: float = 1.0, note: str = "") -> Row:
    """The row of frames ``first_seq..last_seq`` (robot_node's numbers); ``restored_t``: when the fault ended."""
    plans = _events(events, "plan")
    seqs = range(first_seq, last_seq + 1)
    dets: dict[int, list] = {}
    for e in _events(events, "det"):
        if first_seq <= e["seq"] <= last_seq:
            dets.setdefault(e["seq"], []).append(e)
    in_time = 0
    for ds in dets.values():
        d = ds[0]
        p = _plan_at(plans, d["stamp"])
        pred, local = (p["predicted_ms"], p["local_ms"]) if p else (0.0, 0.0)
        deadline_ms = max(min_s * 1e3, factor * pred) + local
        in_time += d["lat_ms"] <= deadline_ms
    lat = [e["lat_ms"] for ds in dets.values() for e in ds]
    stale = sum(x > max_age_s * 1e3 for x in lat) + sum(len(ds) - 1 for ds in dets.values())
    recovery = None
    if restored_t is not None:          # collaborative: any plan but all-local (PlanStatus names it among baselines)
        local = {p["local_spec"] for p in plans}
        back = [e["t"] for e in _events(events, "det") if e["t"] > restored_t and e["plan"] not in local]
        recovery = (min(back) - restored_t) if back else float("inf")
    return Row(name, len(seqs), len(dets), in_time, max(lat, default=0.0) / 1e3, stale, recovery, note)


def prediction_error(events, t0: float, t1: float) -> tuple[str, float, float] | None:
    """(plan, measured p50 ms, predicted ms) of the plan in force at ``t1``, over its detections in [t0, t1]."""
    p = _plan_at(_events(events, "plan"), t1)
    if p is None:
        return None
    lat = [e["lat_ms"] for e in _events(events, "det") if t0 <= e["t"] <= t1 and e["plan"] == p["plan"]]
    return (p["plan"], statistics.median(lat), p["predicted_ms"]) if lat else None


def log_rate(lines: list[str], t0: float, t1: float) -> int:
    """The most lines a node wrote in one second of [t0, t1] (ROS log lines: ``[LEVEL] [stamp] [node]: ...``)."""
    per_s: dict[int, int] = {}
    for line in lines:
        parts = line.split("] [", 2)
        if len(parts) < 2:
            continue
        try:
            t = float(parts[1].split("]")[0])
        except ValueError:
            continue
        if t0 <= t <= t1:
            per_s[int(t)] = per_s.get(int(t), 0) + 1
    return max(per_s.values(), default=0)


def table(rows: list[Row]) -> str:
    head = ("| scenario | frames in | answered | answered in time | max latency s | stale results published | "
            "recovery s | notes |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
    body = "".join(
        f"| {r.scenario} | {r.frames_in} | {r.answered} | {r.in_time} | {r.max_latency_s:.2f} | {r.stale_published} "
        f"| {'-' if r.recovery_s is None else 'never' if r.recovery_s == float('inf') else f'{r.recovery_s:.1f}'} "
        f"| {r.note} |\n" for r in rows)
    return head + body
