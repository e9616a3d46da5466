"""Trials: run a split plan for a few frames when the cost model cannot tell it from the choice.

The model's error differs from plan to plan by more than the gaps between the best plans (on the quarter-core
bench all-offload measures 5-15 ms above its prediction, splits streaming the input 20-50 ms, splits computing
rows on the robot up to 100+ ms), so near the top only measurements tell which is faster.

Not thread-safe: owned by :class:`~intradp_ros.robot.controller.PlanController`, called under its lock.
"""
from __future__ import annotations

from typing import Callable, Iterable

from ..engine.cost import Prediction
from ..engine.graph import OpGraph
from ..engine.plan import Plan, PlanError, compile_plan
from ..engine.search import Decision

__all__ = ["Explorer", "split_plans"]


def split_plans(specs: Iterable[str], model: str) -> list[Plan]:
    """The split plans of ``model`` among plan texts (they may come from any message: bad ones are skipped)."""
    out = []
    for spec in specs:
        try:
            plan = Plan.parse(spec)
        except PlanError:
            continue
        if plan.is_split and plan.model == model:
            out.append(plan)
    return out


class Explorer:
    """Which split plans were tried on this link, and the one running as a trial now (if any)."""

    SEGMENTS = 3     # segments of the shortlist whose best plan may be tried on each link

    def __init__(self, graph: OpGraph, model: str):
        self.graph, self.model = graph, model
        self.explored: set[str] = set()
        self.trial: str | None = None

    def clear(self) -> None:
        """A new link: every segment may be tried again."""
        self.explored.clear()
        self.trial = None

    def next_trial(self, decision: Decision, measured: dict[str, float], price: Callable[[Plan], Prediction],
                   margin: float) -> Prediction | None:
        """A split plan to run until measured, or None (and :attr:`trial` set to match).

        Candidates: the best plan of each of the shortlist's first SEGMENTS segments where the edge computes some
        rows and its share is worth ``margin`` of the choice or more, priced (prediction + split extra) within
        ``margin`` of the choice (its measured latency once it has one). Each is tried once per link, one at a
        time; a trial carries on through re-plans until measured."""
        p = self._pick(decision, measured, price, margin) if margin > 0.0 and decision.shortlist else None
        self.trial = p.plan.spec() if p is not None else None
        return p

    def _pick(self, decision, measured, price, margin) -> Prediction | None:
        if self.trial in self.explored and self.trial not in measured:
            return price(Plan.parse(self.trial))     # a re-plan before the trial was measured: carry on
        if len(self.explored) >= self.SEGMENTS:
            return None
        chosen = decision.chosen.plan.spec()
        reference = measured.get(chosen, decision.chosen.latency_ms)
        limit = (1.0 + margin) * reference
        # a segment is known once any of its plans was measured or tried on this link (variants of one segment,
        # other tiles or encodings, measure alike next to the differences between segments)
        known = {(p.seg_start, p.seg_end) for p in split_plans([*self.explored, *measured, chosen], self.model)}
        seen: set[tuple[int, int]] = set()
        segments = 0
        for plan in decision.shortlist:            # best first
            seg = (plan.seg_start, plan.seg_end)
            if seg in seen:
                continue
            seen.add(seg)
            try:
                if not compile_plan(self.graph, plan).edge_work:
                    continue      # the robot computes every row: a layer-wise cut in tiles, which baselines cover
            except PlanError:
                continue
            spec = plan.spec()
            if spec == chosen and spec not in measured:
                return None                        # the choice itself is still to be measured
            p = None if seg in known else price(plan)
            if p is not None and p.edge_ms < margin * reference:
                continue     # the edge's share is worth less than the margin: too little to learn for its frames
            segments += 1
            if segments > self.SEGMENTS:
                return None
            if p is not None and p.latency_ms < limit:
                self.explored.add(spec)
                return p
        return None
