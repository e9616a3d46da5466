"""robot_node's watch on the edge: its heartbeats (with its load and whether it admits this robot), the
robot's announcements on the edge's roster, the frames kept until their results are out, and rescues.

Threads: the heartbeat subscription, its liveliness events, :meth:`answered` (FrameTiming) and the tick (after
each of them, and 150 ms after the last) run on robot_node's receiver thread (nodes.receiver: at 20 Hz on the
executor the tick alone cost the quarter-core robot 25 ms of CPU a second); :meth:`keep` runs on the frame thread.
``_lock`` guards the RescueBook. Frames due for rescue are handed to the frame thread through :attr:`due`, under
the node's frame condition (``cond``), which also wakes it. EdgeHealth and ``admitted`` are the receiver thread's
alone; :meth:`announce` runs on whichever thread changed the plan (``_roster`` is replaced whole, and a publish is
thread-safe).
"""
from __future__ import annotations

import collections
import threading
import time

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.event_handler import SubscriptionEventCallbacks

from intradp_ros.msg import EdgeStatus, PlanStatus
from intradp_ros.nodes.common import declare, packet_to_msg, publisher, shutting_down, subscription_qos
from intradp_ros.nodes.receiver import deserialized
from intradp_ros.robot.health import EdgeHealth, Health
from intradp_ros.robot.rescue import Kept, RescueBook
from intradp_ros.topology import TOPICS

__all__ = ["EdgeWatch"]


