"""RobotRuntime: the model, its start-up profile and the robot's share of every frame, under the controller's plan."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..engine.executor import RobotWorker
from ..engine.packet import Packet
from ..engine.plan import Plan
from ..engine.profiler import load_or_profile
from ..runtime import Log, ModelRuntime, RobotConfig
from .controller import PlanController
from .measurements import FrameRecord
from .state import Status

__all__ = ["RobotRuntime", "FrameRun"]


@dataclasses.dataclass(frozen=True)
class FrameRun:
    busy_ms: float           # robot compute (encoding included)
    plan: Plan               # the plan it ran
    x: object                # the letterboxed uint8 network input, for a rescue


class RobotRuntime:
    """Owns the model and the robot's worker; every plan decision is the controller's (``self.controller``).

    :meth:`run_frame` is called from one frame thread at a time (the worker keeps per-frame timings)."""

    def __init__(self, cfg: RobotConfig, log: Log = print, warn: Log | None = None,
                 on_change: Callable[[Status], None] | None = None, start_planner: bool = True):
        self.m = ModelRuntime(cfg)
        self.m.check_tiles()
        g = self.m.graph
        self.profile = load_or_profile(g, self.m.profile_input(), Path(cfg.profile_cache_dir)
                                       if cfg.profile_cache_dir else None, self.m.task.output_fn, log)
        self.worker = RobotWorker(g, self.m.task.output_fn, self.m.device)
        self._rescue_worker = RobotWorker(g, self.m.task.output_fn, self.m.device)   # its timings are no plan's
        self.local = Plan.local(g, self.m.spec.name)
        self.controller = PlanController(g, self.m.spec.name, self.profile, cfg, log, warn, on_change, start_planner)

    @property
    def needs_edge(self) -> bool:
        return self.controller.state.plan.kind(len(self.m.graph.ops)) != "local"

    def run_frame(self, seq: int, rgb8: np.ndarray, emit: Callable[[Packet], None], age_ms: float = 0.0) -> FrameRun:
        """Pre-process and compute the robot's share of one frame under the plan in force. ``age_ms``: how old the
        frame already is (camera stamp -> now); with the pre-processing it is the frame's intake time, which the
        controller pairs with the aggregator's time as the per-frame overhead."""
        plan = self.controller.begin_frame(seq)
        t0 = time.perf_counter()
        u8 = self.m.letterboxed(rgb8)
        self.controller.note_intake(seq, max(age_ms, 0.0) + (time.perf_counter() - t0) * 1e3)
        busy = self.worker.run_frame(seq, plan, None, emit, x_u8=u8)   # the float input only if the plan needs it
        w = self.worker
        self.controller.end_frame(FrameRecord(seq, plan.spec(), w.last_whole_ms, w.last_tiles_ms,
                                              tuple(w.last_packed)))
        return FrameRun(busy, plan, u8)

    def needs_rescue_keeping(self, plan: Plan) -> bool:
        """A frame under ``plan`` depends on the edge: keep its input until its result is out."""
        return plan.kind(len(self.m.graph.ops)) != "local"

    def rescue(self, seq: int, x, emit: Callable[[Packet], None]) -> float:
        """Compute frame ``seq`` all-local from its kept input (its edge part was late); its latency judges no
        plan. Returns robot compute ms. Call from the frame thread."""
        self.controller.exclude(seq)
        return self._rescue_worker.run_frame(seq, self.local, None, emit, x_u8=x)

    def close(self) -> None:
        self.controller.close()
