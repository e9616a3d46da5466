"""What the robot pays outside the operators: sending messages, and the per-frame work no plan changes.

Not thread-safe: owned by :class:`~intradp_ros.robot.controller.PlanController`, called under its lock.
"""
from __future__ import annotations

import collections
import statistics

import numpy as np

__all__ = ["SendCost", "FrameOverhead", "DEFAULT_MSG_CPU_MS", "DEFAULT_SEND_CPU_MS_PER_MB"]

DEFAULT_MSG_CPU_MS = 1.0           # sender CPU per message until measured (rclpy + Fast DDS, a few-kB message)
DEFAULT_SEND_CPU_MS_PER_MB = 1.0   # sender CPU per MB until measured (serialisation, UDP fragments)


class SendCost:
    """Robot wall time per message sent to the edge and per MB: the sender thread's CPU (a line fitted over recent
    messages of different sizes), floored by the whole process's CPU per message from a start-up burst (middleware
    threads acknowledge, fragment and resend for every sample, which the sending thread does not see), divided by
    the CPU share the process gets; plus building each packet on the frame thread."""

    MIN_SENDS = 8
    MIN_PACKETS = 8

    def __init__(self, cpu_share: float):
        self.share = min(1.0, max(cpu_share, 0.05))
        self.sends: collections.deque = collections.deque(maxlen=128)    # (MB, sender CPU ms) per sent message
        self.packing: collections.deque = collections.deque(maxlen=64)   # ms to build a packet beyond its encoding
        self.process: tuple[float, float] | None = None   # (CPU ms per message, per MB) of the start-up burst

    def observe_send(self, nbytes: int, cpu_ms: float) -> None:
        self.sends.append((nbytes / 1e6, cpu_ms))

    def observe_packing(self, ms_beyond_encoding: float) -> None:
        self.packing.append(ms_beyond_encoding)

    def set_process_burst(self, small: tuple[int, int, float], large: tuple[int, int, float]) -> tuple[float, float]:
        """Two start-up bursts, each (messages, bytes per message, process CPU ms beyond idle): the line through
        them is the process's CPU per message and per MB (never a negative slope: that is noise)."""
        (n1, b1, c1), (n2, b2, c2) = small, large
        per_msg_small, per_msg_large = c1 / max(n1, 1), c2 / max(n2, 1)
        per_mb = max((per_msg_large - per_msg_small) / max((b2 - b1) / 1e6, 1e-9), 0.0)
        per_msg = max(per_msg_small - per_mb * b1 / 1e6, 0.0)
        self.process = (per_msg, per_mb)
        return self.process

    def per_message_and_mb(self) -> tuple[float, float]:
        per_msg, per_mb = DEFAULT_MSG_CPU_MS, DEFAULT_SEND_CPU_MS_PER_MB
        if len(self.sends) >= self.MIN_SENDS:
            mb = np.array([s[0] for s in self.sends])
            cpu = np.array([s[1] for s in self.sends])
            if mb.max() - mb.min() > 0.05:
                per_mb, per_msg = np.polyfit(mb, cpu, 1)
            else:
                per_msg = float(np.median(cpu - per_mb * mb))
        if self.process is not None:
            per_msg, per_mb = max(per_msg, self.process[0]), max(per_mb, self.process[1])
        return max(float(per_msg), 0.0) / self.share, max(float(per_mb), 0.0) / self.share

    def pack_ms(self) -> float:
        """Median time to build one packet beyond its priced encoding (slicing, the codec call, the packet: fixed
        per message, so what many small chunks pay); 0 until MIN_PACKETS are measured."""
        return max(float(statistics.median(self.packing)), 0.0) if len(self.packing) >= self.MIN_PACKETS else 0.0

    def msg_ms(self) -> float:
        """Robot wall time per message: sending plus building it."""
        return self.per_message_and_mb()[0] + self.pack_ms()


class FrameOverhead:
    """Per-frame time no plan changes: camera stamp -> robot compute start (transport, conversion, waiting,
    pre-processing) plus the aggregator's last output -> result. The same for every plan, so it never changes the
    choice; it is added to each prediction that is reported or compared with a measured latency."""

    MIN_FRAMES = 3
    MAX_PENDING = 64

    def __init__(self):
        self._intake: collections.OrderedDict[int, float] = collections.OrderedDict()   # seq -> intake ms
        self._frames: collections.deque = collections.deque(maxlen=16)

    def note_intake(self, seq: int, ms: float) -> None:
        self._intake[seq] = max(ms, 0.0)
        while len(self._intake) > self.MAX_PENDING:
            self._intake.popitem(last=False)

    def observe(self, seq: int, aggregator_ms: float) -> bool:
        """Frame ``seq``'s aggregator time joins its intake time; False when no intake is known or the value is
        implausible."""
        intake = self._intake.pop(seq, None)
        if intake is None or not (0.0 <= aggregator_ms < 60e3):
            return False
        self._frames.append(intake + aggregator_ms)
        return True

    def frame_ms(self) -> float:
        return float(statistics.median(self._frames)) if len(self._frames) >= self.MIN_FRAMES else 0.0

    def moved_since(self, reported: float | None) -> bool:
        """Enough to report the predictions again: 3 frames measured, and 10 ms or 15 % from ``reported``."""
        if len(self._frames) < self.MIN_FRAMES:
            return False
        now = self.frame_ms()
        return reported is None or abs(now - reported) > max(10.0, 0.15 * reported)
