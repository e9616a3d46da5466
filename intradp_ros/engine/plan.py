"""Plans: who computes what. One family covers Intra-DP and every baseline, so all run through one executor.

A plan is ``robot prefix -> split segment -> edge suffix``:

- ops [0, seg_start) run whole on the robot;
- ops [seg_start, seg_end) (local operators only) are split by rows: the robot computes grid rows
  [0, robot_rows) in ``robot_tiles`` tiles, the edge computes [robot_rows, grid) in ``edge_tiles`` tiles, the
  edge's input rows travel in ``edge_tiles`` chunks so the edge starts on its first tile while the rest is in
  flight;
- ops [seg_end, N) run whole on the edge, after the segment's outputs are gathered there (a switch point).

All-local is ``seg_start = seg_end = N``, all-offload ``seg_start = seg_end = 0``, a layer-wise cut
(Neurosurgeon/DADS) ``seg_start = seg_end = c``.
Graph outputs go to the aggregator from whichever side produces them (row tiles from a split segment).
The compact text form (:meth:`Plan.spec`) travels in every tile, so robot, edge and aggregator always agree.
"""
from __future__ import annotations

import dataclasses
import re
import threading
import zlib

from .codec import ENCODINGS
from .graph import OpGraph
from .rows import Interval, Segment, backprop, new_rows

__all__ = ["Plan", "PlanError", "CompiledPlan", "TileWork", "compile_plan"]


_CACHE_LOCK = threading.Lock()


class PlanError(ValueError):
    """A plan that cannot run on this graph, or a plan text that does not parse."""


_SPEC = re.compile(r"^(?P<model>[A-Za-z0-9_.:-]+)@(?P<h>\d+)x(?P<w>\d+)\|(?P<seg_start>\d+)\|(?P<seg_end>\d+)\|"
                   r"(?P<robot_rows>\d+)\|(?P<rt>\d+)x(?P<et>\d+)\|(?P<enc>[a-z0-9]+)$")


@dataclasses.dataclass(frozen=True)
class Plan:
    model: str
    height: int              # network input size
    width: int
    seg_start: int           # robot runs ops [0, seg_start) whole
    seg_end: int             # ops [seg_start, seg_end) split by rows; [seg_end, N) on the edge
    robot_rows: int = 0      # robot's grid rows of the segment: [0, robot_rows)
    robot_tiles: int = 1
    edge_tiles: int = 1
    encoding: str = "raw"    # for intermediate tensors (the raw input always travels as u8)

    def spec(self) -> str:
        return (f"{self.model}@{self.height}x{self.width}|{self.seg_start}|{self.seg_end}|{self.robot_rows}|"
                f"{self.robot_tiles}x{self.edge_tiles}|{self.encoding}")

    @property
    def plan_id(self) -> int:
        return zlib.crc32(self.spec().encode())

    @classmethod
    def parse(cls, spec: str) -> "Plan":
        m = _SPEC.match(spec or "")
        if not m:
            raise PlanError(f"plan text {spec!r} does not parse "
                            "(expected model@HxW|seg_start|seg_end|robot_rows|RxE|encoding)")
        g = m.groupdict()
        return cls(g["model"], int(g["h"]), int(g["w"]), int(g["seg_start"]), int(g["seg_end"]),
                   int(g["robot_rows"]), int(g["rt"]), int(g["et"]), g["enc"])

    @classmethod
    def local(cls, graph: OpGraph, model: str) -> "Plan":
        n = len(graph.ops)
        return cls(model, *graph.input_shape[2:], n, n)

    @classmethod
    def offload(cls, graph: OpGraph, model: str, encoding: str = "raw") -> "Plan":
        return cls(model, *graph.input_shape[2:], 0, 0, encoding=encoding)

    @classmethod
    def cut(cls, graph: OpGraph, model: str, k: int, encoding: str = "raw") -> "Plan":
        return cls(model, *graph.input_shape[2:], k, k, encoding=encoding)

    @property
    def is_split(self) -> bool:
        """Has a split segment (robot and edge share ops by rows): the Intra-DP plans."""
        return self.seg_start < self.seg_end

    def kind(self, n_ops: int) -> str:
        if self.is_split:
            return "intra-dp"
        if self.seg_start == n_ops:
            return "local"
        return "offload" if self.seg_start == 0 else "cut"

    def describe(self, graph: OpGraph) -> str:
        """The plan in words, for users (logs, PlanStatus.description, the demo): ops counted from 1 as
        `./intradp plan-report` lists them, rows of the split segment's output."""
        n = len(graph.ops)
        kind, enc = self.kind(n), {"raw": "uncompressed"}.get(self.encoding, self.encoding)
        if kind == "local":
            return f"all {n} ops on the robot"
        if kind == "offload":
            return f"all {n} ops on the edge; the image is sent {enc}"
        if kind == "cut":
            k = self.seg_start
            return (f"ops 1-{k} ({graph.ops[0].name}..{graph.ops[k - 1].name}) on the robot, ops {k + 1}-{n} on "
                    f"the edge; {graph.ops[k - 1].name}'s output is sent {enc}")
        start, end, rows = self.seg_start, self.seg_end, self.robot_rows
        grid = Segment(graph, start, end).grid
        parts = [f"ops 1-{start} on the robot"] if start else []
        ops = f"ops {start + 1}-{end} ({graph.ops[start].name}..{graph.ops[end - 1].name})"
        if rows:
            parts.append(f"rows 0-{rows - 1} of {grid} of {ops} on the robot in {self.robot_tiles} tile(s), the "
                         f"other {grid - rows} rows on the edge in {self.edge_tiles} tile(s)")
        else:
            sent = "the image" if start == 0 else f"{graph.ops[start - 1].name}'s output"
            parts.append(f"{sent} streamed to the edge in {self.edge_tiles} row tiles, {ops} computed on each "
                         "tile as it arrives")
        parts.append(f"ops {end + 1}-{n} on the edge" if end < n else "the outputs gathered at the aggregator")
        return "; ".join(parts) + f"; tiles sent {enc}"


