"""Keeps the plan honest with measured latency.

A cost model can be wrong (per-message overheads, a throttled CPU, a busy edge). The guard scores each
candidate plan (the planner's choice and the baselines) by its measured median latency once it has enough
frames, else by its prediction plus the measured per-frame overhead no plan changes, and runs the best score,
switching only for a gain of more than ``margin`` (medians of a few frames under a CPU quota differ by ~10 %), or
twice that to try a plan not yet measured (split plans' predictions still err by up to ~30 %) or to go back to a
plan last measured long ago (its median is of other conditions; next to the fresh median of the plan in force it
wins by noise as often as by merit, and two plans that measure alike would take turns).
A plan that measures worse than another candidate's prediction is therefore replaced by that candidate, which
is then measured too: in steady state the plan in force is never slower than any baseline that was tried,
i.e. never worse than the best baseline as measured.
"""
from __future__ import annotations

import collections
import statistics
from typing import Iterable

__all__ = ["PlanGuard"]


class PlanGuard:
    FRESH_FRAMES = 30        # a plan's median is fresh while it had a frame among the last this many observed

    def __init__(self, window: int = 10, min_samples: int = 5, margin: float = 0.1):
        self.window, self.min_samples, self.margin = window, min_samples, margin
        self.offset = 0.0     # ms added to every prediction: measured per-frame work outside the plans
        self._lat: dict[str, collections.deque] = {}
        self._predicted: dict[str, float] = {}
        self._frames = 0                            # frames observed
        self._last: dict[str, int] = {}             # plan -> the frame count when it last observed one

    def reset(self, predicted: dict[str, float], keep: bool | Iterable[str] = False) -> None:
        """New candidates (plan text -> predicted ms) after re-planning. ``keep``: True when the link is unchanged,
        so latencies already measured for plans that are still candidates stay (no re-exploration); else the plans
        whose latencies stay anyway (all-local's does not depend on the link)."""
        self._predicted = dict(predicted)
        kept = self._predicted.keys() if keep is True else set(keep or ()) & self._predicted.keys()
        self._lat = {k: v for k, v in self._lat.items() if k in kept}

    def observe(self, spec: str, latency_ms: float) -> None:
        if spec in self._predicted:
            self._frames += 1
            self._last[spec] = self._frames
            self._lat.setdefault(spec, collections.deque(maxlen=self.window)).append(latency_ms)

    def gain(self, spec: str) -> float:
        """The advantage ``spec`` must show to replace the plan in force: the margin for a fresh median, twice it
        for a prediction or a median measured long ago."""
        fresh = self.measured(spec) is not None and self._frames - self._last.get(spec, -10**9) < self.FRESH_FRAMES
        return self.margin if fresh else 2 * self.margin

    def measured(self, spec: str) -> float | None:
        d = self._lat.get(spec)
        return statistics.median(d) if d is not None and len(d) >= self.min_samples else None

    def score(self, spec: str) -> float:
        m = self.measured(spec)
        return m if m is not None else self._predicted[spec] + self.offset

    def pick(self, current: str) -> str:
        """The plan to run next: the best score, keeping ``current`` unless another is better by ``margin``."""
        if current not in self._predicted:
            return current
        if self.measured(current) is None:
            return current                      # let the plan in force collect its samples first
        best = min(self._predicted, key=lambda s: self.score(s) / (1 - self.gain(s)))
        return best if self.score(best) < (1 - self.gain(best)) * self.score(current) else current
