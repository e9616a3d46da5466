"""Latencies measured per plan on the current link, whoever chose the plan.

The planner compares a plan by what it measured once it has (see engine.search.Evidence.measured), and learns
what split plans measure beyond their predictions (the split extra). Both are per link: a new link starts empty.

Not thread-safe: owned by :class:`~intradp_ros.robot.controller.PlanController`, called under its lock.
"""
from __future__ import annotations

import collections
import statistics
from typing import Iterable


__all__ = ["LatencyBook"]


class LatencyBook:
    MEASURED_MIN_FRAMES = 5   # a plan counts as measured after this many undisturbed frames ...
    TRIAL_MIN_FRAMES = 3      # ... a trial whose every frame is slower than a plan measured in full, this early
    WINDOW = 10
    SPLIT_MIN_FRAMES = 5
    MAX_PLANS = 256

    def __init__(self):
        self._lat: dict[str, collections.deque] = {}
        self._split_residuals: collections.deque = collections.deque(maxlen=24)
        self.observed: collections.Counter = collections.Counter()   # frames credited per plan since the link began

    def clear(self, keep: Iterable[str] = ()) -> None:
        """A new link: nothing measured on the old one holds, but for the plans in ``keep`` (all-local: its
        latency does not depend on the link; forgotten, a run that measured all-local faster than its prediction
        then chose a streamed plan measuring 9 % slower, priced against all-local's prediction)."""
        keep = set(keep)
        self._lat = {k: v for k, v in self._lat.items() if k in keep}
        self._split_residuals.clear()
        self.observed = collections.Counter({k: n for k, n in self.observed.items() if k in keep})

    def observe(self, spec: str, latency_ms: float) -> None:
        if spec not in self._lat and len(self._lat) >= self.MAX_PLANS:
            self._lat.clear()
        self._lat.setdefault(spec, collections.deque(maxlen=self.WINDOW)).append(latency_ms)
        self.observed[spec] += 1

    def observe_split_residual(self, measured_minus_predicted_ms: float) -> None:
        """A split-plan frame's latency less its prediction without the split extra (so it is not counted twice)."""
        self._split_residuals.append(measured_minus_predicted_ms)

    def window(self, spec: str) -> list[float]:
        return list(self._lat.get(spec, ()))

    def measured_one(self, spec: str, frame_ms: float, trial: bool = False) -> float | None:
        """Median latency of ``spec``'s recent frames less ``frame_ms`` (the planner's terms), or None until
        measured. Most trials lose: one whose every frame is slower than the median of a plan measured in full has
        lost (a plan as fast as that one does so 1 time in 8), so it counts as measured after TRIAL_MIN_FRAMES."""
        d = self._lat.get(spec)
        if d is None or len(d) < self.TRIAL_MIN_FRAMES:
            return None
        if len(d) < self.MEASURED_MIN_FRAMES:
            if not trial:
                return None
            fastest = min(d)
            if not any(k != spec and len(v) >= self.MEASURED_MIN_FRAMES and statistics.median(v) < fastest
                       for k, v in self._lat.items()):
                return None
        return float(statistics.median(d)) - frame_ms

    def measured(self, frame_ms: float, trials: Iterable[str] = ()) -> dict[str, float]:
        """Plan text -> :meth:`measured_one` for every plan measured so far (``trials``: plans run as trials)."""
        trials = set(trials)
        return {spec: ms for spec in self._lat if (ms := self.measured_one(spec, frame_ms, spec in trials)) is not None}

    def split_extra_ms(self) -> float:
        """What split plans measured beyond their predictions (median of recent split-plan frames; 0 until
        SPLIT_MIN_FRAMES): the middleware's extra messages, the edge's per-chunk handling. Never below 0: a plan
        not yet measured is not trusted to beat its own prediction (its family's measured excess, which may be
        negative, prices it once one of the family ran)."""
        if len(self._split_residuals) < self.SPLIT_MIN_FRAMES:
            return 0.0
        return max(float(statistics.median(self._split_residuals)), 0.0)
