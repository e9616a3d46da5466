"""robot_node's watch on its edges: which one it uses (nodes.edge_links: one EdgeLink per edge, failover to the
best other when the one in use is lost), the robot's announcements on that edge's roster, the frames kept until
their results are out, and rescues.

Threads: the links' callbacks (heartbeats, liveliness, profiles), :meth:`answered` (FrameTiming) and the tick
(after each of them, and 150 ms after the last; it also discovers edges) run on robot_node's receiver thread
(nodes.receiver: at 20 Hz on the executor the tick alone cost the quarter-core robot 25 ms of CPU a second);
:meth:`keep` runs on the frame thread. ``_lock`` guards the RescueBook. Frames due for rescue are handed to the
frame thread through :attr:`due`, under the node's frame condition (``cond``), which also wakes it. The links'
health and the choice are the receiver thread's alone; :attr:`current` and :attr:`links` are replaced whole, so the
frame, sender and executor threads read them without a lock; :meth:`announce` runs on whichever thread changed the
plan (``_roster`` is replaced whole, and a publish is thread-safe).
"""
from __future__ import annotations

import collections
import threading
import time

from diagnostic_msgs.msg import DiagnosticStatus

from intradp_ros.msg import PlanStatus
from intradp_ros.nodes.common import declare, packet_to_msg, shutting_down
from intradp_ros.nodes.edge_links import EdgeLink, choose, edge_namespace_of
from intradp_ros.robot.health import Health
from intradp_ros.robot.rescue import Kept, RescueBook
from intradp_ros.topology import parse_edge_namespaces

__all__ = ["EdgeWatch"]


