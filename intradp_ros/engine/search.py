"""Plan search: the lowest per-frame latency (measured where measured, else predicted), never above the best
baseline.

:func:`choose` searches robot prefix / split segment / robot rows / tiles per side / encoding, priced by
:func:`~intradp_ros.engine.cost.predict`, and compares the winner with all-local, all-offload and every layer-wise
cut through the same model.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, NamedTuple, Sequence

from .cost import LinkModel, Prediction, predict
from .graph import OpGraph
from .plan import Plan, PlanError
from .profile import DeviceProfile
from .rows import Segment

__all__ = ["Decision", "Evidence", "Family", "Problem", "SearchOptions", "choose", "family", "split_points",
           "with_split_extra"]


class Family(NamedTuple):
    """Split plans whose predictions err alike (see :func:`family`)."""
    seg_start: int
    seg_end: int
    robot_rows: bool               # the robot computes some rows of the segment (plan.robot_rows > 0)


@dataclasses.dataclass(frozen=True)
class Problem:
    """What is priced: one model's graph on this robot, edge and link."""
    graph: OpGraph
    model: str                     # the model name plans carry
    robot: DeviceProfile
    edge: DeviceProfile
    link: LinkModel


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """How to search."""
    encodings: tuple[str, ...] = ("raw",)   # for intermediate tensors; the first prices the coarse passes
    # A split plan is chosen only when at least this fraction faster than the best baseline: its prediction errs
    # more (every extra message costs the robot and the edge CPU the model prices only in part), so a marginal
    # predicted gain is a coin toss that a simpler plan does not need.
    min_split_gain: float = 0.0
    max_pairs: int = 12            # segments whose every robot share is priced (the best of the coarse pass)
    max_refine: int = 8            # (segment, robot rows) whose every tile count and encoding is priced
    keep: int = 16                 # split plans the decision lists in its shortlist


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What this link measured, so the choice does not rest on predictions alone."""
    # Plan text -> latency measured on this link, in the terms of a prediction. A measured plan is compared by
    # what it measured: the model's error differs from plan to plan (a split streaming the input in 8 chunks and
    # one that also computes rows on the robot miss by 30 and 100+ ms on the quarter-core bench, all-offload by
    # 5), so a split that measured faster than all-offload must not lose to all-offload's prediction. Measured
    # split plans are candidates even where the search would not reach them. Returned predictions stay the
    # model's (they are what the measurements are checked against).
    measured: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # Added to every split plan's prediction before the comparison with the baselines: what split plans measured
    # beyond their predictions on this system (learned by the robot).
    split_extra_ms: float = 0.0
    # Per family, what its measured plans measured beyond their predictions: used for its plans instead of
    # split_extra_ms (other tile counts or encodings of a measured segment err alike, so they must not look
    # better than it by prediction alone).
    family_extra_ms: Mapping[Family, float] = dataclasses.field(default_factory=dict)


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


def split_points(graph: OpGraph) -> tuple[list[int], dict[int, list[int]]]:
    """Valid segment starts (one spatial value live) and, for each, valid ends within its local run."""
    n = len(graph.ops)
    starts = [k for k in range(n) if graph.ops[k].local and len(graph.live_after(k)) == 1
              and graph.value_row_axis(graph.live_after(k)[0]) is not None]
    ends: dict[int, list[int]] = {}
    for start in starts:
        run_end = start
        while run_end < n and graph.ops[run_end].local:
            run_end += 1
        cands = []
        for end in range(start + 1, run_end + 1):
            live = graph.live_after(end)
            if all(graph.producer_index(v) >= start for v in live) and (live or end == n or any(
                    start <= graph.producer_index(o) < end for o in graph.outputs)):
                cands.append(end)
        ends[start] = cands
    return starts, ends


def _tile_options(grid_rows: int) -> list[tuple[int, int]]:
    opts = [(1, 1), (2, 2), (4, 2), (2, 4), (4, 4), (8, 4), (4, 8), (8, 8)]
    return [o for o in opts if max(o) <= max(1, grid_rows)] or [(1, 1)]


def choose(problem: Problem, options: SearchOptions = SearchOptions(), evidence: Evidence = Evidence(), *,
           shortlist: Sequence[Plan] | None = None, baselines_only: bool = False) -> Decision:
    """Search plans; returns the chosen plan and the baselines' predictions.

    Never returns a plan predicted slower than the best baseline: the baselines are candidates too.
    ``baselines_only`` prices only the baselines (for a plan fixed by the user). ``shortlist``: price these split
    plans (a previous decision's ``shortlist``) instead of searching, ~30x cheaper; right when only cost estimates
    moved a little since that search, and the link did not.
    """
    graph, model, measured = problem.graph, problem.model, evidence.measured
    encodings = list(options.encodings)
    n = len(graph.ops)
    cache: dict[str, Prediction] = {}

    def pred(plan: Plan) -> Prediction | None:
        s = plan.spec()
        if s not in cache:
            try:
                cache[s] = predict(graph, plan, problem.robot, problem.edge, problem.link)
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
    if baselines_only:
        return Decision(best, baselines, len(cache))

    if shortlist is not None:
        for plan in shortlist:
            pred(plan)
    else:
        _search(problem, options, pred)
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
    splits = [with_split_extra(p, evidence) for p in cache.values()
              if p.plan.is_split and (p.edge_ms > 0.0 or p.bytes_up > 0.0)]
    splits.sort(key=price)
    best_split = splits[0] if splits else None
    if best_split is not None and price(best_split) < (1.0 - options.min_split_gain) * price(best):
        best = best_split
    return Decision(best, baselines, len(cache), best_split, _shortlist(splits, options.keep))


def family(plan: Plan) -> Family:
    """Split plans whose predictions err alike: one segment, with or without robot rows (the robot's tiles run on
    its own, maybe capped, CPU while it sends; streaming plans only send)."""
    return Family(plan.seg_start, plan.seg_end, plan.robot_rows > 0)


def with_split_extra(p: Prediction, evidence: Evidence) -> Prediction:
    """A split plan's prediction as :func:`choose` compares it: plus its family's measured excess where known, else
    plus ``evidence.split_extra_ms``."""
    extra = evidence.family_extra_ms.get(family(p.plan), evidence.split_extra_ms)
    return dataclasses.replace(p, latency_ms=p.latency_ms + extra)


def _shortlist(splits: list[Prediction], keep: int) -> list[Plan]:
    """The best ``keep`` split plans (sorted), half of them the best of distinct (segment, robot rows): when
    calibration moves, the best plan moves to a neighbouring robot share more often than to other tile counts."""
    top = [p.plan for p in splits[:keep - keep // 2]]
    seen = {(p.seg_start, p.seg_end, p.robot_rows) for p in top}
    for p in splits:
        if len(top) >= keep:
            break
        key = (p.plan.seg_start, p.plan.seg_end, p.plan.robot_rows)
        if key not in seen:
            seen.add(key)
            top.append(p.plan)
    return top


def _search(problem: Problem, options: SearchOptions, pred: Callable[[Plan], Prediction | None]) -> None:
    """Price split plans through ``pred`` (which caches every prediction): a coarse pass ranks segments by a
    prediction at a few robot shares with 4x4 tiles, a fine pass refines the best."""
    graph, model, encodings = problem.graph, problem.model, options.encodings
    size = graph.input_shape[2:]
    starts, ends = split_points(graph)
    pairs = []
    for start in starts:
        for end in _thin(ends[start], 6):
            grid = Segment(graph, start, end).grid
            coarse = [p for f in (0.25, 0.5, 0.75)
                      if (p := pred(Plan(model, *size, start, end, round(f * grid), 4, 4, encodings[0])))]
            if coarse:
                pairs.append((min(c.latency_ms for c in coarse), start, end, grid))
    pairs.sort()
    # Fine pass in two steps, so that a CPU-capped robot re-plans in well under a second: every robot share of
    # the best segments with 4x4 tiles, then every tile count and encoding around the best (segment, rows)s.
    shares = []
    for _, start, end, grid in pairs[:options.max_pairs]:
        for rows in sorted(set(round(f * grid) for f in [i / 10 for i in range(11)])):
            rt, et = (1 if rows == 0 else min(4, grid)), (1 if rows == grid else min(4, grid))
            if (p := pred(Plan(model, *size, start, end, rows, rt, et, encodings[0]))) is not None:
                shares.append((p.latency_ms, start, end, rows, grid))
    shares.sort()
    for _, start, end, rows, grid in shares[:options.max_refine]:
        for rt, et in _tile_options(grid):
            rt, et = (1 if rows == 0 else rt), (1 if rows == grid else et)   # an empty side has one tile
            for e in encodings:
                pred(Plan(model, *size, start, end, rows, rt, et, e))


def _thin(xs: list[int], k: int) -> list[int]:
    """At most k items of xs, evenly spread, always keeping the last (longest segment)."""
    if len(xs) <= k:
        return xs
    step = (len(xs) - 1) / (k - 1)
    return sorted(set(xs[round(i * step)] for i in range(k)))
