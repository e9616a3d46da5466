"""Cost model and plan search: the lowest per-frame latency (measured where measured, else predicted), never above
the best baseline.

:func:`predict` replays a compiled plan as the executor runs it: the robot's ops and tiles in order, each
packet queued on the uplink (FIFO, bandwidth + per-message latency), the edge starting each tile when its
input chunk has landed, the gather, the edge's suffix, and outputs on the downlink. Tile costs come from the
exact rows each op computes (halos included), priced from per-op profiles.

:func:`choose` searches robot prefix / split segment / split row / tiles per side / encoding, and compares the
winner with all-local, all-offload and every layer-wise cut through the same model.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

from .graph import OpGraph
from .plan import CompiledPlan, Plan, PlanError, TileWork, compile_plan
from .profiler import DeviceProfile
from .rows import Segment

__all__ = ["LinkModel", "Prediction", "Decision", "predict", "choose", "family", "with_split_extra", "split_points",
           "robot_compute_ms", "edge_compute_ms"]


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


@dataclasses.dataclass
class Decision:
    chosen: Prediction
    baselines: dict[str, Prediction]    # "local", "offload", "best-cut"
    considered: int
    best_split: Prediction | None = None   # best plan with a split segment, even when a baseline wins
    shortlist: list[Plan] = dataclasses.field(default_factory=list)   # the best split plans, best first: a
                                           # re-plan for new cost estimates re-prices these instead of searching

    def report(self) -> str:
        lines = [f"chosen: {self.chosen.name} -> {self.chosen.latency_ms:.1f} ms  [{self.chosen.plan.spec()}]"]
        for k, p in self.baselines.items():
            lines.append(f"  {k:9s} {p.latency_ms:9.1f} ms  {p.name}")
        return "\n".join(lines)


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
    done = [t_r + link.local_ms] if any(g.producer_index(o) < plan.k1 for o in g.outputs) else []

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
            if g.producer_index(name) >= plan.k1:
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
        if plan.k2 < len(g.ops):
            suffix = pr.ops_ms(edge, cp.edge_ops)
            edge_busy += suffix
            t_s = max(t_e, gathered_at) + suffix
            for name in g.outputs:
                if g.producer_index(name) >= plan.k2:
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


def split_points(graph: OpGraph) -> tuple[list[int], dict[int, list[int]]]:
    """Valid segment starts (one spatial value live) and, for each, valid ends within its local run."""
    n = len(graph.ops)
    starts = [k for k in range(n) if graph.ops[k].local and len(graph.live_after(k)) == 1
              and graph.value_row_axis(graph.live_after(k)[0]) is not None]
    ends: dict[int, list[int]] = {}
    for k1 in starts:
        run_end = k1
        while run_end < n and graph.ops[run_end].local:
            run_end += 1
        cands = []
        for k2 in range(k1 + 1, run_end + 1):
            live = graph.live_after(k2)
            if all(graph.producer_index(v) >= k1 for v in live) and (live or k2 == n or any(
                    k1 <= graph.producer_index(o) < k2 for o in graph.outputs)):
                cands.append(k2)
        ends[k1] = cands
    return starts, ends


def _tile_options(grid_rows: int) -> list[tuple[int, int]]:
    opts = [(1, 1), (2, 2), (4, 2), (2, 4), (4, 4), (8, 4), (4, 8), (8, 8)]
    return [o for o in opts if max(o) <= max(1, grid_rows)] or [(1, 1)]


def choose(graph: OpGraph, model: str, robot: DeviceProfile, edge: DeviceProfile, link: LinkModel,
           encodings: Iterable[str] = ("raw",), max_pairs: int = 12, max_refine: int = 8,
           search: bool = True, min_split_gain: float = 0.0, shortlist: Sequence[Plan] | None = None,
           keep: int = 16, split_extra_ms: float = 0.0, measured: Mapping[str, float] | None = None,
           family_extra_ms: Mapping[tuple, float] | None = None) -> Decision:
    """Search plans; returns the chosen plan and the baselines' predictions.

    Never returns a plan predicted slower than the best baseline: the baselines are candidates too. A split plan
    is chosen only when predicted at least ``min_split_gain`` (a fraction) faster than the best baseline: its
    prediction errs more (every extra message costs the robot and the edge CPU the model prices only in part),
    so a marginal predicted gain is a coin toss that a simpler plan does not need.
    ``search=False`` only prices the baselines (for a plan fixed by the user). ``shortlist``: price these split
    plans (a previous decision's ``shortlist``) instead of searching, ~30x cheaper; right when only cost estimates
    moved a little since that search, and the link did not. ``keep``: how many split plans the decision lists.
    ``split_extra_ms``: added to every split plan's prediction (what split plans measured beyond their predictions
    on this system, learned by the robot), before the comparison with the baselines.
    ``measured``: plan text -> latency measured on this link (same terms as a prediction). A measured plan is
    compared by what it measured, not by its prediction: the model's error differs from plan to plan (a split
    streaming the input in 8 chunks and one that also computes rows on the robot miss by 30 and 100+ ms on the
    quarter-core bench, all-offload by 5), so a split that measured faster than all-offload must not lose to
    all-offload's prediction. Measured split plans are candidates even when the search would not reach them. The
    returned predictions stay the model's (they are what the measurement is checked against).
    ``family_extra_ms``: :func:`family` -> what that family's measured plans measured beyond their predictions;
    used for its plans instead of ``split_extra_ms`` (other tile counts or encodings of a measured segment err
    alike, so they must not look better than it by prediction alone).
    """
    measured = measured or {}
    encodings = list(encodings)
    n = len(graph.ops)
    cache: dict[str, Prediction] = {}

    def pred(plan: Plan) -> Prediction | None:
        s = plan.spec()
        if s not in cache:
            try:
                cache[s] = predict(graph, plan, robot, edge, link)
            except PlanError:
                return None
        return cache[s]

    local = pred(Plan.local(graph, model))
    offload = min((pred(Plan.offload(graph, model, e)) for e in encodings), key=lambda p: p.latency_ms)
    cuts = [p for k in range(1, n) for e in encodings
            if (p := pred(Plan.cut(graph, model, k, e))) is not None]
    best_cut = min(cuts, key=lambda p: p.latency_ms) if cuts else offload
    baselines = {"local": local, "offload": offload, "best-cut": best_cut}

    def price(p: Prediction) -> float:       # what the choice compares: measured where it was, else predicted
        return measured.get(p.plan.spec(), p.latency_ms)

    best = min(baselines.values(), key=price)
    if not search:
        return Decision(best, baselines, len(cache))

    if shortlist is not None:
        for plan in shortlist:
            pred(plan)
    else:
        _search(graph, model, encodings, pred, max_pairs, max_refine)
    for spec in measured:
        try:
            plan = Plan.parse(spec)
        except PlanError:
            continue
        if plan.is_split and plan.model == model and (plan.height, plan.width) == tuple(graph.input_shape[2:]):
            pred(plan)
    # a split where the edge does nothing (the robot computes every row and no suffix is left) is all-local in
    # tiles: the same compute plus messages, never faster, but priced with another calibration than all-local's
    # own measured one it can look so (on the bench such plans were chosen and ran 5-10 % slower, one after another)
    splits = [with_split_extra(p, split_extra_ms, family_extra_ms) for p in cache.values()
              if p.plan.is_split and (p.edge_ms > 0.0 or p.bytes_up > 0.0)]
    splits.sort(key=price)
    best_split = splits[0] if splits else None
    if best_split is not None and price(best_split) < (1.0 - min_split_gain) * price(best):
        best = best_split
    return Decision(best, baselines, len(cache), best_split, _shortlist(splits, keep))


def family(plan: Plan) -> tuple[int, int, bool]:
    """Split plans whose predictions err alike: one segment, with or without robot rows (the robot's tiles run on
    its own, maybe capped, CPU while it sends; streaming plans only send)."""
    return plan.k1, plan.k2, plan.split > 0


def with_split_extra(p: Prediction, split_extra_ms: float, family_extra_ms: Mapping[tuple, float] | None) -> Prediction:
    """A split plan's prediction as :func:`choose` compares it: plus its family's measured excess where known, else
    plus ``split_extra_ms``."""
    return dataclasses.replace(p, latency_ms=p.latency_ms + (family_extra_ms or {}).get(family(p.plan), split_extra_ms))


def _shortlist(splits: list[Prediction], keep: int) -> list[Plan]:
    """The best ``keep`` split plans (sorted), half of them the best of distinct (segment, split row)s: when
    calibration moves, the best plan moves to a neighbouring robot share more often than to other tile counts."""
    top = [p.plan for p in splits[:keep - keep // 2]]
    seen = {(p.k1, p.k2, p.split) for p in top}
    for p in splits:
        if len(top) >= keep:
            break
        if (p.plan.k1, p.plan.k2, p.plan.split) not in seen:
            seen.add((p.plan.k1, p.plan.k2, p.plan.split))
            top.append(p.plan)
    return top


def _search(graph: OpGraph, model: str, encodings: list[str], pred, max_pairs: int, max_refine: int) -> None:
    """Price split plans through ``pred`` (which caches every prediction): a coarse pass ranks segments by a
    prediction at a few splits with 4x4 tiles, a fine pass refines the best."""
    starts, ends = split_points(graph)
    pairs = []
    for k1 in starts:
        for k2 in _thin(ends[k1], 6):
            grid = Segment(graph, k1, k2).grid
            coarse = [p for f in (0.25, 0.5, 0.75) if (p := pred(Plan(model, *graph.input_shape[2:], k1, k2,
                                                                   round(f * grid), 4, 4, encodings[0])))]
            if coarse:
                pairs.append((min(c.latency_ms for c in coarse), k1, k2, grid))
    pairs.sort()
    # Fine pass in two steps, so that a CPU-capped robot re-plans in well under a second: every split row of
    # the best segments with 4x4 tiles, then every tile count and encoding around the best (segment, split)s.
    rows = []
    for _, k1, k2, grid in pairs[:max_pairs]:
        for split in sorted(set(round(f * grid) for f in [i / 10 for i in range(11)])):
            rt, et = (1 if split == 0 else min(4, grid)), (1 if split == grid else min(4, grid))
            if (p := pred(Plan(model, *graph.input_shape[2:], k1, k2, split, rt, et, encodings[0]))) is not None:
                rows.append((p.latency_ms, k1, k2, split, grid))
    rows.sort()
    for _, k1, k2, split, grid in rows[:max_refine]:
        for rt, et in _tile_options(grid):
            rt, et = (1 if split == 0 else rt), (1 if split == grid else et)   # an empty side has one tile
            for e in encodings:
                pred(Plan(model, *graph.input_shape[2:], k1, k2, split, rt, et, e))


def _thin(xs: list[int], k: int) -> list[int]:
    """At most k items of xs, evenly spread, always keeping the last (longest segment)."""
    if len(xs) <= k:
        return xs
    step = (len(xs) - 1) / (k - 1)
    return sorted(set(xs[round(i * step)] for i in range(k)))
