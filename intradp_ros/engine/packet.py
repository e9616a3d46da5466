"""A packet: one tile of one tensor between robot, edge and aggregator (the ROS-free twin of msg/TensorTile)."""
from __future__ import annotations

import dataclasses

import torch

from .codec import decode

__all__ = ["Packet", "ProtocolError", "STAGE_WHOLE", "STAGE_SPLIT", "STAGE_SUFFIX", "STAGE_PROBE"]

STAGE_WHOLE, STAGE_SPLIT, STAGE_SUFFIX = 0, 1, 2
STAGE_PROBE = 3       # link probe from the robot: measured by the edge, never computed


class ProtocolError(ValueError):
    """A packet that is well formed but does not fit the frame it claims to belong to."""


@dataclasses.dataclass
class Packet:
    frame_seq: int
    plan_spec: str
    tensor: str                   # graph value name
    stage: int                    # 0: whole value at a cut, 1: split segment, 2: edge suffix output
    tile_index: int
    tile_count: int
    sender: str                   # "robot" | "edge"
    dest: str                     # "edge" | "aggregator"
    row_start: int                # rows of the full tensor covered (0, 0 for non-spatial values)
    row_stop: int
    shape: tuple[int, ...]        # full tensor shape
    payload_shape: tuple[int, ...]
    dtype: str
    encoding: str
    payload: bytes
    halo_top: int = 0
    halo_bottom: int = 0
    compute_ms: float = 0.0       # the sender's compute on this frame so far
    session: str = ""             # the robot's session: with frame_seq, names the frame
    robot_ms: float = 0.0         # on the edge's packets: the robot's compute so far, as its packets said
    robot_bytes: int = 0          # ... and the payload bytes of the robot's packets the edge received

    def value(self) -> torch.Tensor:
        """Decoded payload (validated against payload_shape/dtype/encoding)."""
        return decode(self.payload, self.encoding, self.dtype, self.payload_shape)
