"""Exact row-tiled execution of a segment (a run of local operators).

For rows [lo, hi) of a segment's outputs, :func:`backprop` finds the exact rows of every operator's output
(and of the segment input) that are needed, from each operator's kernel/stride/padding/dilation
(:class:`~intradp_ros.engine.tiles.RowMap`). :class:`RowStreamer` then computes them, applying an operator's
padding only where a tile touches the real tensor border, so tiled results equal the monolithic ones.

Tiles on one side are computed top to bottom and the streamer keeps the rows it has already computed, so
consecutive tiles never recompute their shared halo: redundant work exists only at the robot/edge boundary.
"""
from __future__ import annotations

from typing import Iterable

import torch

from .graph import Op, OpGraph

__all__ = ["Interval", "Segment", "RowStreamer", "backprop", "compute_op_rows", "new_rows"]

Interval = tuple[int, int]   # rows [lo, hi); empty when lo >= hi


def _hull(a: Interval | None, b: Interval) -> Interval:
    if a is None or a[0] >= a[1]:
        return b
    if b[0] >= b[1]:
        return a
    return min(a[0], b[0]), max(a[1], b[1])


def new_rows(want: Interval, done: Interval | None) -> Interval:
    """Rows of ``want`` still to compute given the contiguous rows ``done`` already buffered."""
    if want[0] >= want[1] or done is None or done[0] >= done[1]:
        return want
    if done[0] <= want[0] <= done[1]:          # continues the buffered rows: compute only what is beyond
        return (done[1], want[1]) if want[1] > done[1] else (0, 0)
    return want                                 # not a continuation: recompute the whole range


