"""Probe messages for the edge to time (the link's bandwidth when no frame sends enough), and the start-up
self-test of what sending costs this process.

When to probe: ``probe_period_s`` after the last link sample (or probe), and every FAST_PERIOD_S while the
planner doubts the estimate (see robot.measurements.Measurements.link_doubt): all-offload's one message per frame
and a cut's give the edge nothing to time, so after the link changed under such a plan only probes can move the
estimate, and its median needs about a dozen samples to follow (two minutes at the slow period).
"""
from __future__ import annotations

import queue
import threading
import time

from intradp_ros.engine.packet import STAGE_PROBE
from intradp_ros.msg import TensorTile

__all__ = ["ProbeSender"]


class ProbeSender:
    """Puts ready probe messages on robot_node's send queue (the sender thread publishes them in order).

    Threads: :meth:`sampled`, :meth:`due` and :meth:`probe` run on robot_node's receiver thread (link samples,
    frame timings) and its executor (the slow timer); they share one float, the time of the last sample or probe,
    replaced whole (a race costs at most one probe more or less)."""

    FAST_PERIOD_S = 1.0

    @staticmethod
    def declare_parameters(node) -> tuple[float, int, bool]:
        """robot_node's parameters of probing and of the send self-test: (probe_period_s, probe_kib,
        send_selftest)."""
        from intradp_ros.nodes.common import declare
        return (declare(node, "probe_period_s", 10.0, "measure the link with a small probe this often when no frame "
                        "does (0 = off)", limits=(0.0, 3600.0)),
                declare(node, "probe_kib", 128, "probe size, KiB (sent as 4 back-to-back chunks)", True, (1, 65536)),
                declare(node, "send_selftest", True, "at start-up, measure this process's CPU per message sent to the "
                        "edge (two bursts of 12 probe messages, ~1 s) for the planner", True))

    def __init__(self, send_q: queue.Queue, controller, log, cpu_share: float, period_s: float = 10.0,
                 kib: int = 128):
        self.send_q, self.controller, self.log, self.cpu_share = send_q, controller, log, cpu_share
        self.period_s, self.kib = float(period_s), int(kib)
        self._seq = 0
        self._last = time.monotonic()

    def sampled(self) -> None:
        """A link sample arrived: no probe is needed for a while."""
        self._last = time.monotonic()

    def due(self, doubt: bool) -> bool:
        """Probing is on and the last sample or probe is older than the period (the fast one in ``doubt``)."""
        period = min(self.FAST_PERIOD_S, self.period_s) if doubt else self.period_s
        return self.period_s > 0 and time.monotonic() - self._last >= period

    def probe(self) -> None:
        self._last = time.monotonic()
        self.queue(4, max(16, self.kib * 1024 // 4))

    def queue(self, count: int, nbytes: int) -> None:
        """Queue ``count`` back-to-back probe messages of ``nbytes`` each for the sender (the edge times them)."""
        self._seq += 1
        n = nbytes // 4                                      # float32 elements per message
        for i in range(count):
            m = TensorTile(frame_seq=self._seq, plan_spec="probe", tensor="__probe__", stage=STAGE_PROBE,
                           tile_index=i, tile_count=count, sender="robot", shape=[1, 1, 1, n],
                           payload_shape=[1, 1, 1, n], dtype="float32", encoding="raw")
            m.data = bytes(4 * n)
            self.send_q.put((m, None, None))

    def measure_send_cpu(self) -> None:
        """What sending costs this process in CPU, all threads: the sender thread's own CPU misses the
        middleware's threads (acknowledgements, fragments, heartbeats). Two bursts of probe messages (4 KiB and
        64 KiB) through the real publisher, each measured as process CPU time beyond the idle rate until the sender
        has drained and the acknowledgements are in. The planner takes the larger of this and the sender's own."""
        def burst(n: int, nbytes: int) -> float:
            done = threading.Event()
            w0, c0 = time.monotonic(), time.process_time()
            self.queue(n, nbytes)
            self.send_q.put((done.set, None, None))
            done.wait(30.0)
            time.sleep(0.2)
            return (time.process_time() - c0 - idle * (time.monotonic() - w0)) * 1e3

        planner = self.controller.planner
        try:
            for _ in range(3):
                self.controller.wait_idle(60.0)     # a planning pass would count as sending
                passes = planner.passes
                w0, c0 = time.monotonic(), time.process_time()
                time.sleep(0.4)
                idle = (time.process_time() - c0) / (time.monotonic() - w0)
                small, large = burst(12, 4096), burst(12, 65536)
                if self.controller.wait_idle(0.0) and planner.passes == passes:
                    break
            per_msg, per_mb = self.controller.set_process_send_cpu((12, 4096, small), (12, 65536, large))
            self.log.info(f"sending costs this process {per_msg:.2f} ms CPU per message + {per_mb:.1f} ms "
                                   f"per MB (all threads; the planner divides by the CPU share "
                                   f"{self.cpu_share:.2f})")
        except Exception as e:  # noqa: BLE001 - a failed self-test leaves the sender-thread measurement
            self.log.error(f"send self-test failed: {e!r}; pricing messages by the sender thread alone")
