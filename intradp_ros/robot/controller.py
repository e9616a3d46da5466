"""PlanController: the one place that decides which plan the robot's next frame runs.

Threading model (robot_node's threads; tests drive the same entry points from their own):

- the **frame thread** calls :meth:`begin_frame` (the plan to run) and :meth:`end_frame` (what it measured);
- the **sender thread** calls :meth:`observe_send`;
- the **executor thread** (callbacks) calls :meth:`observe_timing`, :meth:`observe_bandwidth`,
  :meth:`set_edge_profile` and :meth:`configure` (live parameters);
- the **planner thread** (one, started here, at the lowest CPU priority) runs every planning pass, fed by
  :meth:`request`: requests that arrive while a pass runs are served by one more pass, which reads the newest
  inputs (two parameters set together plan once, not twice).

``_lock`` guards every field of this object and every part it owns (measurements, explorer, guard, config,
state). It is held only for short bookkeeping: a planning pass snapshots its inputs under it, prices without it
(a search takes a quarter-core robot seconds), and commits under it. ``_pass_lock`` lets one pass run at a time,
from the planner thread or :meth:`replan_now`. The plan state is immutable and replaced whole, so a reader sees a
plan together with the pricing it came from; ``on_change`` is called, without the lock, after every replacement.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Callable

from ..engine.graph import OpGraph
from ..engine.guard import PlanGuard
from ..engine.plan import Plan, compile_plan
from ..engine.profile import DeviceProfile
from .edge_load import EdgeLoad
from .explorer import Explorer
from .measurements import FrameRecord, Measurements
from .planning import parse_plan_choice, Planner
from .state import PlanReason, PlanState, Status

__all__ = ["PlanController"]

Log = Callable[[str], None]
LIVE_SETTINGS = ("plan", "bandwidth_mbps", "link_latency_ms", "encodings", "bandwidth_source", "min_split_gain",
                 "explore_margin")


def _checked_choice(text: str, graph: OpGraph, model: str) -> Plan | None:
    """A plan choice parsed and compiled, so that a bad one fails before it is in force; None for plan auto."""
    fixed = parse_plan_choice(text, graph, model)
    if fixed is not None:
        compile_plan(graph, fixed)
    return fixed


class PlanController:
    LINK_CHANGE = 0.25     # moved this far from the link's first estimate: a new link (wider than the estimate's noise)

    def __init__(self, graph: OpGraph, model: str, robot: DeviceProfile, cfg, log: Log = print,
                 warn: Log | None = None, on_change: Callable[[Status], None] | None = None, start: bool = True):
        self.graph, self.model = graph, model
        self._cfg = dataclasses.replace(cfg)
        self._log, self._warn, self._on_change = log, warn or log, on_change
        self._lock = threading.Lock()
        self._pass_lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self.measurements = Measurements(graph, robot)
        self.explorer = Explorer(graph, model)
        self.guard, self.edge_load = PlanGuard(), EdgeLoad()
        self.planner = Planner(self)
        self._fixed = _checked_choice(cfg.plan, graph, model)
        self._state = PlanState(self._fixed or Plan.local(graph, model),
                                PlanReason.FIXED if self._fixed else PlanReason.NO_EDGE)
        self._choice_gen = 0           # +1 when the user changes the plan: a pass priced for the old choice is void
        self._disturbed: collections.deque = collections.deque(maxlen=64)   # seqs not to judge plans by
        self._during_pass: collections.deque = collections.deque(maxlen=64)  # ... nor to calibrate compute by
        self._last_frame_spec, self._frames_since_priced = "", 0
        self.link_in_doubt = False     # the plan in force measures far off its prediction (Measurements.link_doubt)
        self._pending: list[str] = []  # why a pass was requested, since the last one started
        self._planning = self._stop = False
        self._reported_frame_ms: float | None = None
        self._edge_alive = True        # until told otherwise (robot_node's EdgeHealth)
        self.last_auto: PlanState | None = None     # the last state plan auto put in force (see Planner._commit)
        self._thread = threading.Thread(target=self.planner.serve, name="planner", daemon=True) if start else None
        if self._thread is not None:
            self._thread.start()

    # -- reading ------------------------------------------------------------------------------------------------
    state = property(lambda self: self._state, doc="The plan state in force (immutable; replaced whole).")

    @property
    def config(self):
        with self._lock:
            return dataclasses.replace(self._cfg)

    def status(self) -> Status:
        with self._lock:
            return self._status()

    def _status(self) -> Status:
        st = self._state
        mbps = st.pricing.mbps if st.pricing is not None else self._bandwidth()
        return Status(st, self.measurements.overhead.frame_ms(), mbps, st.plan.describe(self.graph))

    def predicted_total_ms(self, spec: str) -> float | None:
        """Plan ``spec``'s end-to-end prediction in the pricing in force (frame overhead included), or None."""
        with self._lock:
            p = self._state.predicted_ms(spec)
            return None if p is None else p + self.measurements.overhead.frame_ms()

    @property
    def pending(self) -> tuple[str, ...]:
        """Why passes were requested that have not started yet."""
        with self._lock:
            return tuple(self._pending)

    def _bandwidth(self) -> float:
        m = self.measurements.bandwidth_in_use
        return m if self._cfg.bandwidth_source == "measured" and m is not None else self._cfg.bandwidth_mbps

    # -- inputs -------------------------------------------------------------------------------------------------
    def configure(self, **settings) -> None:
        """Live settings (robot_node's parameters); PlanError / ValueError for a plan that cannot run."""
        unknown = set(settings) - set(LIVE_SETTINGS)
        if unknown:
            raise ValueError(f"not live settings: {sorted(unknown)}")
        fixed = _checked_choice(settings["plan"], self.graph, self.model) if "plan" in settings else self._fixed
        with self._lock:
            for k, v in settings.items():
                setattr(self._cfg, k, v)
            if "plan" in settings:
                self._fixed = fixed
                self._choice_gen += 1
        self.request("settings changed: " + ", ".join(sorted(settings)))

    def set_edge_profile(self, prof: DeviceProfile) -> None:
        if prof.key != self.graph.key:
            raise ValueError(f"the edge runs a different model or weights (hash {prof.key}, ours {self.graph.key}); "
                             "start both with the same model, weights and input_size")
        with self._lock:
            self.measurements.calibration.set_edge_profile(prof)
        self.request("edge profile")

    edge_alive = property(lambda self: self._edge_alive)

    def set_edge_alive(self, alive: bool, why: str) -> None:
        """Edge lost: all-local from the next frame (a fixed plan too). Back: a new link, and a planning pass."""
        with self._lock:
            if alive == self._edge_alive:
                return
            self._edge_alive = alive
            st = self._state
            if not alive:
                self._replace(PlanState(Plan.local(self.graph, self.model), PlanReason.DEGRADED, st.pricing,
                                        st.version + 1))
            else:
                self.planner.link_mbps = None
                self.edge_load.reset()
        if alive:
            self.request(f"edge back ({why})")
        else:
            self._warn(f"edge lost ({why}): running all-local until it is back")
        self._notify()

    def set_edge_load(self, others_busy: float, robots: int | None = None, stretch: float | None = None) -> None:
        """A shared edge's heartbeat: the share of it the other robots used, how many use it, and how much they
        stretched this robot's edge part (see EdgeLoad)."""
        with self._lock:
            live = self._fixed is None and self._edge_alive and self._state.pricing is not None
            why = self.edge_load.heard(others_busy, self.planner.planned_load if live else None, robots, stretch)
        if why:
            self.request(why)

    def exclude(self, seq: int) -> None:
        """Frame ``seq`` judges no plan (the robot rescued it: its latency is the deadline's)."""
        with self._lock:
            self._disturbed.append(seq)

    def set_process_send_cpu(self, small, large) -> tuple[float, float]:
        with self._lock:
            out = self.measurements.send.set_process_burst(small, large)
        self.request("process send cost measured")
        return out

    def observe_send(self, nbytes: int, cpu_ms: float) -> None:
        with self._lock:
            why = self.planner.send_cost_moved(nbytes, cpu_ms)
        if why:
            self.request(why)

    def observe_bandwidth(self, mbps: float) -> None:
        with self._lock:
            changed = self.measurements.observe_bandwidth(mbps, self.LINK_CHANGE)
            planned = self._state.pricing.mbps if self._state.pricing is not None else None
            now = self._bandwidth()
            moved = (changed and self._cfg.bandwidth_source == "measured" and planned is not None
                     and abs(now - planned) > self.LINK_CHANGE * planned)
        if moved:
            self.request(f"link measured at {now:.1f} Mbit/s (planned for {planned:.1f})")

    # -- frames -------------------------------------------------------------------------------------------------
    def begin_frame(self, seq: int) -> Plan:
        """The plan frame ``seq`` runs; disturbed when computed during a pass or first after a switch."""
        with self._lock:
            plan = self._state.plan
            spec = plan.spec()
            degraded = self._state.reason is PlanReason.DEGRADED
            if self._planning or degraded:
                self._during_pass.append(seq)
            if self._planning or degraded or spec != self._last_frame_spec:
                self._disturbed.append(seq)
            self._last_frame_spec = spec
            return plan

    def note_intake(self, seq: int, ms: float) -> None:
        """Frame ``seq`` took ``ms`` from its camera stamp to pre-processed (before its result can come back)."""
        with self._lock:
            self.measurements.overhead.note_intake(seq, ms)

    def end_frame(self, rec: FrameRecord) -> None:
        with self._lock:
            m = self.measurements
            if self._planning and rec.seq not in self._during_pass:
                self._during_pass.append(rec.seq)
                self._disturbed.append(rec.seq)
            if rec.seq not in self._during_pass:       # a pass shares the CPU: its frames compute slower
                m.record_frame(rec)
            drift = m.calibration.drift(self.planner.planned_scales) or m.own_drift(
                self._state, self._fixed is None, self._frames_since_priced, self.explorer.explored)
        if drift is not None:
            self.request(drift.why)

    def observe_timing(self, seq: int, spec: str, latency_ms: float, edge_ms: float = 0.0,
                       aggregator_ms: float | None = None) -> Plan | None:
        """A frame's measured latency (FrameTiming), credited to its plan; the new plan when the guard switches."""
        switched = report = None
        with self._lock:
            m, st = self.measurements, self._state
            if aggregator_ms is not None and m.overhead.observe(seq, aggregator_ms):
                self.guard.offset = m.overhead.frame_ms()
                report = m.overhead.moved_since(self._reported_frame_ms)
            m.calibration.observe_edge(spec, edge_ms)
            self._frames_since_priced += 1
            undisturbed = seq not in self._disturbed
            if undisturbed:
                m.record_latency(st, spec, latency_ms)
                self.link_in_doubt = self._cfg.bandwidth_source == "measured" and m.link_doubt(st)
            if (self._fixed is None and st.pricing is not None
                    and st.reason not in (PlanReason.FIXED, PlanReason.DEGRADED)):
                if undisturbed:
                    self.guard.observe(spec, latency_ms)
                current = st.plan.spec()
                nxt = self.guard.pick(current)
                if nxt != current:
                    self._warn(f"plan {current} measures {self.guard.measured(current):.1f} ms (predicted "
                               f"{(st.predicted_ms() or float('nan')) + m.overhead.frame_ms():.1f}); switching to "
                               f"{nxt} (score {self.guard.score(nxt):.1f} ms)")
                    switched = Plan.parse(nxt)
                    self._replace(PlanState(switched, PlanReason.GUARD, st.pricing, st.version + 1))
        if switched is not None or report:
            self._notify()
        return switched

    # -- planning -----------------------------------------------------------------------------------------------
    def request(self, why: str) -> None:
        """Ask for a planning pass (served by the planner thread; coalesced while one runs)."""
        with self._wake:
            if not self._pending:
                self._log(f"{why}: re-planning")
            self._pending.append(why)
            self._wake.notify()

    def replan_now(self, why: str = "asked") -> PlanState:
        """Run one pass in the calling thread (tests, tools): serialised with the planner thread."""
        with self._lock:
            self._pending.clear()
        self.planner.run_pass(why)
        return self._state

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """True once no pass is running or requested (for tests and tools)."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._pending and not self._planning, timeout)

    def close(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _replace(self, state: PlanState) -> None:
        """Put ``state`` in force (under the lock); the caller calls :meth:`_notify` after releasing it."""
        if state.plan.spec() != self._state.plan.spec():
            compile_plan(self.graph, state.plan)
        self._state = state
        self.last_auto = state if state.reason.auto else self.last_auto

    def _notify(self) -> None:
        if self._on_change is None:
            return
        with self._lock:
            status = self._status()
            self._reported_frame_ms = status.frame_ms
        self._on_change(status)
