"""Link throughput measured from real transfers, with one clock per side (no clock synchronisation).

The robot queues a frame's input chunks for the edge back to back. On the edge, after the first chunk has
arrived, each further chunk took the link (and the sender's serialisation) its own size to deliver, so
bytes after the first / (last arrival - first arrival) is the throughput the planner should assume.
"""
from __future__ import annotations

import collections
import statistics

__all__ = ["ChunkTimer", "BandwidthEstimate"]


class ChunkTimer:
    """Edge side: arrival times of each burst's chunks -> one (bytes, seconds) sample per complete burst."""

    def __init__(self, max_pending: int = 64):
        self._bursts: collections.OrderedDict = collections.OrderedDict()
        self._max = max_pending

    def arrived(self, key, index: int, count: int, nbytes: int, t: float) -> tuple[int, float] | None:
        """Record chunk ``index`` of ``count`` of burst ``key`` arriving at ``t`` (seconds, edge clock)."""
        b = self._bursts.setdefault(key, {"first": None, "last": t, "bytes": 0, "seen": 0})
        while len(self._bursts) > self._max:        # bursts whose chunks never all came
            self._bursts.popitem(last=False)
        if index == 0:
            b["first"] = t
        else:
            b["bytes"] += nbytes
        b["last"] = max(b["last"], t)
        b["seen"] += 1
        if b["seen"] < count:
            return None
        del self._bursts[key]
        span = b["last"] - (b["first"] if b["first"] is not None else b["last"])
        return (b["bytes"], span) if count >= 2 and span > 0 and b["bytes"] > 0 else None


class BandwidthEstimate:
    """Robot side: the median of the last ``window`` samples, robust to one odd burst."""

    def __init__(self, window: int = 5):
        self._samples: collections.deque = collections.deque(maxlen=window)

    def add(self, mbps: float) -> None:
        if mbps > 0:
            self._samples.append(mbps)

    @property
    def mbps(self) -> float | None:
        return statistics.median(self._samples) if self._samples else None
