"""The edges a robot may use: one :class:`EdgeLink` per edge namespace, with that edge's heartbeat, profile, link
estimates, tile and roster topics, and the choice of the one in use (:func:`choose`).

robot_node's ``edge_namespace`` names them: one namespace (default ``/``), several in order of preference
(``/edge_a,/edge_b``), or ``*``: every edge on the domain, found in the ROS graph by its heartbeat topic. Each
edge is priced by its compute for the whole model stretched by its load, 1 / (1 - rho) with rho its busy fraction
from the others, at most the number of robots sharing it (the robot's planner prices queueing the same way,
robot.edge_load), so the robot uses the edge
that would serve it soonest; the link is the robot's own radio, the same for every edge.

Threads: an EdgeLink's callbacks (heartbeats, liveliness, profile, link estimates) run on robot_node's receiver
thread, which owns its state; the sender thread only publishes on :attr:`EdgeLink.tiles` (thread-safe).
"""
from __future__ import annotations

import dataclasses

from rclpy.event_handler import SubscriptionEventCallbacks

from intradp_ros.engine.profile import DeviceProfile
from intradp_ros.msg import EdgeProfile, EdgeStatus, LinkEstimate, PlanStatus, TensorTile
from intradp_ros.nodes.common import publisher, subscription_qos
from intradp_ros.nodes.receiver import deserialized
from intradp_ros.robot.health import EdgeHealth, Health
from intradp_ros.robot.edge_load import EdgeLoad
from intradp_ros.topology import TOPICS, resolve

__all__ = ["EdgeLink", "Offer", "choose", "edge_namespace_of"]

SWITCH_GAIN = 0.7         # a healthy edge in use is left only for one priced at most this fraction of it ...
SWITCH_HOLD_S = 10.0      # ... and no sooner than this after the last change of edge


def edge_namespace_of(topic: str, types: list[str]) -> str | None:
    """The namespace of the edge whose heartbeat ``topic`` is (None: not an edge's heartbeat)."""
    suffix = "/" + TOPICS["edge_status"].name
    if not topic.endswith(suffix) or "intradp_ros/msg/EdgeStatus" not in types:
        return None
    return topic[: -len(suffix)] or "/"


@dataclasses.dataclass(frozen=True)
class Offer:
    """What the choice knows of one edge."""
    namespace: str
    usable: bool                 # alive, profiled, not full for this robot
    price_ms: float              # its whole-model compute stretched by its load


def choose(offers: list[Offer], current: str | None, since_change_s: float) -> str | None:
    """The edge to use: the current one while it is usable, unless another is priced at most SWITCH_GAIN of it
    and the last change is SWITCH_HOLD_S old (a fleet must not herd from edge to edge); else the cheapest usable
    one, the earlier in the list on a tie; None when none is usable."""
    usable = [o for o in offers if o.usable]
    if not usable:
        return None
    best = min(usable, key=lambda o: o.price_ms)      # min keeps the first of equal prices: the preference order
    cur = next((o for o in usable if o.namespace == current), None)
    if cur is None:
        return best.namespace
    if best.price_ms <= SWITCH_GAIN * cur.price_ms and since_change_s >= SWITCH_HOLD_S:
        return best.namespace
    return cur.namespace


