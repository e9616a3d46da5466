"""Everything the robot measures, in one place: calibration, send cost, frame overhead, latencies, bandwidth.

Not thread-safe: owned by :class:`~intradp_ros.robot.controller.PlanController`, called under its lock.
"""
from __future__ import annotations

import dataclasses

from ..engine.cost import LinkModel
from ..engine.graph import OpGraph
from ..engine.link import BandwidthEstimate
from ..engine.plan import Plan
from ..engine.profile import DeviceProfile
from .calibration import Calibration, Drift, DriftCause, Scales
from .costs import FrameOverhead, SendCost
from .latency import LatencyBook
from .state import PlanState

__all__ = ["FrameRecord", "Measurements"]


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """What the frame thread measured of one frame it computed."""
    seq: int
    spec: str                   # the plan it ran
    whole_ms: float             # robot compute of whole-tensor ops
    tiles_ms: float             # robot compute of row tiles
    packed: tuple = ()          # (raw MB, encoding, ms) per packet built for the edge


class Measurements:
    REPRICE_MIN_FRAMES = 10   # a re-price for drift waits for this many frames since the last pricing
    BANDWIDTH_WINDOW = 15     # link samples in the median: on a fixed 25 Mbit/s tbf link, a median of 5 burst
                              # samples swung 8.6-24 Mbit/s, and every swing re-planned and restarted the link
    BANDWIDTH_SUSTAIN = 3     # samples in a row beyond ``band`` before the estimate in use moves
    LINK_DOUBT = 0.3          # the plan in force measures this far off its prediction: probe the link sooner

    def observe_bandwidth(self, mbps: float, band: float) -> bool:
        """Add a link sample; True when the estimate in use moved: the first one, or a median that stayed more than
        ``band`` (a fraction) away from the estimate in use for BANDWIDTH_SUSTAIN samples in a row."""
        self.bandwidth.add(mbps)
        est, ref = self.bandwidth.mbps, self.bandwidth_in_use
        if est is None:
            return False
        self._outside = self._outside + 1 if ref is not None and abs(est - ref) > band * ref else 0
        if ref is not None and self._outside < self.BANDWIDTH_SUSTAIN:
            return False
        self.bandwidth_in_use, self._outside = est, 0
        return True

    def __init__(self, graph: OpGraph, robot: DeviceProfile):
        self.robot = robot
        self.calibration = Calibration(graph, robot)
        self.send = SendCost(robot.cpu_share)
        self.overhead = FrameOverhead()
        self.latency = LatencyBook()
        self.bandwidth = BandwidthEstimate(window=self.BANDWIDTH_WINDOW)
        self.bandwidth_in_use: float | None = None   # the measured estimate the planner uses (see observe_bandwidth)
        self._outside = 0

    def record_frame(self, rec: FrameRecord) -> None:
        """An undisturbed frame's compute: packet building and the robot's calibration."""
        scale = self.robot.scale * self.calibration.scales().whole
        for mb, enc, ms in rec.packed:
            self.send.observe_packing(ms - scale * self.robot.encode_ms_per_mb.get(enc, 0.0) * mb)
        self.calibration.observe_robot(rec.spec, rec.whole_ms, rec.tiles_ms)

    def link(self, mbps: float, latency_ms: float) -> LinkModel:
        return LinkModel(mbps, latency_ms, send_ms_per_mb=self.send.per_message_and_mb()[1], msg_ms=self.send.msg_ms())

    def own_drift(self, state: PlanState, auto: bool, frames_since_priced: int, trials,
                  rel: float = 0.15) -> Drift | None:
        """Why the candidates should be re-priced, or None: the plan in force was first measured (at once: that
        settles a choice or ends a trial), or, once REPRICE_MIN_FRAMES frames ran since the last pricing, its
        measured latency moved 10 %, its own compute ``rel``, or the split extra 10 ms. The wait matters on a
        CPU-capped robot: medians of overlapping windows move 10 % by noise alone, and every re-price takes CPU
        its frames need."""
        p = state.pricing
        if p is None:
            return None
        spec = state.plan.spec()
        now = self.latency.measured_one(spec, self.overhead.frame_ms(), spec in trials)
        used = p.measured.get(spec)
        if auto and now is not None and used is None:
            return Drift(DriftCause.FIRST_MEASURED,
                         f"the plan in force measures {now:.1f} ms (priced with its prediction)")
        if frames_since_priced < self.REPRICE_MIN_FRAMES:
            return None
        extra = self.latency.split_extra_ms()
        if abs(extra - p.split_extra_ms) > 10.0:
            return Drift(DriftCause.SPLIT_EXTRA, f"split plans measure {extra:.1f} ms beyond their predictions (priced "
                                                 f"with {p.split_extra_ms:.1f})")
        if auto and now is not None and abs(now - used) > 0.1 * max(used, 1.0):
            return Drift(DriftCause.LATENCY, f"the plan in force measures {now:.1f} ms (priced with {used:.1f})")
        priced = p.own_scales.get(spec)
        if priced is not None and self.calibration.own(spec, priced).moved(priced, rel):
            return Drift(DriftCause.OWN_COMPUTE,
                         f"the plan in force measures >{rel:.0%} off the compute that priced it")
        return None

    def link_doubt(self, state: PlanState) -> bool:
        """The plan in force sends to the edge and measures more than LINK_DOUBT off its prediction: the link
        estimate may be stale (robot_node then probes sooner, see link_probe). A compute error would show too, but
        the calibration corrects that within a few frames, and a probe costs 128 KiB."""
        plan, predicted = state.plan, state.predicted_ms()
        if predicted is None or predicted <= 0.0 or plan.kind(len(self.calibration.graph.ops)) == "local":
            return False
        now = self.latency.measured_one(plan.spec(), self.overhead.frame_ms())
        return now is not None and abs(now / predicted - 1.0) > self.LINK_DOUBT

    def record_latency(self, state: PlanState, spec: str, latency_ms: float) -> None:
        """An undisturbed frame's end-to-end latency, credited to the plan it ran (``spec``), with its split
        residual against the prediction that plan was priced with."""
        self.latency.observe(spec, latency_ms)
        predicted = state.predicted_ms(spec)
        if predicted is None:
            return
        plan = Plan.parse(spec)
        if plan.is_split:
            self.latency.observe_split_residual(latency_ms - (predicted + self.overhead.frame_ms()
                                                              - state.pricing.extra_for(plan)))

    def own_scales(self, default: Scales) -> dict[str, Scales]:
        return self.calibration.own_all(default)
