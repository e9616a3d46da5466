"""The plan in force and the pricing behind it: immutable, replaced whole by the controller, never mutated.

A reader (a frame starting, the node publishing PlanStatus) takes one :class:`PlanState` and sees a consistent
picture: the plan, why it runs, and the inputs and predictions it was priced with.
"""
from __future__ import annotations

import dataclasses
import enum
import types
from typing import Mapping

from ..engine.cost import Prediction
from ..engine.plan import Plan
from ..engine.search import Decision, Family, family
from .calibration import Scales

__all__ = ["ReplanKind", "PlanReason", "Pricing", "PlanState", "Status", "frozen_map"]


class ReplanKind(enum.Enum):
    """What a planning pass did."""
    SEARCH = "search"            # a full search of plans (a new link, a planner setting, a cost halved or doubled)
    REPRICE = "re-price"         # the last search's shortlist priced again (calibration moved a little)
    BASELINES = "baselines"      # only the baselines, around a plan the user fixed


class PlanReason(enum.Enum):
    """Why the plan in force runs."""
    NO_EDGE = "no edge profile yet"
    FIXED = "fixed by the plan parameter"
    CHOSEN = "the planner's choice"
    CARRIED = "carried on: priced within the choice's margin on this link"
    TRIAL = "trial, to be measured"
    GUARD = "measured-latency guard"
    DEGRADED = "the edge is gone: all-local until it is back"

    @property
    def auto(self) -> bool:
        """Plan auto put this plan in force (the planner, the guard or a trial)."""
        return self in (PlanReason.CHOSEN, PlanReason.CARRIED, PlanReason.GUARD, PlanReason.TRIAL)


def frozen_map(d: Mapping | None = None) -> Mapping:
    return types.MappingProxyType(dict(d or {}))


@dataclasses.dataclass(frozen=True)
class Pricing:
    """One planning pass: its inputs and its predictions (planner terms: robot memory -> aggregator)."""
    kind: ReplanKind
    decision: Decision
    link_epoch: int                       # which link the measurements belong to (see PlanController)
    mbps: float                           # bandwidth priced with
    msg_ms: float                         # robot wall time per message priced with
    scales: Scales                        # blended calibration priced with
    split_extra_ms: float                 # the class-wide split extra priced with
    family_extra_ms: Mapping[Family, float]   # per family of measured split plans
    measured: Mapping[str, float]         # plan text -> measured latency the choice compared
    own_scales: Mapping[str, Scales]      # candidate -> the calibration that priced it (its own where measured)
    predicted: Mapping[str, float]        # candidate -> predicted ms (with its split extra)

    def extra_for(self, plan: Plan) -> float:
        """What was added to ``plan``'s prediction: its family's measured excess, else the split extra; 0 for a
        baseline."""
        if not plan.is_split:
            return 0.0
        return self.family_extra_ms.get(family(plan), self.split_extra_ms)


@dataclasses.dataclass(frozen=True)
class PlanState:
    plan: Plan
    reason: PlanReason
    pricing: Pricing | None = None        # None only before the edge's profile arrived
    version: int = 0                      # +1 on every replacement

    @property
    def settled(self) -> bool:
        """The plan is what the robot will keep running on this link: fixed by the user, or plan auto's choice
        once priced by its own measured latency, with no trial running."""
        if self.reason is PlanReason.FIXED:
            return True
        if self.reason is PlanReason.DEGRADED:
            return False
        return (self.pricing is not None and self.reason is not PlanReason.TRIAL
                and self.plan.spec() in self.pricing.measured)

    def predicted_ms(self, spec: str | None = None) -> float | None:
        if self.pricing is None:
            return None
        return self.pricing.predicted.get(spec or self.plan.spec())


@dataclasses.dataclass(frozen=True)
class Status:
    """What the node publishes (PlanStatus) and logs: one snapshot, read without touching the controller's parts."""
    state: PlanState
    frame_ms: float                       # measured per-frame overhead, added to every reported prediction
    bandwidth_mbps: float                 # what the plan was priced for (or would be)
    describe: str                         # the plan in words

    @property
    def plan(self) -> Plan:
        return self.state.plan

    @property
    def settled(self) -> bool:
        return self.state.settled

    @property
    def predicted_ms(self) -> float | None:
        p = self.state.predicted_ms()
        return None if p is None else p + self.frame_ms

    @property
    def baselines(self) -> dict[str, Prediction]:
        p = self.state.pricing
        return dict(p.decision.baselines) if p is not None else {}

    @property
    def reason(self) -> str:
        s = self.state
        if s.pricing is None:
            return f"no edge profile yet: {self.describe}"
        chosen = s.pricing.decision.chosen
        if s.reason is PlanReason.DEGRADED:
            return f"{self.describe} ({s.reason.value})"
        if s.reason in (PlanReason.TRIAL, PlanReason.GUARD):
            return f"{self.describe} ({s.reason.value}; the planner chose {chosen.name})"
        return self.describe
