"""The aggregator's side of a frame: its outputs' row tiles from robot and edge, reassembled.

A frame is complete when every output's rows are all covered; packets that do not fit the model's outputs are
refused (:class:`~intradp_ros.engine.packet.ProtocolError`) before their payload is decoded.
"""
from __future__ import annotations

import dataclasses

import torch

from .codec import elements
from .graph import OpGraph
from .packet import Packet, ProtocolError

__all__ = ["FrameOutputs", "Assembler", "full_rows"]


def full_rows(graph: OpGraph, name: str) -> tuple[int, int]:
    """All rows of value ``name``: (0, height), or (0, 0) for a value without a row axis."""
    axis = graph.value_row_axis(name)
    return (0, graph.value_shape(name)[axis]) if axis is not None else (0, 0)


@dataclasses.dataclass
class FrameOutputs:
    frame_seq: int
    plan_spec: str
    parts: dict[str, list[tuple[int, torch.Tensor]]]   # output name -> [(first row, payload tensor)] by row
    robot_ms: float = 0.0
    edge_ms: float = 0.0
    bytes_to_edge: int = 0          # payload bytes robot -> edge, as the edge relayed them

    def tensor(self, name: str, axis: int = 2) -> torch.Tensor:
        """Reassemble a raw (unreduced) output from its row tiles."""
        ts = [t for _, t in self.parts[name]]
        return torch.cat(ts, axis) if len(ts) > 1 else ts[0]


class Assembler:
    """The aggregator's bookkeeping: a frame is complete when every output's rows are all covered."""

    def __init__(self, graph: OpGraph):
        self.outputs = {name: full_rows(graph, name) for name in graph.outputs}
        self.shapes = {name: tuple(graph.value_shape(name)) for name in graph.outputs}
        self.frames: dict[int, dict] = {}

    def add(self, pkt: Packet) -> FrameOutputs | None:
        """Add one output packet; returns the frame's outputs when it is complete. Raises on bad packets."""
        if pkt.tensor not in self.outputs:
            raise ProtocolError(f"{pkt.tensor!r} is not an output of this model ({', '.join(self.outputs)})")
        full = self.outputs[pkt.tensor]
        if full != (0, 0) and not 0 <= pkt.row_start < pkt.row_stop <= full[1]:
            raise ProtocolError(f"{pkt.tensor}: rows [{pkt.row_start}, {pkt.row_stop}) outside 0..{full[1]}")
        if tuple(pkt.shape) != self.shapes[pkt.tensor] or elements(pkt.payload_shape) > elements(pkt.shape):
            raise ProtocolError(f"{pkt.tensor}: shape {tuple(pkt.shape)}, payload {tuple(pkt.payload_shape)} do not "
                                f"fit the model's {self.shapes[pkt.tensor]}")
        t = pkt.value()                # decoded only now: its size is bounded by the output's
        fr = self.frames.setdefault(pkt.frame_seq, {"plan": pkt.plan_spec, "parts": {},
                                                     "robot_ms": 0.0, "edge_ms": 0.0, "to_edge": 0})
        if fr["plan"] != pkt.plan_spec:
            raise ProtocolError(f"frame {pkt.frame_seq}: outputs of two plans")
        rows = fr["parts"].setdefault(pkt.tensor, {})
        if pkt.row_start in rows:
            raise ProtocolError(f"frame {pkt.frame_seq}: duplicate {pkt.tensor} rows from {pkt.row_start}")
        rows[pkt.row_start] = (pkt.row_stop, t)
        key = "robot_ms" if pkt.sender == "robot" else "edge_ms"
        fr[key] = max(fr[key], pkt.compute_ms)
        if pkt.sender == "edge":      # what the robot's packets to the edge said (totals so far: the largest)
            fr["robot_ms"], fr["to_edge"] = max(fr["robot_ms"], pkt.robot_ms), max(fr["to_edge"], pkt.robot_bytes)
        if not all(self._covered(name, fr["parts"].get(name, {})) for name in self.outputs):
            return None
        del self.frames[pkt.frame_seq]
        parts = {name: [(lo, t) for lo, (_, t) in sorted(p.items())] for name, p in fr["parts"].items()}
        return FrameOutputs(pkt.frame_seq, fr["plan"], parts, fr["robot_ms"], fr["edge_ms"], fr["to_edge"])

    def _covered(self, name: str, rows: dict[int, tuple[int, torch.Tensor]]) -> bool:
        full = self.outputs[name]
        if full == (0, 0):
            return bool(rows)
        at = 0
        for lo in sorted(rows):
            if lo != at:
                return False
            at = rows[lo][0]
        return at == full[1]
