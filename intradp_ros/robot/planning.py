"""A planning pass as the controller runs it: snapshot the measurements, price, commit a new plan state.

:class:`Planner` is the controller's planning half (split off to keep each class to one reading): it owns what
the last passes used (the link, the last search, the shortlist, the planned calibration) and touches the
controller's parts only under the controller's lock, except :func:`~.pricing.run_pass`, which runs on frozen
inputs without it.
"""
from __future__ import annotations

import os
import threading

from ..engine.cost import predict
from ..engine.graph import OpGraph
from ..engine.plan import Plan, PlanError
from ..engine.search import SearchOptions
from .calibration import Scales
from .pricing import PassInputs, PassResult, SearchMemo, on_its_own, run_pass
from .state import Pricing, PlanReason, PlanState, ReplanKind, frozen_map

__all__ = ["Planner", "parse_plan_choice"]


def parse_plan_choice(choice: str, graph: OpGraph | None, model: str) -> Plan | None:
    """'auto' -> None (planner decides); 'local' | 'offload' | 'cut:<k>' | a plan text -> that plan. Without a
    graph (before the model is loaded) only the text is checked, and None returned: a bad choice fails early."""
    c = (choice or "auto").strip()
    if c == "auto" or (graph is None and c in ("local", "offload")):
        return None
    if c == "local":
        return Plan.local(graph, model)
    if c == "offload":
        return Plan.offload(graph, model)
    try:
        if c.startswith("cut:"):
            k = int(c[4:])
            return Plan.cut(graph, model, k) if graph is not None else None
        plan = Plan.parse(c)
        return plan if graph is not None else None
    except (PlanError, ValueError) as e:
        raise PlanError(f"plan {c!r} is none of auto | local | offload | cut:<op index> | a plan text "
                        f"(`./intradp plan-report` lists them): {e}") from None


