"""Cost model: the per-frame latency of a plan, predicted from the devices' profiles and a link model.

:func:`predict` replays a compiled plan as the executor runs it: the robot's ops and tiles in order, each
packet queued on the uplink (FIFO, bandwidth + per-message latency), the edge starting each tile when its
input chunk has landed, the gather, the edge's suffix, and outputs on the downlink. Tile costs come from the
exact rows each op computes (halos included), priced from per-op profiles.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from .graph import OpGraph
from .plan import CompiledPlan, Plan, TileWork, compile_plan
from .profile import DeviceProfile
from .rows import Segment

__all__ = ["LinkModel", "Prediction", "predict", "robot_compute_ms", "edge_compute_ms"]


@dataclasses.dataclass(frozen=True)
class LinkModel:
    bandwidth_mbps: float            # robot <-> edge, each direction
    latency_ms: float = 1.0          # one-way, per message
    send_ms_per_mb: float = 1.0      # sender CPU per MB on the wire (serialisation, publish)
    msg_ms: float = 0.0              # sender wall time per message (message building, middleware, syscalls)
    local_ms: float = 0.5            # robot -> aggregator on the robot's own host

    def wire_ms(self, nbytes: float) -> float:
        return nbytes * 8.0 / (self.bandwidth_mbps * 1e6) * 1e3 if self.bandwidth_mbps > 0 else float("inf")


@dataclasses.dataclass
class Prediction:
    plan: Plan
    name: str
    latency_ms: float
    robot_ms: float          # robot busy time (compute + encoding + sending)
    edge_ms: float
    bytes_up: float
    bytes_down: float


class _Pricer:
    """Byte sizes and compute costs of values and tile work on each side."""

    def __init__(self, graph: OpGraph, robot: DeviceProfile, edge: DeviceProfile):
        self.g, self.robot, self.edge = graph, robot, edge

    def row_bytes(self, name: str) -> float:
        g = self.g
        axis = g.value_row_axis(name)
        n = 1
        for s in g.value_shape(name):
            n *= s
        return n * 4.0 / (g.value_shape(name)[axis] if axis is not None else 1)

    def wire_bytes(self, name: str, rows: int, encoding: str) -> float:
        raw = self.row_bytes(name) * max(rows, 1)
        if name == self.g.input_name:
            return raw * (0.25 if encoding == "u8" else 1.0)
        k = self.g.index[name]
        return raw * self.robot.ratio.get(encoding, [1.0] * len(self.g.ops))[k]

    def raw_mb(self, name: str, rows: int) -> float:
        return self.row_bytes(name) * max(rows, 1) / 1e6

    def work_ms(self, prof: DeviceProfile, work: TileWork) -> float:
        g = self.g
        return sum(prof.compute_ms(g.index[name], hi - lo, g.by_name[name].height)
                   for name, (lo, hi) in work.compute.items())

    def ops_ms(self, prof: DeviceProfile, ks: Iterable[int]) -> float:
        return sum(prof.scale * prof.op_ms[k] for k in ks)

    def out_bytes(self, name: str, rows: int) -> float:
        axis = self.g.value_row_axis(name)
        h = self.g.value_shape(name)[axis] if axis is not None else 1
        return self.robot.output_bytes.get(name, self.row_bytes(name) * h) * max(rows, 1) / h


def predict(graph: OpGraph, plan: Plan | CompiledPlan, robot: DeviceProfile, edge: DeviceProfile,
            link: LinkModel) -> Prediction:
    """Predicted end-to-end latency of one frame under ``plan`` (camera frame in robot memory -> outputs at
    the aggregator)."""
    cp = plan if isinstance(plan, CompiledPlan) else compile_plan(graph, plan)
    plan, g, pr = cp.plan, graph, _Pricer(graph, robot, edge)
    enc = plan.encoding
    input_enc = "u8"
    up_free = 0.0            # uplink (robot -> edge) free at
    down_free = 0.0          # downlink (edge -> aggregator) free at
    bytes_up = bytes_down = 0.0
    t_r = pr.ops_ms(robot, cp.robot_ops)
    done = [t_r + link.local_ms] if any(g.producer_index(o) < plan.seg_start for o in g.outputs) else []

    def send_up(name: str, rows: int, e: str) -> float:
        nonlocal up_free, bytes_up, t_r
        nbytes = pr.wire_bytes(name, rows, e)
        t_r += robot.scale * (robot.encode_ms_per_mb[e] * pr.raw_mb(name, rows) + link.send_ms_per_mb * nbytes / 1e6)
        t_r += link.msg_ms
        start = max(up_free, t_r)
        up_free = start + link.wire_ms(nbytes)
        bytes_up += nbytes
        return up_free + link.latency_ms + edge.decode_ms_per_mb[e] * pr.raw_mb(name, rows)

    def send_down(ready: float, name: str, rows: int) -> float:
        nonlocal down_free, bytes_down
        nbytes = pr.out_bytes(name, rows)
        start = max(down_free, ready)
        down_free = start + link.wire_ms(nbytes)
        bytes_down += nbytes
        return down_free + link.latency_ms

    edge_busy = 0.0
    if cp.to_edge_whole:
        arrivals = []
        for name in cp.to_edge_whole:
            axis = g.value_row_axis(name)
            rows = g.value_shape(name)[axis] if axis is not None else 1
            arrivals.append(send_up(name, rows, input_enc if name == g.input_name else enc))
        edge_busy = pr.ops_ms(edge, cp.edge_ops)
        t_e = max(arrivals) + edge_busy
        for name in g.outputs:
            if g.producer_index(name) >= plan.seg_start:
                axis = g.value_row_axis(name)
                done.append(send_down(t_e, name, g.value_shape(name)[axis] if axis is not None else 1))
    elif cp.segment is not None:
        seg: Segment = cp.segment
        inp = seg.input
        chunk_arrival = [send_up(inp, hi - lo, input_enc if inp == g.input_name else enc)
                         for lo, hi in cp.edge_chunks]
        gathered_at = 0.0
        for work in cp.robot_work:
            t_r += pr.work_ms(robot, work)
            for name, (lo, hi) in work.targets.items():
                if hi <= lo:
                    continue
                if name in seg.gathered:
                    gathered_at = max(gathered_at, send_up(name, hi - lo, enc))
                if name in seg.emitted:
                    t_r += link.msg_ms
                    done.append(t_r + link.local_ms)
        t_e = 0.0
        for j, work in enumerate(cp.edge_work):
            n = cp.chunks_needed[j]
            ready = chunk_arrival[n - 1] if n else 0.0
            dt = pr.work_ms(edge, work)
            edge_busy += dt
            t_e = max(t_e, ready) + dt
            for name, (lo, hi) in work.targets.items():
                if name in seg.emitted and hi > lo:
                    done.append(send_down(t_e, name, hi - lo))
        if plan.seg_end < len(g.ops):
            suffix = pr.ops_ms(edge, cp.edge_ops)
            edge_busy += suffix
            t_s = max(t_e, gathered_at) + suffix
            for name in g.outputs:
                if g.producer_index(name) >= plan.seg_end:
                    axis = g.value_row_axis(name)
                    done.append(send_down(t_s, name, g.value_shape(name)[axis] if axis is not None else 1))
    latency = max(done) if done else t_r
    return Prediction(plan, plan.describe(g), latency, t_r, edge_busy, bytes_up, bytes_down)


def robot_compute_ms(graph: OpGraph, plan: Plan | CompiledPlan, robot: DeviceProfile) -> tuple[float, float]:
    """Predicted robot compute of one frame under ``plan`` (no sending), as (whole-tensor ops, row tiles): what
    ``RobotWorker.run_frame`` measures (``last_whole_ms``, ``last_tiles_ms``), so the profile can be re-calibrated."""
    cp = plan if isinstance(plan, CompiledPlan) else compile_plan(graph, plan)
    pr = _Pricer(graph, robot, robot)
    return pr.ops_ms(robot, cp.robot_ops), sum(pr.work_ms(robot, w) for w in cp.robot_work)


def edge_compute_ms(graph: OpGraph, plan: Plan | CompiledPlan, edge: DeviceProfile) -> float:
    """Predicted edge compute of one frame under ``plan`` (tiles and suffix): what FrameTiming.edge_compute_ms
    reports."""
    cp = plan if isinstance(plan, CompiledPlan) else compile_plan(graph, plan)
    pr = _Pricer(graph, edge, edge)
    return pr.ops_ms(edge, cp.edge_ops) + sum(pr.work_ms(edge, w) for w in cp.edge_work)