@dataclasses.dataclass(frozen=True)
class TileWork:
    """One tile of one side: target rows, rows each op newly computes, outside rows it needs."""
    targets: dict[str, Interval]
    compute: dict[str, Interval]
    needs: dict[str, Interval]


def _stream(segment: Segment, bounds: list[int], done: dict[str, Interval]) -> list[TileWork]:
    """Dry-run of :class:`RowStreamer` over grid tile ``bounds``: what each tile computes and needs, with every
    read checked against the rows the streamer will hold then (so the executor never misses one)."""
    work = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        targets = segment.target_rows(a, b)
        compute, needs = backprop(segment.graph, segment.ops, targets, done)
        held = {**done, **{k: _cover(done.get(k), v) for k, v in needs.items()}}
        for op in segment.ops:
            if op.name not in compute:
                continue
            lo, hi = compute[op.name]
            for name, rm in op.row_maps.items():
                _check_read(segment, held, name, rm.input_range(lo, hi), f"{op.name} rows [{lo}, {hi})")
            d = held.get(op.name)
            held[op.name] = done[op.name] = (d[0], hi) if d and d[1] == lo else (lo, hi)
        for name, rows in targets.items():
            _check_read(segment, held, name, rows, f"tile [{a}, {b})")
        work.append(TileWork(targets, compute, needs))
    return work


def _cover(have: Interval | None, need: Interval) -> Interval:
    return need if have is None or have[0] >= have[1] else (min(have[0], need[0]), max(have[1], need[1]))


def _check_read(segment: Segment, held: dict[str, Interval], name: str, rows: Interval, who: str) -> None:
    g = segment.graph
    h = g.value_shape(name)[g.value_row_axis(name)]
    lo, hi = max(rows[0], 0), min(rows[1], h)
    have = held.get(name)
    if hi > lo and (have is None or not have[0] <= lo < hi <= have[1]):
        raise PlanError(f"segment [{segment.start}, {segment.end}): {who} reads rows [{lo}, {hi}) of {name}, which "
                        f"the tile holds only as {have}")