class EdgeWatch:
    ANNOUNCE_S = 2.0       # the roster again this often: the edge frees robots silent for its robot_timeout_s
    DISCOVER_S = 2.0       # edge_namespace "*": look for new edges in the ROS graph this often

    def __init__(self, node, rx, rt, counters, cond: threading.Condition, on_link, edge_namespace: str,
                 timeout_s: float, deadline_factor: float, deadline_min_s: float):
        """``on_link(LinkEstimate)``: the edges' link estimates, on the receiver thread; the rest are robot_node's
        parameters of the same names (``edge_namespace`` parsed already: nodes.edge_links)."""
        self.node, self.rx, self.rt, self.counters, self.cond = node, rx, rt, counters, cond
        self.factor, self.min_s, self.timeout_s, self.on_link = (float(deadline_factor), float(deadline_min_s),
                                                                 float(timeout_s), on_link)
        self.book = RescueBook()
        self._lock = threading.Lock()
        self.due: collections.deque[Kept] = collections.deque()     # guarded by cond
        self._roster: PlanStatus | None = None
        self._announced = self._discovered = 0.0
        self._changed_at = -float("inf")
        self.wanted = parse_edge_namespaces(edge_namespace, node.get_namespace())   # None: every edge
        self.links: dict[str, EdgeLink] = {}
        self.current: EdgeLink | None = None     # the edge this robot uses now
        self._pushed = None                      # the profile the planner has, of the current edge
        self._unserved_why = ""      # why this robot must not offload to the current edge now ("" = it may)
        for ns in self.wanted or ():
            self._add(ns)
        rx.every(min(0.15, float(timeout_s) / 4), self.tick)    # and on every heartbeat

    @staticmethod
    def declare_parameters(node) -> tuple[str, float, float, float]:
        """robot_node's parameters of the watch: (edge_namespace, edge_timeout_s, rescue_deadline_factor,
        rescue_deadline_min_s)."""
        ro = True
        return (
            declare(node, "edge_namespace", "", "the edge(s) this robot may use: a namespace, a comma-separated "
                    "list in order of preference, * for every edge on the domain; '' = this node's namespace", ro),
            declare(node, "edge_timeout_s", 1.5, "no edge heartbeat for this long: all-local until it is back", ro,
                    (0.05, 60.0)),
            declare(node, "rescue_deadline_factor", 4.0, "compute a frame all-local when its result is not back "
                    "after this many times its plan's predicted latency", ro, (1.0, 100.0)),
            declare(node, "rescue_deadline_min_s", 1.0, "the rescue deadline is never shorter than this", ro,
                    (0.05, 60.0)))

    # -- the edges -----------------------------------------------------------------------------------------
    def _add(self, ns: str) -> None:
        link = EdgeLink(self.node, self.rx, ns, self.timeout_s, self._heard, self._lease_lost, self.on_link)
        self.links = {**self.links, ns: link}

    def _discover(self, now: float) -> None:
        self._discovered = now
        for name, types in self.node.get_topic_names_and_types():
            ns = edge_namespace_of(name, types)
            if ns is not None and ns not in self.links:
                self.node.get_logger().info(f"found an edge in {ns}")
                self._add(ns)

    @property
    def admitted(self) -> bool | None:
        """By the heartbeats: True = the edge in use lists this robot, False = every edge known is full, None =
        neither yet."""
        if self.current is not None:
            return self.current.admitted
        links = list(self.links.values())
        return False if links and all(link.admitted is False for link in links) else None

    def serving(self) -> bool:
        """An edge is in use, profiled, and its tile subscription matched ours."""
        cur = self.current
        return cur is not None and cur.profile is not None and cur.reachable()

    def announce(self, msg: PlanStatus | None = None) -> None:
        """The robot's PlanStatus on the roster of the edge in use (its namespace may be another): the edge serves
        announced sessions. Again every ANNOUNCE_S (from the tick); once with an empty plan when the robot leaves."""
        if msg is not None:
            self._roster = msg
        cur = self.current
        if self._roster is None or cur is None or shutting_down(self.node):
            return
        self._announced = time.monotonic()
        try:
            cur.roster.publish(self._roster)
        except Exception:
            if not shutting_down(self.node):       # else Ctrl-C took the context between the check and the publish
                raise

    def leave(self) -> None:
        """robot_node stops: the edge frees this robot's state now rather than after its robot_timeout_s."""
        self.announce(PlanStatus(session=self.node.session, robot_namespace=self.node.get_namespace(),
                                 reason="leaving"))

    def _heard(self, link: EdgeLink) -> None:
        """Receiver thread, a heartbeat of ``link``: the others' share of the edge in use prices the queueing this
        robot would meet there."""
        if link is not self.current:
            return
        self.rt.controller.set_edge_load(link.others_busy, link.sharing, link.stretch)
        if link.admitted is False:
            self._unserved_why = f"the edge in {link.namespace} is full: it serves its max_robots " \
                                 f"({link.max_robots}) already"
        elif link.admitted is None and link.listed_once:
            self._unserved_why = f"the edge in {link.namespace} does not list this robot (a new edge: it " \
                                 "re-announces itself)"
        else:
            self._unserved_why = ""

    def _lease_lost(self, link: EdgeLink) -> None:
        """Receiver thread: the middleware's verdict on an edge's heartbeat writer (its QoS's liveliness lease)."""
        change = link.health.lease_lost(time.monotonic())
        if link is self.current:
            self._lost(change)
            self._choose(time.monotonic())

    def _choose(self, now: float) -> None:
        """Use the best edge (edge_links.choose); a change is announced at once and the planner gets its profile
        (all-local until the new edge lists this robot)."""
        cur = self.current
        pick = choose([link.offer() for link in self.links.values()], cur.namespace if cur else None,
                      now - self._changed_at)
        if pick == (cur.namespace if cur else None):
            return
        new = self.links[pick] if pick is not None else None
        self.current, self._changed_at, self._pushed, self._unserved_why = new, now, None, ""
        log = self.node.get_logger()
        if new is None:
            log.warning("no usable edge: running all-local until one is")
            return
        if cur is not None:
            self.counters.inc("edge_switches")
        log.info(f"using the edge in {new.namespace} ({new.device}, priced {new.offer().price_ms:.1f} ms)"
                 + (f" instead of {cur.namespace}" if cur is not None else ""))
        if cur is not None and self.rt.controller.edge_alive:
            self.rt.controller.set_edge_alive(False, f"moving to the edge in {new.namespace}")
        self.announce()

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
        cur = self.current
        if kept and cur is not None:
            cur.health.answered()

    def tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = self.book.due(now)
        cur = self.current
        for k in due:
            if cur is not None:
                cur.health.rescued()
            self.counters.inc("frames_rescued")
            self.node.get_logger().warning(f"frame {k.seq}: its edge part is not back by its deadline; computing it "
                                           "on the robot")
        if due:
            with self.cond:
                self.due.extend(due)
                self.cond.notify()
        if self.wanted is None and now - self._discovered > self.DISCOVER_S:
            self._discover(now)
        for link in self.links.values():
            change = link.health.check(now)
            if link is cur:
                self._lost(change)
                if change is Health.ALIVE:
                    self.counters.set_status(DiagnosticStatus.OK, "counters")
        self._choose(now)
        if now - self._announced > self.ANNOUNCE_S:
            self.announce()
        ctl, cur = self.rt.controller, self.current
        if cur is not None and cur.profile is not None and cur.profile is not self._pushed:
            try:
                ctl.set_edge_profile(cur.profile)
                self._pushed = cur.profile
            except ValueError as e:       # checked on receipt already: a profile of another model
                self.node.refuse("bad_edge_profiles", f"edge profile of {cur.namespace} rejected: {e}")
        why_not = self._unserved_why
        if cur is None and self.admitted is False:
            why_not = "every edge is full: each serves its max_robots already"
        elif cur is None and self._changed_at > 0:       # it had one
            why_not = "no usable edge"
        if ctl.edge_alive and why_not:
            ctl.set_edge_alive(False, why_not)
        elif (cur is not None and cur.health.state is Health.ALIVE and cur.admitted and not ctl.edge_alive
              and cur.profile is self._pushed and cur.reachable()):
            ctl.set_edge_alive(True, f"{cur.health.why} ({cur.namespace})")

    def _lost(self, change) -> None:
        """The edge in use is lost: every frame kept for it is rescued at once (its part won't come)."""
        if change is not Health.LOST:
            return
        with self._lock:
            lost = self.book.due(float("inf"))
        self.counters.inc("frames_rescued", len(lost))
        with self.cond:
            self.due.extend(lost)
            self.cond.notify()
        self.counters.inc("edge_lost")
        why = self.current.health.why if self.current is not None else "lost"
        self.counters.set_status(DiagnosticStatus.WARN, f"edge lost ({why})")
        self.rt.controller.set_edge_alive(False, why)

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