class EdgeWatch:
    ANNOUNCE_S = 2.0       # the roster again this often: the edge frees robots silent for its robot_timeout_s

    def __init__(self, node, rx, rt, counters, cond: threading.Condition, reachable, timeout_s: float,
                 deadline_factor: float, deadline_min_s: float):
        """``reachable()``: the edge's tile subscription is matched (heartbeats alone can come back first); the
        rest are robot_node's parameters of the same names."""
        self.node, self.rt, self.counters, self.cond, self.reachable = node, rt, counters, cond, reachable
        self.factor, self.min_s = float(deadline_factor), float(deadline_min_s)
        self.health = EdgeHealth(timeout_s=float(timeout_s))
        self.book = RescueBook()
        self._lock = threading.Lock()
        self.due: collections.deque[Kept] = collections.deque()     # guarded by cond
        self.roster_pub = publisher(node, PlanStatus, "roster")
        self._roster: PlanStatus | None = None
        self._announced = 0.0
        # by the last heartbeat: True = it lists this robot (its outputs have a way back), False = it is full,
        # None = neither (before the first heartbeat, or not on its roster yet)
        self.admitted: bool | None = None
        self._listed_once = False
        self._unserved_why = ""      # why this robot must not offload to the edge now ("" = it may)
        rx.add(EdgeStatus, TOPICS["edge_status"].name, subscription_qos(node, "edge_status"),
               deserialized(EdgeStatus, self.heartbeat, node.refuse, "bad_heartbeats", "edge_status"),
               event_callbacks=SubscriptionEventCallbacks(liveliness=self.liveliness_callback))
        rx.every(min(0.15, float(timeout_s) / 4), self.tick)    # and on every heartbeat

    @staticmethod
    def declare_parameters(node) -> tuple[float, float, float]:
        """robot_node's parameters of the watch: (edge_timeout_s, rescue_deadline_factor, rescue_deadline_min_s)."""
        ro = True
        return (
            declare(node, "edge_timeout_s", 1.5, "no edge heartbeat for this long: all-local until it is back", ro,
                    (0.05, 60.0)),
            declare(node, "rescue_deadline_factor", 4.0, "compute a frame all-local when its result is not back "
                    "after this many times its plan's predicted latency", ro, (1.0, 100.0)),
            declare(node, "rescue_deadline_min_s", 1.0, "the rescue deadline is never shorter than this", ro,
                    (0.05, 60.0)))

    def announce(self, msg: PlanStatus | None = None) -> None:
        """The robot's PlanStatus on the edge's roster (its namespace may be another): the edge serves announced
        sessions. Again every ANNOUNCE_S (from the tick); once with an empty plan when the robot leaves."""
        if msg is not None:
            self._roster = msg
        if self._roster is None or shutting_down(self.node):
            return
        self._announced = time.monotonic()
        try:
            self.roster_pub.publish(self._roster)
        except Exception:
            if not shutting_down(self.node):       # else Ctrl-C took the context between the check and the publish
                raise

    def leave(self) -> None:
        """robot_node stops: the edge frees this robot's state now rather than after its robot_timeout_s."""
        self.announce(PlanStatus(session=self.node.session, robot_namespace=self.node.get_namespace(),
                                 reason="leaving"))

    def heartbeat(self, msg: EdgeStatus, arrived: float) -> None:
        """Receiver thread: the edge lives; the others' share of it prices the queueing this robot would meet."""
        self.health.heard(arrived)
        me = self.node.session
        busy = dict(zip(msg.robot_sessions, msg.robot_busy_fraction))
        self.rt.controller.set_edge_load(max(sum(busy.values()) - busy.get(me, 0.0), 0.0))
        self.admitted = True if me in busy else (False if msg.full else None)
        self._listed_once |= self.admitted is True
        if self.admitted is False:
            self._unserved_why = f"the edge is full: it serves its max_robots ({msg.max_robots}) already"
        elif self.admitted is None and self._listed_once:
            self._unserved_why = "the edge does not list this robot (a new edge: it re-announces itself)"
        else:
            self._unserved_why = ""

    def liveliness_callback(self, info) -> None:
        """Receiver thread: the middleware's verdict on the edges' heartbeat writers (their QoS's liveliness lease)."""
        if info.alive_count == 0 and info.not_alive_count_change > 0:
            self._lost(self.health.lease_lost(time.monotonic()))

    def keep(self, seq: int, run, header, size: tuple[int, int], started: float) -> None:
        """Frame thread: keep a frame that depends on the edge until its result is out, or its deadline passes."""
        if not self.rt.needs_rescue_keeping(run.plan):
            return
        predicted = self.rt.controller.predicted_total_ms(run.plan.spec())
        budget_s = max(self.factor * (predicted or 1000.0) / 1e3, self.min_s)
        with self._lock:
            self.book.keep(Kept(seq, run.x, header, size, run.plan.spec(), started + budget_s))

    def answered(self, seq: int) -> None:
        """Receiver thread: frame ``seq``'s result is out (FrameTiming)."""
        with self._lock:
            kept = self.book.done(seq)
        if kept:
            self.health.answered()

    def tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = self.book.due(now)
        for k in due:
            self.health.rescued()
            self.counters.inc("frames_rescued")
            self.node.get_logger().warning(f"frame {k.seq}: its edge part is not back by its deadline; computing it "
                                           "on the robot")
        if due:
            with self.cond:
                self.due.extend(due)
                self.cond.notify()
        change = self.health.check(now)
        self._lost(change)
        if change is Health.ALIVE:
            self.counters.set_status(DiagnosticStatus.OK, "counters")
        if now - self._announced > self.ANNOUNCE_S:
            self.announce()
        ctl = self.rt.controller
        if ctl.edge_alive and self._unserved_why:
            ctl.set_edge_alive(False, self._unserved_why)
        elif (self.health.state is Health.ALIVE and self.admitted and not ctl.edge_alive and self.reachable()):
            ctl.set_edge_alive(True, self.health.why)

    def _lost(self, change) -> None:
        if change is not Health.LOST:
            return
        with self._lock:                # every frame kept for the edge is rescued at once: its part won't come
            lost = self.book.due(float("inf"))
        self.counters.inc("frames_rescued", len(lost))
        with self.cond:
            self.due.extend(lost)
            self.cond.notify()
        self.counters.inc("edge_lost")
        self.counters.set_status(DiagnosticStatus.WARN, f"edge lost ({self.health.why}): all-local")
        self.rt.controller.set_edge_alive(False, self.health.why)

    def rescue(self, k: Kept, out_pub, model: str) -> None:
        """Frame thread: compute a kept frame all-local and send its outputs straight to the aggregator (not behind
        the sender's queue, which may be stuck on a link that is down)."""
        clock = self.node.get_clock()
        try:
            self.rt.rescue(k.seq, k.x, lambda p: out_pub.publish(packet_to_msg(p, k.header, k.size, model,
                                                                                clock.now().to_msg(),
                                                                                self.node.session)))
        except Exception as e:  # noqa: BLE001 - one bad frame must not stop the robot
            self.counters.inc("frame_errors")
            self.node.get_logger().error(f"rescue of frame {k.seq} failed on the robot: {e}")
