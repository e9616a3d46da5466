"""edge_node's fleet: which robots it serves (admission), their tiles' fair queue, their load, and who left.

Robots announce themselves on the roster (``intradp/robots``: each robot_node's PlanStatus, again every few
seconds while it runs, and once with an empty plan when it stops). The edge admits up to ``max_robots`` sessions;
a robot beyond that is refused (counted, logged) and learns from the heartbeat that the edge is full. A robot
neither announced nor served for ``robot_timeout_s`` has gone (crashed, or unplugged): its state is freed.
Each robot's outputs go to ``<its namespace>/intradp/tiles/outputs`` (PlanStatus.robot_namespace), where only
its aggregator listens; the heartbeat lists a robot once that publisher has matched it, so a robot that sees
itself listed knows its outputs have a way back.

Threads: :meth:`roster` runs on the executor, :meth:`admits` on the tile receiver's thread (it reads
``admitted``, a frozenset replaced whole), :meth:`leaving` and the queue's consumer side on the compute thread,
:meth:`fill` on the heartbeat timer (executor); the compute thread reads ``outputs`` (session -> publisher,
replaced whole). ``_lock`` guards ``_admitted``, ``_left`` and the replacing of ``outputs``; ``_publishers`` (per
namespace, made on the executor) is the executor's.
"""
from __future__ import annotations

import collections
import threading

from rclpy.validate_full_topic_name import validate_full_topic_name

from intradp_ros.engine.admission import Admission
from intradp_ros.engine.fleet import FairQueue, FleetLoad, RobotLoad
from intradp_ros.msg import EdgeStatus, PlanStatus
from intradp_ros.nodes.common import declare
from intradp_ros.topology import TOPICS

__all__ = ["EdgeFleet", "outputs_topic"]


def outputs_topic(namespace: str) -> str | None:
    """Where the outputs of a robot in ``namespace`` go ("" = the root), or None for a name that is no namespace
    (a forged roster entry must not take the node down when its publisher is made)."""
    ns = "/" + (namespace or "").strip("/")
    topic = ns.rstrip("/") + "/" + TOPICS["outputs"].name
    try:
        validate_full_topic_name(topic)
    except Exception:  # noqa: BLE001 - rclpy's InvalidTopicNameException, and anything else it finds wrong
        return None
    return topic


class EdgeFleet:
    @staticmethod
    def declare_parameters(node) -> tuple[int, float]:
        """edge_node's parameters of the fleet: (max_robots, robot_timeout_s)."""
        return (declare(node, "max_robots", 0, "serve at most this many robots at once (0 = no limit): beyond it "
                        "robots are told the edge is full and plan without it", True, (0, 4096)),
                declare(node, "robot_timeout_s", 6.0, "free the state of a robot neither announced nor served for "
                        "this long (robots announce every 2 s)", True, (0.5, 3600.0)))

    def __init__(self, max_robots: int, robot_timeout_s: float, counters, report, make_outputs):
        """``make_outputs(topic)``: a publisher of outputs on that (absolute) topic."""
        self.max_robots, self.robot_timeout_s = int(max_robots), float(robot_timeout_s)
        self.counters, self.report = counters, report
        self.queue = FairQueue()
        self.load = FleetLoad()
        self._lock = threading.Lock()
        self._admitted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._left: list[str] = []
        self.admitted: frozenset[str] = frozenset()
        self._make_outputs = make_outputs
        self._publishers: dict[str, object] = {}
        self.outputs: dict[str, object] = {}

    def admits(self, session: str) -> bool:
        return session in self.admitted

    def roster(self, msg: PlanStatus) -> None:
        """Executor: a robot's announcement (an empty plan: it is leaving)."""
        s = msg.session
        if not s:
            return
        topic = outputs_topic(msg.robot_namespace)
        if topic is None:
            self.counters.inc("bad_roster")
            self.report("bad_roster", f"robot session {s} ignored: its namespace {msg.robot_namespace[:80]!r} is "
                        "not a ROS namespace")
            return
        with self._lock:
            if not msg.plan_spec:
                if s in self._admitted:
                    del self._admitted[s]
                    self._left.append(s)
            elif s in self._admitted:
                self._admitted.move_to_end(s)
            elif self.max_robots and len(self._admitted) >= self.max_robots:
                self.counters.inc("robots_refused")
                self.report("robots_refused", f"robot session {s} refused: this edge serves its max_robots "
                            f"({self.max_robots}) already; it plans without this edge until one leaves")
                return
            else:
                self._admitted[s] = None
                while len(self._admitted) > Admission.MAX_SESSIONS:
                    self._left.append(self._admitted.popitem(last=False)[0])
            if msg.plan_spec and s not in self.outputs:
                self.outputs = {**self.outputs, s: self._publisher(topic)}
            self.admitted = frozenset(self._admitted)
        if msg.plan_spec:
            self.load.seen(s)

    def leaving(self) -> list[str]:
        """Compute thread: the sessions to free now (announced leaving, or silent for robot_timeout_s)."""
        quiet = self.load.quiet_since(self.robot_timeout_s)
        with self._lock:
            gone = list(dict.fromkeys(self._left + quiet))
            self._left.clear()
            for s in gone:
                self._admitted.pop(s, None)
            self.admitted = frozenset(self._admitted)
            self.outputs = {s: p for s, p in self.outputs.items() if s in self._admitted}
        for s in gone:
            self.queue.forget(s)
            self.load.forget(s)
        return gone

    def fill(self, msg: EdgeStatus) -> EdgeStatus:
        """The fleet's part of a heartbeat."""
        loads = {r.session: r for r in self.load.snapshot()}
        outputs = self.outputs
        listed = [loads.get(s) or RobotLoad(s, 0.0, 0.0, 0.0, 0) for s in sorted(self.admitted)
                  if s in outputs and outputs[s].get_subscription_count() > 0]
        msg.robot_sessions = [r.session for r in listed]
        msg.robot_busy_fraction = [r.busy_fraction for r in listed]
        msg.robot_service_ms = [r.service_ms for r in listed]
        msg.robot_queue_ms = [r.queue_ms for r in listed]
        msg.robot_behind_ms = [r.behind_ms for r in listed]
        msg.max_robots = int(self.max_robots)
        msg.full = bool(self.max_robots) and len(self.admitted) >= self.max_robots
        return msg

    def _publisher(self, topic: str):
        """Executor: the outputs publisher of robots whose outputs go to ``topic`` (one per namespace, kept)."""
        if topic not in self._publishers:
            self._publishers[topic] = self._make_outputs(topic)
        return self._publishers[topic]
