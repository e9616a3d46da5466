"""Frames the robot keeps until their results are out, so that it can finish any of them itself.

The robot has every frame's input. A frame whose plan needs the edge is kept (its pre-processed input) until its
FrameTiming comes back; past its deadline (a multiple of its plan's predicted latency) the robot computes it
all-local and sends that result to the aggregator, which publishes whichever complete result comes first and
discards the rest (see AggregatorRuntime). So an edge that dies, or a link that drops, costs frames time, never
their answer.

Not thread-safe: owned by robot_node's frame thread (keep, due) and its executor thread (done): robot_node guards
it with its own lock (RobotNode._rescue_lock).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any

__all__ = ["Kept", "RescueBook"]


@dataclasses.dataclass
class Kept:
    seq: int
    x: Any                   # the pre-processed network input (a tensor)
    header: Any              # the camera header
    size: tuple[int, int]    # the camera image's width and height
    plan_spec: str           # the plan it ran
    deadline: float          # monotonic s


class RescueBook:
    MAX_KEPT = 32             # frames in flight beyond this are rescued at once (memory stays bounded)

    def __init__(self):
        self._kept: collections.OrderedDict[int, Kept] = collections.OrderedDict()
        self.rescued: collections.deque = collections.deque(maxlen=256)   # seqs rescued lately

    def keep(self, k: Kept) -> None:
        self._kept[k.seq] = k

    def done(self, seq: int) -> bool:
        """Frame ``seq``'s result is out; True if it was kept (so the edge's part came back in time)."""
        return self._kept.pop(seq, None) is not None

    def due(self, now: float) -> list[Kept]:
        """Frames past their deadline (or beyond MAX_KEPT), oldest first; they are no longer kept."""
        out = [k for k in self._kept.values() if k.deadline <= now]
        while len(self._kept) - len(out) > self.MAX_KEPT:
            out.append(next(k for k in self._kept.values() if k not in out))
        for k in out:
            del self._kept[k.seq]
            self.rescued.append(k.seq)
        return sorted(out, key=lambda k: k.seq)

    def was_rescued(self, seq: int) -> bool:
        return seq in self.rescued

    def __len__(self) -> int:
        return len(self._kept)