class EdgeLink:
    """One edge as this robot sees it: its topics (in the edge's namespace), health, profile, load, admission."""

    IDLE = 0.01             # a robot using less of the edge than this does not count as sharing it

    def __init__(self, node, rx, namespace: str, timeout_s: float, on_heartbeat, on_lease_lost, on_link):
        """``on_heartbeat(link)``, ``on_lease_lost(link)`` and ``on_link(msg)`` run on the receiver thread."""
        self.namespace, self.node = namespace, node
        self.health = EdgeHealth(timeout_s=float(timeout_s))
        self.profile: DeviceProfile | None = None
        self.device = ""
        self.others_busy = 0.0        # the other robots' share of this edge, by its last heartbeat
        self.sharing = 1              # robots using it, this one included (as if it did)
        self.stretch: float | None = None
        # by the last heartbeat: True = it lists this robot, False = it is full without it, None = neither
        self.admitted: bool | None = None
        self.listed_once = False
        self.max_robots = 0
        self._on_heartbeat, self._on_lease_lost = on_heartbeat, on_lease_lost
        topic = {key: resolve(TOPICS[key].name, namespace) for key in ("to_edge", "roster", "edge_status",
                                                                         "edge_profile", "link")}
        self.tiles = publisher(node, TensorTile, "to_edge", topic["to_edge"])
        self.roster = publisher(node, PlanStatus, "roster", topic["roster"])
        rx.add(EdgeStatus, topic["edge_status"], subscription_qos(node, "edge_status", topic["edge_status"]),
               deserialized(EdgeStatus, self._heartbeat, node.refuse, "bad_heartbeats", topic["edge_status"]),
               event_callbacks=SubscriptionEventCallbacks(liveliness=self._liveliness))
        rx.add(EdgeProfile, topic["edge_profile"], subscription_qos(node, "edge_profile", topic["edge_profile"]),
               deserialized(EdgeProfile, self._profile, node.refuse, "bad_edge_profiles", topic["edge_profile"]))
        rx.add(LinkEstimate, topic["link"], subscription_qos(node, "link", topic["link"]),
               deserialized(LinkEstimate, lambda msg, _arrived: on_link(msg), node.refuse, "bad_link",
                            topic["link"]))

    def _heartbeat(self, msg: EdgeStatus, arrived: float) -> None:
        self.health.heard(arrived)
        me = self.node.session
        busy = dict(zip(msg.robot_sessions, msg.robot_busy_fraction))
        self.others_busy = max(sum(busy.values()) - busy.get(me, 0.0), 0.0)
        self.sharing = 1 + sum(1 for s, b in busy.items() if s != me and b > self.IDLE)
        # measured: how much the others stretched this robot's edge part (None: it did not use the edge lately)
        mine = dict(zip(msg.robot_sessions, zip(msg.robot_service_ms, msg.robot_behind_ms)))
        service, behind = mine.get(me, (0.0, 0.0))
        self.stretch = 1.0 + behind / service if service > 0 else None
        self.admitted = True if me in busy else (False if msg.full else None)
        self.listed_once |= self.admitted is True
        self.max_robots = msg.max_robots
        self._on_heartbeat(self)

    def _liveliness(self, info) -> None:
        if info.alive_count == 0 and info.not_alive_count_change > 0:
            self._on_lease_lost(self)

    def _profile(self, msg: EdgeProfile, _arrived: float) -> None:
        try:
            prof = DeviceProfile.from_json(msg.profile_json)
            if prof.key != self.node.rt.m.graph.key:
                raise ValueError(f"it runs a different model or weights (hash {prof.key}, ours "
                                 f"{self.node.rt.m.graph.key}); start both with the same model, weights and input_size")
        except (ValueError, TypeError, KeyError) as e:
            self.node.refuse("bad_edge_profiles", f"edge profile from {msg.device} on {self.namespace} rejected: {e}")
            return
        self.profile, self.device = prof, msg.device
        self.node.get_logger().info(f"edge profile received from {self.namespace} ({msg.device}, whole model "
                                    f"{sum(prof.op_ms):.1f} ms)")

    def reachable(self) -> bool:
        """Its tile subscription matched ours (heartbeats alone can come back first)."""
        return self.tiles.get_subscription_count() > 0

    def offer(self) -> Offer:
        usable = self.health.state is Health.ALIVE and self.profile is not None and self.admitted is not False
        factor = EdgeLoad.factor_for(self.others_busy, self.sharing)
        price = sum(self.profile.op_ms) * factor if self.profile is not None else float("inf")
        return Offer(self.namespace, usable, price)
