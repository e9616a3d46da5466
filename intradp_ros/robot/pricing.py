"""One planning pass, from a snapshot of what the robot measured to the candidates' prices.

Pure functions of frozen inputs: the controller takes the snapshot under its lock, runs the pass on its planner
thread without the lock (a search takes a quarter-core robot seconds), and commits the result under the lock.
"""
from __future__ import annotations

import dataclasses
import statistics
from typing import Mapping


from ..engine.cost import LinkModel, Prediction, predict
from ..engine.graph import OpGraph
from ..engine.plan import Plan, PlanError
from ..engine.profile import DeviceProfile
from ..engine.search import Decision, Evidence, Family, Problem, SearchOptions, choose, family, with_split_extra
from .calibration import Scales
from .explorer import split_plans
from .state import ReplanKind

__all__ = ["SearchMemo", "PassInputs", "PassResult", "run_pass", "family_extra"]


@dataclasses.dataclass(frozen=True)
class SearchMemo:
    """The inputs of the last full search: a later pass re-prices its shortlist (~30x cheaper) unless the link or
    a planner setting changed, or a cost estimate halved or doubled (the best plans may then lie outside it)."""
    options: SearchOptions
    link_latency_ms: float
    mbps: float
    costs: tuple[float, float, float, float]     # robot scale, robot tile scale, edge scale, ms per message

    def still_holds(self, other: "SearchMemo") -> bool:
        if (self.options != other.options or self.link_latency_ms != other.link_latency_ms
                or abs(other.mbps - self.mbps) > 0.1 * self.mbps):
            return False
        return all(0.5 <= (now + 1e-9) / (then + 1e-9) <= 2.0 for now, then in zip(other.costs, self.costs))


@dataclasses.dataclass(frozen=True)
class PassInputs:
    graph: OpGraph
    model: str
    fixed: Plan | None                    # the plan the user fixed, or None for plan auto
    options: SearchOptions
    robot: DeviceProfile                  # start-up profiles, un-scaled
    edge: DeviceProfile
    link: LinkModel
    scales: Scales                        # blended calibration
    own_scales: Mapping[str, Scales]      # plan text -> its own calibration, where its frames measured one
    measured: Mapping[str, float]
    split_extra_ms: float
    last_search: SearchMemo | None
    shortlist: tuple[Plan, ...]           # of the last decision for plan auto
    edge_load: float = 1.0                # the queueing the other robots on a shared edge add (robot.edge_load)

    def profiles(self, s: Scales) -> tuple[DeviceProfile, DeviceProfile]:
        robot = dataclasses.replace(self.robot, scale=self.robot.scale * s.whole,
                                    tile_scale=self.robot.tile_scale * s.tiles / s.whole)
        return robot, self.edge.scaled(s.edge * self.edge_load)

    def memo(self) -> SearchMemo:
        robot, edge = self.profiles(self.scales)
        return SearchMemo(self.options, self.link.latency_ms, self.link.bandwidth_mbps,
                          (robot.scale, robot.tile_scale, edge.scale, self.link.msg_ms))


@dataclasses.dataclass(frozen=True)
class PassResult:
    kind: ReplanKind
    decision: Decision                    # chosen and baselines priced on their own calibration
    evidence: Evidence
    memo: SearchMemo | None               # set when this pass searched
    own_scales: Mapping[str, Scales]      # what priced each of the decision's candidates

    def price(self, inputs: PassInputs, plan: Plan) -> Prediction:
        """``plan`` as the search priced it (blended calibration, with its split extra): for trials."""
        robot, edge = inputs.profiles(inputs.scales)
        return with_split_extra(predict(inputs.graph, plan, robot, edge, inputs.link), self.evidence)


def family_extra(inputs: PassInputs, robot: DeviceProfile, edge: DeviceProfile) -> dict[Family, float]:
    """Per family of split plans with measured plans: median measured - predicted (other tile counts or
    encodings of a measured segment err alike, so they must not look better than it by prediction alone)."""
    out: dict[Family, list[float]] = {}
    for plan in split_plans(inputs.measured, inputs.model):
        try:
            q = predict(inputs.graph, plan, robot, edge, inputs.link).latency_ms
        except PlanError:
            continue
        out.setdefault(family(plan), []).append(inputs.measured[plan.spec()] - q)
    return {k: float(statistics.median(v)) for k, v in out.items()}


def on_its_own(inputs: PassInputs, evidence: Evidence, p: Prediction) -> tuple[Prediction, Scales]:
    """``p`` re-predicted with the plan's own calibration where its frames measured one: a candidate's prediction
    (and the guard's score for it) then follows what that plan measured, not the blend of whatever plans ran
    lately (plans that take turns would otherwise be priced by each other's frames)."""
    own = inputs.own_scales.get(p.plan.spec(), inputs.scales)
    if own == inputs.scales:
        return p, own
    robot, edge = inputs.profiles(own)
    q = predict(inputs.graph, p.plan, robot, edge, inputs.link)
    extra = evidence.family_extra_ms.get(family(p.plan), evidence.split_extra_ms) if p.plan.is_split else 0.0
    return dataclasses.replace(q, name=p.name, latency_ms=q.latency_ms + extra), own


def run_pass(inputs: PassInputs) -> PassResult:
    """Price the candidates: the user's fixed plan with the baselines, or plan auto's search (or re-price)."""
    robot, edge = inputs.profiles(inputs.scales)
    problem = Problem(inputs.graph, inputs.model, robot, edge, inputs.link)
    evidence = Evidence(measured=dict(inputs.measured), split_extra_ms=inputs.split_extra_ms,
                        family_extra_ms=family_extra(inputs, robot, edge))
    memo = None
    if inputs.fixed is not None:
        decision = choose(problem, inputs.options, baselines_only=True)
        chosen = predict(inputs.graph, inputs.fixed, robot, edge, inputs.link)
        decision.chosen = with_split_extra(chosen, evidence) if inputs.fixed.is_split else chosen
        kind = ReplanKind.BASELINES
    elif inputs.last_search is None or not inputs.shortlist or not inputs.last_search.still_holds(inputs.memo()):
        decision = choose(problem, inputs.options, evidence)
        memo, kind = inputs.memo(), ReplanKind.SEARCH
    else:
        decision = choose(problem, inputs.options, evidence, shortlist=inputs.shortlist)
        kind = ReplanKind.REPRICE
    own: dict[str, Scales] = {}
    decision.chosen, own[decision.chosen.plan.spec()] = on_its_own(inputs, evidence, decision.chosen)
    baselines = {}
    for name, p in decision.baselines.items():
        baselines[name], own[p.plan.spec()] = on_its_own(inputs, evidence, p)
    decision.baselines = baselines
    return PassResult(kind, decision, evidence, memo, own)
