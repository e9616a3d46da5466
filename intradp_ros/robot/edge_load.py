"""The queueing a shared edge adds to this robot's share of it, as a factor on the edge's compute, damped.

The edge serves its robots' tiles in fair turns (engine.fleet.FairQueue). While this robot uses the edge, the
edge measures how long its tiles waited behind the others' (EdgeStatus.robot_behind_ms) and the stretch of its
edge part is that, measured: (service + behind) / service. While it does not, the stretch is estimated: with the
other robots keeping the edge busy a fraction rho of the time, this robot's tiles would get about 1 - rho of it,
so its edge compute would stretch by about 1 / (1 - rho) (processor sharing). Either is never more than the
number of robots using it: the fair queue gives a robot that asks for more than its share at least 1/N of the
edge, however busy the others keep it (without that cap a saturated edge, rho near 1, priced 10x sent robots
all-local on the bench, which emptied the edge). The planner prices every plan with the edge's profile scaled by
that factor, so that as the edge fills up the robot takes rows back.

Damped so that a fleet does not flip all at once: rho (a measured stretch enters as 1 - 1/stretch) is smoothed
over a few seconds, and a change re-plans only when the factor moved by a quarter, no sooner than a hold time
after the last such re-plan, randomised per robot (each robot re-plans at its own phase and sees the others'
moves before making its own).

Not thread-safe: owned by the PlanController, called under its lock.
"""
from __future__ import annotations

import random
import time

__all__ = ["EdgeLoad"]


class EdgeLoad:
    TAU_S = 2.0           # smoothing time constant of the others' busy fraction
    MAX_RHO = 0.9         # a saturated edge is priced 10x slower, not infinitely
    MOVE = 0.25           # the factor moved this far from the one planned with: re-plan
    HOLD_S = 2.0          # ... but no sooner than HOLD_S to 2 HOLD_S after the last load re-plan

    def __init__(self, rng: random.Random | None = None, clock=time.monotonic):
        self._rng, self._clock = rng or random.Random(), clock
        self.rho = 0.0
        self.robots: int | None = None     # robots using the edge, this one included (None: no cap)
        self._t: float | None = None
        self._next = 0.0

    @property
    def factor(self) -> float:
        return self.factor_for(self.rho, self.robots)

    @classmethod
    def factor_for(cls, rho: float, robots: int | None = None) -> float:
        """1 / (1 - rho), rho capped at MAX_RHO, and at most ``robots`` (None: no cap)."""
        f = 1.0 / (1.0 - min(max(rho, 0.0), cls.MAX_RHO))
        return min(f, float(max(robots, 1))) if robots is not None else f

    def observe(self, others_busy: float, robots: int | None = None, stretch: float | None = None) -> None:
        """One heartbeat: the fraction of the edge's time the other robots used, how many robots use it (this one
        included), and ``stretch``, measured: (its edge compute + the time its tiles waited behind the others')
        / its edge compute, per frame (None while it does not use the edge). The measurement wins: robots in a
        closed loop interleave (one's frame crosses the link while another's computes), so two robots on an edge
        88 % busy measured no slower than one alone, where 1 / (1 - rho) priced it 1.8x."""
        now = self._clock()
        self.robots = robots
        x = 1.0 - 1.0 / stretch if stretch is not None and stretch >= 1.0 else others_busy
        if self._t is None:
            self.rho = x
        else:
            a = min((now - self._t) / self.TAU_S, 1.0)
            self.rho += a * (x - self.rho)
        self._t = now

    def should_replan(self, planned: float | None) -> bool:
        """The factor moved enough from ``planned`` (None: not priced yet) and the hold time is over."""
        if planned is None:
            return False
        now = self._clock()
        if abs(self.factor - planned) <= self.MOVE * planned or now < self._next:
            return False
        self._next = now + self.HOLD_S * (1.0 + self._rng.random())
        return True

    def heard(self, others_busy: float, planned: float | None, robots: int | None = None,
              stretch: float | None = None) -> str | None:
        """One heartbeat (:meth:`observe`); why to re-plan, or None (see :meth:`should_replan`)."""
        self.observe(others_busy, robots, stretch)
        if not self.should_replan(planned):
            return None
        seen = f"the others stretch its edge part {stretch:.2f}x" if stretch is not None else \
            f"the other robots use {others_busy:.0%} of the edge"
        return f"{seen}: its compute priced {self.factor:.2f}x (planned with {planned:.2f}x)"

    def reset(self) -> None:
        """A new edge (or the same one back): nothing of the old load holds."""
        self.rho, self._t, self.robots = 0.0, None, None
