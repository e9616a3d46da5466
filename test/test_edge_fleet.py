"""edge_node's fleet book-keeping without a node: admission, leaving, the outputs topic per robot namespace, and
forged roster entries (counted, refused, never an exception on the executor)."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from intradp_ros.msg import EdgeStatus, PlanStatus  # noqa: E402
from intradp_ros.nodes.edge_fleet import EdgeFleet, outputs_topic  # noqa: E402


class Book:
    def __init__(self):
        self.counts, self.lines = {}, []

    def inc(self, name, n=1):
        self.counts[name] = self.counts.get(name, 0) + n

    def __call__(self, key, line):
        self.lines.append(line)


class Pub:
    def __init__(self, topic):
        self.topic, self.matched = topic, 1

    def get_subscription_count(self):
        return self.matched


def _fleet(max_robots=0):
    book, made = Book(), []
    fleet = EdgeFleet(max_robots, 6.0, book, book, lambda topic: made.append(Pub(topic)) or made[-1])
    return fleet, book, made


def test_outputs_topic_per_namespace_and_refusal_of_what_is_no_namespace():
    assert outputs_topic("") == outputs_topic("/") == "/intradp/tiles/outputs"
    assert outputs_topic("/robot1") == outputs_topic("robot1/") == "/robot1/intradp/tiles/outputs"
    assert outputs_topic("/a/b") == "/a/b/intradp/tiles/outputs"
    for bad in ("has space", "x" * 300 + "!", "/9robot", "../up", "a//b"):
        assert outputs_topic(bad) is None, bad


def test_forged_roster_entries_are_counted_and_never_admitted():
    fleet, book, made = _fleet()
    fleet.roster(PlanStatus(session="s1", plan_spec="p", robot_namespace="bad name!"))
    assert book.counts == {"bad_roster": 1} and not fleet.admits("s1") and not made
    fleet.roster(PlanStatus(session="", plan_spec="p", robot_namespace="/r"))     # no session: ignored
    assert not fleet.admitted


def test_robots_share_a_namespace_publisher_are_listed_once_matched_and_refused_beyond_max():
    fleet, book, made = _fleet(max_robots=2)
    fleet.roster(PlanStatus(session="a", plan_spec="p", robot_namespace="/robot1"))
    fleet.roster(PlanStatus(session="b", plan_spec="p", robot_namespace="/robot1"))  # a restart, same namespace
    assert [p.topic for p in made] == ["/robot1/intradp/tiles/outputs"]
    made[0].matched = 0                                   # its aggregator not matched yet: not listed
    msg = fleet.fill(EdgeStatus())
    assert list(msg.robot_sessions) == [] and msg.full
    made[0].matched = 1
    assert list(fleet.fill(EdgeStatus()).robot_sessions) == ["a", "b"]
    fleet.roster(PlanStatus(session="c", plan_spec="p", robot_namespace="/robot3"))
    assert book.counts == {"robots_refused": 1} and not fleet.admits("c")
    fleet.roster(PlanStatus(session="a", plan_spec="", robot_namespace="/robot1"))  # a leaves
    assert fleet.leaving() == ["a"]
    msg = fleet.fill(EdgeStatus())
    assert list(msg.robot_sessions) == ["b"] and not msg.full and "a" not in fleet.outputs