def _bounds(lo: int, hi: int, n: int) -> list[int]:
    n = max(1, min(n, hi - lo)) if hi > lo else 1
    return [lo + (hi - lo) * i // n for i in range(n + 1)]


class CompiledPlan:
    """A plan checked against a graph, with every tile's rows worked out once."""

    def __init__(self, graph: OpGraph, plan: Plan):
        self.graph, self.plan = graph, plan
        n = len(graph.ops)
        if (plan.height, plan.width) != tuple(graph.input_shape[2:]):
            raise PlanError(f"plan is for input {plan.height}x{plan.width}, model runs at "
                            f"{graph.input_shape[2]}x{graph.input_shape[3]}")
        if not 0 <= plan.seg_start <= plan.seg_end <= n:
            raise PlanError(f"plan op range 0 <= {plan.seg_start} <= {plan.seg_end} <= {n} does not hold")
        if plan.encoding not in ENCODINGS or plan.encoding == "u8":
            raise PlanError(f"encoding {plan.encoding!r} is not usable for intermediate tensors")
        if plan.robot_tiles < 1 or plan.edge_tiles < 1 or max(plan.robot_tiles, plan.edge_tiles) > 64:
            raise PlanError("tiles per side must be between 1 and 64")
        self.segment: Segment | None = None
        self.robot_work: list[TileWork] = []
        self.edge_work: list[TileWork] = []
        self.edge_chunks: list[Interval] = []   # input rows sent to the edge, in order
        self.chunks_needed: list[int] = []       # per edge tile: chunks that must have arrived first
        if plan.is_split:
            try:
                self.segment = seg = Segment(graph, plan.seg_start, plan.seg_end)
            except ValueError as e:
                raise PlanError(str(e)) from e
            if not 0 <= plan.robot_rows <= seg.grid:
                raise PlanError(f"robot_rows {plan.robot_rows} outside the segment grid 0..{seg.grid}")
            inp = seg.input
            h_in = graph.value_shape(inp)[graph.value_row_axis(inp)]
            if plan.robot_rows > 0:
                self.robot_work = _stream(seg, _bounds(0, plan.robot_rows, plan.robot_tiles), {inp: (0, h_in)})
            if plan.robot_rows < seg.grid:
                self.edge_work = _stream(seg, _bounds(plan.robot_rows, seg.grid, plan.edge_tiles), {})
                sent = None
                for w in self.edge_work:      # contiguous chunks: each adds the rows its tile needs, if any
                    lo, hi = w.needs.get(inp, (0, 0))
                    start = lo if sent is None else sent
                    if hi > start:
                        self.edge_chunks.append((start, hi))
                        sent = hi
                    self.chunks_needed.append(len(self.edge_chunks))
                if self.edge_work and not self.edge_chunks:
                    raise PlanError(f"the edge's rows [{plan.robot_rows}, {seg.grid}) of segment [{seg.start}, "
                                    f"{seg.end}) read no input rows (padding only): it would never start")
            # the edge's needs must be covered by the chunks sent before each tile (monotone halos)
            have = None
            for w, n_chunks in zip(self.edge_work, self.chunks_needed):
                have = (self.edge_chunks[0][0], self.edge_chunks[n_chunks - 1][1]) if n_chunks else None
                need = w.needs.get(inp)
                if need and need[0] < need[1] and new_rows(need, have) != (0, 0):
                    raise PlanError(f"edge tile needs rows {need} of {inp} outside those sent {have}")
        # values moved whole from robot to edge at a layer-wise cut
        cut = plan.seg_start == plan.seg_end and plan.seg_start < n
        self.to_edge_whole: list[str] = graph.live_after(plan.seg_start) if cut else []

    @property
    def robot_ops(self) -> range:
        return range(0, self.plan.seg_start)

    @property
    def edge_ops(self) -> range:
        return range(self.plan.seg_end, len(self.graph.ops))


def compile_plan(graph: OpGraph, spec: str | Plan) -> CompiledPlan:
    """Compile a plan for ``graph``; cached on the graph, since tiles of one frame all carry the same text."""
    spec = spec.spec() if isinstance(spec, Plan) else spec
    with _CACHE_LOCK:        # the planner (its own thread) and the frame threads share the cache
        cache: dict[str, CompiledPlan] = graph.__dict__.setdefault("_compiled_plans", {})
        hit = cache.get(spec)
    if hit is not None:
        return hit
    compiled = CompiledPlan(graph, Plan.parse(spec))
    with _CACHE_LOCK:
        while len(cache) >= 256:
            cache.pop(next(iter(cache)))
        return cache.setdefault(spec, compiled)