class Segment:
    """Ops [start, end) of a graph, all local, fed by one spatial value (the split input).

    ``targets`` are the values it must deliver: those read after ``end`` and the graph outputs it produces.
    Tiles are defined on a row *grid* of ``grid`` rows (the smallest target height): grid rows [a, b) mean
    rows [a*H//grid, b*H//grid) of each target of height H, so tiles align with every target's stride.
    """

    def __init__(self, graph: OpGraph, start: int, end: int):
        if not 0 <= start < end <= len(graph.ops):
            raise ValueError(f"bad segment [{start}, {end})")
        self.graph, self.start, self.end = graph, start, end
        self.ops: list[Op] = graph.ops[start:end]
        bad = [op for op in self.ops if not op.local]
        if bad:
            raise ValueError(f"segment [{start}, {end}) contains barrier {bad[0].node.format_node()}: {bad[0].reason}")
        live_in = graph.live_after(start)
        if len(live_in) != 1 or graph.value_row_axis(live_in[0]) is None:
            raise ValueError(f"segment [{start}, {end}) must start where exactly one spatial value is live, "
                             f"got {live_in}")
        self.input = live_in[0]
        produced = {op.name for op in self.ops}
        live_out = graph.live_after(end)
        if any(v not in produced for v in live_out):
            raise ValueError(f"segment [{start}, {end}) is crossed by a value it does not produce")
        self.gathered = [v for v in live_out]                        # read after end: gathered on the edge
        self.emitted = [v for v in graph.outputs if v in produced]   # graph outputs: straight to the aggregator
        self.targets = list(dict.fromkeys(self.gathered + self.emitted))
        if not self.targets:
            raise ValueError(f"segment [{start}, {end}) produces nothing that is used")
        self.heights = {t: graph.by_name[t].height for t in self.targets}
        self.grid = min(self.heights.values())

    def target_rows(self, g_lo: int, g_hi: int) -> dict[str, Interval]:
        return {t: (g_lo * h // self.grid, g_hi * h // self.grid) for t, h in self.heights.items()}


def backprop(graph: OpGraph, ops: Iterable[Op], wanted: dict[str, Interval],
             done: dict[str, Interval] | None = None) -> tuple[dict[str, Interval], dict[str, Interval]]:
    """Rows each op must newly compute, and rows needed of values produced outside ``ops``.

    Args:
        ops: the segment's ops in topological order.
        wanted: rows required of some values (the segment's targets).
        done: rows already buffered per value (these are not recomputed).
    Returns:
        (compute, external): op name -> rows to compute now; outside value -> rows it must supply.
    """
    done = done or {}
    req: dict[str, Interval] = dict(wanted)
    compute: dict[str, Interval] = {}
    ops = list(ops)
    inside = {op.name for op in ops}
    for op in reversed(ops):
        want = req.get(op.name)
        if want is None:
            continue
        new = new_rows(want, done.get(op.name))
        if new[0] >= new[1]:
            continue
        compute[op.name] = new
        for name, rm in op.row_maps.items():
            lo, hi = rm.input_range(*new)
            h = graph.value_shape(name)[graph.value_row_axis(name)]
            lo = min(max(lo, 0), h)
            req[name] = _hull(req.get(name), (lo, max(min(hi, h), lo)))
    external = {k: v for k, v in req.items() if k not in inside}
    return compute, external


class _RowBuffer:
    """Contiguous rows [lo, hi) of one value along its row axis, kept as the pieces they were computed in.

    Appending is O(1) (no re-copy of what is already there); reading a range concatenates only the pieces it
    touches, which for a halo is at most two.
    """
    __slots__ = ("parts", "lo", "hi", "axis")

    def __init__(self, t: torch.Tensor, lo: int, axis: int):
        self.parts: list[tuple[int, torch.Tensor]] = [(lo, t)]
        self.lo, self.hi, self.axis = lo, lo + t.shape[axis], axis

    def rows(self, lo: int, hi: int) -> torch.Tensor:
        if hi <= lo:                               # none (a tile of the op's own padding only)
            return self.parts[0][1].narrow(self.axis, 0, 0)
        if lo < self.lo or hi > self.hi:
            raise RuntimeError(f"rows [{lo}, {hi}) requested, only [{self.lo}, {self.hi}) available")
        out = []
        for start, t in self.parts:
            stop = start + t.shape[self.axis]
            if stop <= lo or start >= hi:
                continue
            a, b = max(lo, start), min(hi, stop)
            out.append(t.narrow(self.axis, a - start, b - a))
        return out[0] if len(out) == 1 else torch.cat(out, self.axis)

    def extend(self, t: torch.Tensor, lo: int) -> None:
        if lo == self.hi:
            self.parts.append((lo, t))
            self.hi = lo + t.shape[self.axis]
        else:
            self.parts, self.lo, self.hi = [(lo, t)], lo, lo + t.shape[self.axis]


def compute_op_rows(graph: OpGraph, op: Op, lo: int, hi: int, rows_of) -> torch.Tensor:
    """Rows [lo, hi) of one local op's output, reading its inputs' rows with ``rows_of(name, lo, hi)`` (an empty
    range where the tile reads none: rows made only of the op's own padding).

    The op's own padding is applied only where the needed input rows fall outside the real tensor.
    """
    try:
        if op.tile_fn is not None:
            (name, rm), = op.row_maps.items()
            ilo, ihi = rm.input_range(lo, hi)
            h = graph.value_shape(name)[graph.value_row_axis(name)]
            a, b = min(max(ilo, 0), h), max(min(ihi, h), 0)
            return op.tile_fn(rows_of(name, a, max(a, b)), a, lo, hi, h)
        return graph.run_op(op, {name: rows_of(name, lo, hi) for name in op.row_maps})
    except Exception as e:
        raise RuntimeError(f"computing rows [{lo}, {hi}) of {op.node.format_node()} failed: {e}") from e


class RowStreamer:
    """Computes a segment's target rows tile by tile, reusing rows computed for earlier tiles."""

    def __init__(self, segment: Segment):
        self.seg = segment
        self.graph = segment.graph
        self.buf: dict[str, _RowBuffer] = {}

    def feed(self, name: str, rows: torch.Tensor, lo: int) -> None:
        """Supply rows [lo, lo + n) of an outside value (the segment input)."""
        axis = self.graph.value_row_axis(name)
        if name in self.buf:
            self.buf[name].extend(rows, lo)
        else:
            self.buf[name] = _RowBuffer(rows, lo, axis)

    def _rows(self, name: str, lo: int, hi: int) -> torch.Tensor:
        """Buffered rows [lo, hi) of a value; none (a tensor of 0 rows) for an empty range, which an op whose tile
        is all padding reads before the value has any rows here."""
        if name in self.buf:
            return self.buf[name].rows(lo, hi)
        like = next(iter(self.buf.values())).parts[0][1]
        shape = list(self.graph.value_shape(name))
        shape[self.graph.value_row_axis(name)] = 0
        op = self.graph.by_name.get(name)
        return like.new_empty(shape, dtype=op.dtype if op is not None else like.dtype)

    def done(self) -> dict[str, Interval]:
        return {k: (b.lo, b.hi) for k, b in self.buf.items()}

    def needs(self, wanted: dict[str, Interval]) -> dict[str, Interval]:
        """Rows of outside values that computing ``wanted`` needs."""
        return backprop(self.graph, self.seg.ops, wanted, self.done())[1]

    def compute(self, wanted: dict[str, Interval]) -> dict[str, torch.Tensor]:
        """Compute ``wanted`` target rows; returns each target's rows exactly as requested."""
        compute, _ = backprop(self.graph, self.seg.ops, wanted, self.done())
        for op in self.seg.ops:
            rng = compute.get(op.name)
            if rng is None:
                continue
            lo, hi = rng
            y = compute_op_rows(self.graph, op, lo, hi, self._rows)
            if op.name in self.buf:
                self.buf[op.name].extend(y, lo)
            else:
                self.buf[op.name] = _RowBuffer(y, lo, op.row_axis)
        return {t: self.buf[t].rows(*r) for t, r in wanted.items() if r[0] < r[1]}