class Planner:
    SEND_CHECK_EVERY = 8

    def __init__(self, controller):
        self.c = controller
        self.link_epoch = 0
        self.local_spec = Plan.local(controller.graph, controller.model).spec()   # measured across links
        self.link_mbps: float | None = None        # the current link's first estimate
        self.last_search: SearchMemo | None = None
        self.shortlist: tuple[Plan, ...] = ()       # of the last decision for plan auto
        self.planned_scales: Scales | None = None
        self.planned_msg_ms: float | None = None
        self.planned_load: float | None = None      # the edge load factor the plan in force was priced with
        self.last_kind: ReplanKind | None = None
        self.passes = 0
        self.running = 0                            # passes running now (at most 1: see run_pass)
        self.most_running = 0

    def search_options(self) -> SearchOptions:
        encs = tuple(e.strip() for e in self.c._cfg.encodings.split(",") if e.strip()) or ("raw",)
        return SearchOptions(encodings=encs, min_split_gain=self.c._cfg.min_split_gain)

    def serve(self) -> None:
        """The planner thread's loop (see PlanController): one pass per batch of requests."""
        c = self.c
        _lowest_priority()
        while True:
            with c._wake:
                c._wake.wait_for(lambda: c._pending or c._stop)
                if c._stop:
                    return
                why = "; ".join(dict.fromkeys(c._pending))
                c._pending.clear()
            try:
                self.run_pass(why)
            except Exception as e:  # noqa: BLE001 - the planner thread must outlive one bad pass
                c._warn(f"planning failed ({why}): {e!r}; keeping plan {c._state.plan.spec()}")
            with c._wake:
                c._wake.notify_all()

    def run_pass(self, why: str) -> None:
        c = self.c
        with c._pass_lock:
            with c._lock:
                inputs, new_link, gen = self._snapshot()
                c._planning = inputs is not None
            if inputs is None:
                c._notify()
                return
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            try:
                result = run_pass(inputs)
            finally:
                self.running -= 1
                with c._lock:
                    c._planning = False
            with c._lock:
                if gen != c._choice_gen or not c._edge_alive:
                    return            # the user changed the plan, or the edge went: priced for what no longer is
                lines = self._commit(inputs, result, new_link)
            self.passes += 1
        for line in lines:
            c._log(line)
        c._notify()

    def _snapshot(self):
        """The pass's frozen inputs (None before the edge's profile: the plan is then the user's or all-local)."""
        c, m = self.c, self.c.measurements
        if not c._edge_alive:
            return None, False, c._choice_gen       # all-local until the edge is back (set_edge_alive)
        if m.calibration.edge is None:
            plan = c._fixed or Plan.local(c.graph, c.model)
            reason = PlanReason.FIXED if c._fixed else PlanReason.NO_EDGE
            if plan != c._state.plan or reason != c._state.reason:
                c._replace(PlanState(plan, reason, None, c._state.version + 1))
            return None, False, c._choice_gen
        mbps = c._bandwidth()
        new_link = self.link_mbps is None or abs(mbps - self.link_mbps) > c.LINK_CHANGE * self.link_mbps
        if new_link:
            # what split plans miss grows with the rate, and latencies are the link's: learned per link
            m.latency.clear(keep=(self.local_spec,))
            c.explorer.clear()
            self.link_epoch += 1
            self.link_mbps = mbps
        scales = m.calibration.scales()
        link = m.link(mbps, c._cfg.link_latency_ms)
        inputs = PassInputs(c.graph, c.model, c._fixed, self.search_options(), m.robot, m.calibration.edge, link,
                            scales, m.own_scales(scales),
                            m.latency.measured(m.overhead.frame_ms(), c.explorer.explored),
                            m.latency.split_extra_ms(), self.last_search, self.shortlist, c.edge_load.factor)
        self.planned_scales, self.planned_msg_ms, self.planned_load = scales, link.msg_ms, c.edge_load.factor
        c._frames_since_priced = 0
        return inputs, new_link, c._choice_gen

    def _commit(self, inputs: PassInputs, result: PassResult, new_link: bool) -> list[str]:
        c, d = self.c, result.decision
        self.last_kind = result.kind
        if result.memo is not None:
            self.last_search = result.memo
        candidates = [d.chosen, *d.baselines.values()]
        own = dict(result.own_scales)
        trial = None
        prev = c._state
        # the incumbent: the plan auto ran last on this link, the plan in force or, back from a fixed plan, the one
        # it replaced (a bench takes turns with fixed baselines; each turn must resume, not restart, plan auto),
        # unless the link moved since (under the fixed plan): then auto's old plan is no incumbent, else it carried
        # on over the new link's choice, which, not measured, never ran
        last = c.last_auto
        same_link = last is not None and last.pricing is not None and last.pricing.link_epoch == self.link_epoch
        incumbent = prev if prev.reason.auto else last if not new_link and same_link else None
        if inputs.fixed is None and incumbent is not None and incumbent.pricing is not None:
            # the incumbent stays a candidate, priced like the rest: else a choice that moves to another plan
            # not yet measured would replace it unseen, and re-prices would take turns between such plans
            plan = incumbent.plan
            if plan.spec() not in {p.plan.spec() for p in candidates} and plan.model == inputs.model:
                p, own[plan.spec()] = on_its_own(inputs, result.evidence, result.price(inputs, plan))
                candidates.append(p)
        if inputs.fixed is None:
            self.shortlist = tuple(d.shortlist)
            t = c.explorer.next_trial(d, dict(inputs.measured), lambda plan: result.price(inputs, plan),
                                      c._cfg.explore_margin)
            if t is not None:
                t, own[t.plan.spec()] = on_its_own(inputs, result.evidence, t)
                candidates.append(t)
                trial = t.plan.spec()
        predicted = {p.plan.spec(): p.latency_ms for p in candidates}
        ev = result.evidence
        pricing = Pricing(result.kind, d, self.link_epoch, inputs.link.bandwidth_mbps, inputs.link.msg_ms,
                          inputs.scales, ev.split_extra_ms, frozen_map(ev.family_extra_ms), frozen_map(inputs.measured),
                          frozen_map(own), frozen_map(predicted))
        chosen = d.chosen.plan.spec()
        if inputs.fixed is not None:
            # a plan the user fixed runs as given; the guard keeps auto's candidates and what it measured of them,
            # for when plan goes back to auto on this link
            state = PlanState(d.chosen.plan, PlanReason.FIXED, pricing, prev.version + 1)
        else:
            # latencies measured on this link stay when only a cost estimate moved: then the guard, not the
            # planner alone, decides (a plan measured worse than another is not chosen again)
            c.guard.reset(predicted, keep=not new_link or (self.local_spec,))
            # the plan in force carries on if the planner put it there and the choice is a prediction, or a
            # measurement no better than the plan in force measured by the guard's margin: medians of a few frames
            # differ by noise alone, and two plans that measure alike must not take turns at every re-price
            # A trial that was measured is over: the choice, priced with what the trial measured, decides between
            # them without the margin (the trial was run to compare the two; keeping a trial that measured a few
            # per cent slower than the plan it interrupted, as the margin would, made that plan's own cell worse)
            measured, now = inputs.measured, incumbent.plan.spec() if incumbent is not None else ""
            trial_over = incumbent is not None and incumbent.reason is PlanReason.TRIAL and now in measured
            carry_on = (not new_link and not trial_over and now in predicted
                        and (chosen not in measured
                             or (now in measured and measured[chosen] > (1.0 - c.guard.gain(chosen)) * measured[now])))
            start = trial or (now if carry_on else chosen)
            picked = c.guard.pick(start)
            reason = (PlanReason.TRIAL if trial and picked == trial else PlanReason.GUARD if picked != start
                      else PlanReason.CARRIED if picked != chosen else PlanReason.CHOSEN)
            state = PlanState(Plan.parse(picked), reason, pricing, prev.version + 1)
        c._replace(state)
        lines = d.report().splitlines()
        lines[0] += f"  ({result.kind.value}: {d.considered} plans priced)"
        if trial and state.reason is PlanReason.TRIAL:
            lines.append(f"  trying {state.plan.describe(c.graph)} for a few frames: predicted within "
                         f"{c._cfg.explore_margin:.0%} of the choice; its measured latency will decide")
        return lines

    def send_cost_moved(self, nbytes: int, cpu_ms: float) -> str:
        """Record a sent message (under the controller's lock); why to re-plan, or "": the per-message cost moved
        by half, for plan auto, and the plan in force is priced 10 % differently for it (a re-plan costs the robot
        CPU its frames need)."""
        c, send = self.c, self.c.measurements.send
        send.observe_send(nbytes, cpu_ms)
        if (c._fixed is not None or self.planned_msg_ms is None or len(send.sends) < send.MIN_SENDS
                or len(send.sends) % self.SEND_CHECK_EVERY):
            return ""
        now = send.msg_ms()
        if abs(now - self.planned_msg_ms) <= max(0.5, 0.5 * self.planned_msg_ms):
            return ""
        st, m = c._state, c.measurements
        planned = st.predicted_ms()
        why = f"measured send cost {now:.2f} ms/message (planned with {self.planned_msg_ms:.2f})"
        if planned is None or m.calibration.edge is None:
            return why
        robot = m.calibration.robot_profile(m.calibration.scales())
        edge = m.calibration.edge_profile(m.calibration.scales()).scaled(self.planned_load or 1.0)
        new = predict(c.graph, st.plan, robot, edge, m.link(c._bandwidth(), c._cfg.link_latency_ms)).latency_ms
        return why if abs(new - planned) > 0.1 * planned else ""


def _lowest_priority() -> None:
    """nice 19 for the calling thread (Linux applies nice per thread): on a CPU-capped robot a search takes
    seconds of wall time, and the frame in progress should not wait for it. Elsewhere nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
