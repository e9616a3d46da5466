"""A captured model's tile functions checked against the operators themselves, once, at the model's size.

For every local operator with a tile function (windows, pads, interpolation, transposed convolutions, ...), rows
at the top border, in the middle and at the bottom border are computed from the input rows the geometry asks for
and compared with the same rows of the operator's whole output: shape, and values to 1e-4. A geometry the engine
gets wrong for this model is then a start-up error naming the operator, never a frame that differs or fails.
"""
from __future__ import annotations

import torch

from .graph import GraphCaptureError, OpGraph
from .rows import compute_op_rows

__all__ = ["verify_tiles"]


def _ranges(h: int) -> set[tuple[int, int]]:
    mid = h // 2
    return {(lo, hi) for lo, hi in ((0, min(h, 2)), (mid, min(h, mid + 3)), (max(0, h - 2), h)) if hi > lo}


def verify_tiles(graph: OpGraph, x: torch.Tensor, tol: float = 1e-4) -> int:
    """Check every local op's tile function on input ``x`` (the graph's input shape); returns the ops checked.

    Raises GraphCaptureError naming the first op whose tile rows differ from its whole output's."""
    env = {graph.input_name: x}
    checked = 0
    with torch.inference_mode():
        for op in graph.ops:
            out = graph.run_op(op, env)
            env[op.name] = out
            if op.local and op.tile_fn is not None and op.row_axis is not None:
                scale = max(1.0, float(out.abs().max())) if out.numel() and out.is_floating_point() else 1.0
                for lo, hi in _ranges(op.height):
                    try:
                        rows = compute_op_rows(graph, op, lo, hi, lambda n, a, b: env[n].narrow(
                            graph.value_row_axis(n), a, b - a))
                    except RuntimeError as e:
                        raise GraphCaptureError(f"{op.node.format_node()}: its tiles cannot be computed: {e}") from e
                    want = out.narrow(op.row_axis, lo, hi - lo)
                    if rows.shape != want.shape or (rows - want).abs().max() > tol * scale:
                        raise GraphCaptureError(f"{op.node.format_node()}: rows [{lo}, {hi}) computed as a tile differ "
                                                f"from the operator's own ({tuple(rows.shape)} vs {tuple(want.shape)})"
                                                "; this geometry is not supported: please report it")
                checked += 1
            graph.drop_dead(env, op.index)
    return checked
