"""Measured / predicted compute, per side and per plan: how far frames stray from the start-up profiles.

Under a CPU quota the robot's other threads and processes (DDS, the aggregator, the camera driver) eat into the
same budget while it computes, and a shared edge has load its profile never saw, so frames run slower than the
start-up profiles. The planner prices plans with the profiles re-scaled by these ratios.

Not thread-safe: owned by :class:`~intradp_ros.robot.controller.PlanController`, called under its lock.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import statistics
from typing import NamedTuple


from ..engine.cost import edge_compute_ms, robot_compute_ms
from ..engine.graph import OpGraph
from ..engine.plan import Plan, PlanError
from ..engine.profile import DeviceProfile

__all__ = ["Scales", "Calibration", "Drift", "DriftCause"]

MIN_FRAMES = 3          # a ratio is used once this many frames measured it
MIN_EXPECTED_MS = 5.0   # a plan part the start-up profile prices below this says nothing (timer noise)


class DriftCause(enum.Enum):
    """Why the candidates should be priced again (a search only if a cost halved or doubled: see pricing)."""
    COMPUTE = "compute"                # the blended calibration moved 20 % from what priced the candidates
    FIRST_MEASURED = "first measured"  # the plan in force measured for the first time (settles a choice, ends a trial)
    LATENCY = "latency"                # the plan in force's measured latency moved 10 %
    SPLIT_EXTRA = "split extra"        # what split plans measure beyond their predictions moved 10 ms
    OWN_COMPUTE = "own compute"        # the plan in force's own calibration moved


class Drift(NamedTuple):
    cause: DriftCause
    why: str                           # one line for the log


class Scales(NamedTuple):
    """Measured / predicted compute: robot whole-tensor ops, robot row tiles, edge."""
    whole: float = 1.0
    tiles: float = 1.0
    edge: float = 1.0

    def moved(self, other: "Scales", rel: float) -> bool:
        return any(abs(a - b) > rel * b for a, b in zip(self, other))


class Calibration:
    """Ratio windows: one per part (whole ops, tiles, edge) blending every plan's frames, and one per part and plan.

    Row tiles are measured apart from whole ops: their error differs (plans mixing the two made one shared factor
    swing 0.8-1.6x and re-plan over and over). Per plan, because ops differ in how far they stray from the start-up
    profile (the early high-resolution layers vs the deep ones): a plan's own frames price it better than a blend.
    """

    WINDOW = 24
    PLAN_WINDOW = 12
    MAX_PLANS = 256

    def __init__(self, graph: OpGraph, robot: DeviceProfile):
        self.graph, self.robot = graph, robot
        self.edge: DeviceProfile | None = None
        self._blend = {part: collections.deque(maxlen=self.WINDOW) for part in Scales._fields}
        self._per_plan: dict[tuple[str, str], collections.deque] = {}
        self._expected: dict[tuple[str, str], object] = {}   # (side, plan text) -> start-up profile's prediction

    def set_edge_profile(self, prof: DeviceProfile) -> None:
        if prof != self.edge:
            self._blend["edge"].clear()           # measured against the previous profile
            for key in [k for k in self._per_plan if k[0] == "edge"]:
                del self._per_plan[key]
            self._expected.clear()
        self.edge = prof

    def clear(self) -> None:
        for d in self._blend.values():
            d.clear()
        self._per_plan.clear()

    # -- observations ---------------------------------------------------------------------------------------------
    def observe_robot(self, spec: str, whole_ms: float, tiles_ms: float) -> None:
        """One frame's measured robot compute (whole ops, row tiles) under plan ``spec``."""
        try:
            whole, tiles = self.expected("robot", spec)
        except PlanError:
            return
        if whole > MIN_EXPECTED_MS:
            self.add("whole", spec, whole_ms / whole)
        if tiles > MIN_EXPECTED_MS:
            self.add("tiles", spec, tiles_ms / tiles)

    def observe_edge(self, spec: str, edge_ms: float) -> None:
        """One frame's edge compute as the edge reported it (FrameTiming)."""
        if self.edge is None or edge_ms <= 0.0:
            return
        try:
            expected = self.expected("edge", spec)
        except PlanError:
            return
        if expected > MIN_EXPECTED_MS:
            self.add("edge", spec, edge_ms / expected)

    def add(self, part: str, spec: str, ratio: float) -> None:
        self._blend[part].append(ratio)
        d = self._per_plan.get((part, spec))
        if d is None:
            if len(self._per_plan) >= self.MAX_PLANS:
                self._per_plan.clear()
            d = self._per_plan[(part, spec)] = collections.deque(maxlen=self.PLAN_WINDOW)
        d.append(ratio)

    def expected(self, side: str, spec: str):
        """The start-up profiles' compute for plan ``spec``: robot (whole ops, row tiles) or edge ms; cached,
        since every frame asks."""
        key = (side, spec)
        if key not in self._expected:
            plan = Plan.parse(spec)
            if len(self._expected) >= self.MAX_PLANS:
                self._expected.clear()
            self._expected[key] = (robot_compute_ms(self.graph, plan, self.robot) if side == "robot"
                                   else edge_compute_ms(self.graph, plan, self.edge))
        return self._expected[key]

    # -- estimates ------------------------------------------------------------------------------------------------
    def scales(self) -> Scales:
        """Medians of the blended windows (1 until MIN_FRAMES frames measured a part)."""
        return Scales(*(_median(self._blend[p], 1.0) for p in Scales._fields))

    def own(self, spec: str, default: Scales) -> Scales:
        """Plan ``spec``'s own ratios where its frames measured them, else ``default``'s."""
        return Scales(*(_median(self._per_plan.get((p, spec)), d) for p, d in zip(Scales._fields, default)))

    def own_all(self, default: Scales) -> dict[str, Scales]:
        """:meth:`own` for every plan whose frames measured some part (a snapshot for a planning pass)."""
        return {spec: self.own(spec, default) for spec in {k[1] for k in self._per_plan}}

    def drift(self, planned: Scales | None, rel: float = 0.2) -> Drift | None:
        """The blended compute moved enough from ``planned`` to re-plan, or None."""
        if planned is None:
            return None
        now = self.scales()
        moved = [p for p, a, b in zip(Scales._fields, now, planned)
                 if len(self._blend[p]) >= MIN_FRAMES and abs(a - b) > rel * b]
        if not moved:
            return None
        return Drift(DriftCause.COMPUTE,
                     f"robot / edge compute at {now.whole:.2f}x (tiles {now.tiles:.2f}x) / {now.edge:.2f}x their "
                     f"start-up profiles (planned with {planned.whole:.2f}x / {planned.tiles:.2f}x / "
                     f"{planned.edge:.2f}x)")

    def robot_profile(self, s: Scales) -> DeviceProfile:
        """The start-up robot profile re-calibrated by ``s`` (tiles relative to whole ops, as compute_ms applies)."""
        return dataclasses.replace(self.robot, scale=self.robot.scale * s.whole,
                                   tile_scale=self.robot.tile_scale * s.tiles / s.whole)

    def edge_profile(self, s: Scales) -> DeviceProfile:
        return self.edge.scaled(s.edge)

    def counts(self) -> dict[str, int]:
        return {p: len(d) for p, d in self._blend.items()}


def _median(d, default: float) -> float:
    return float(statistics.median(d)) if d is not None and len(d) >= MIN_FRAMES else default
