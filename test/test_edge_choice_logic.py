"""Which edge a robot uses (pure logic): robot_node's edge_namespace, edges found in the ROS graph, and the choice
among them (intradp_ros.nodes.edge_links.choose)."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from intradp_ros.nodes.edge_links import SWITCH_GAIN, SWITCH_HOLD_S, Offer, choose, edge_namespace_of  # noqa: E402
from intradp_ros.topology import parse_edge_namespaces  # noqa: E402


def test_edge_namespace_values():
    assert parse_edge_namespaces("/") == ["/"]
    assert parse_edge_namespaces("edge_a, /edge_b/ ,edge_a") == ["/edge_a", "/edge_b"]     # order kept, once each
    assert parse_edge_namespaces("*") is None
    assert parse_edge_namespaces("", own="/robot1") == ["/robot1"]
    for bad in ("*,/a", ",", "/a//b", "/9lives", "/a-b"):
        with pytest.raises(ValueError, match="edge_namespace"):
            parse_edge_namespaces(bad)


def test_edges_are_found_by_their_heartbeat_topic():
    status = ["intradp_ros/msg/EdgeStatus"]
    assert edge_namespace_of("/intradp/edge_status", status) == "/"
    assert edge_namespace_of("/site_b/edge1/intradp/edge_status", status) == "/site_b/edge1"
    assert edge_namespace_of("/x/intradp/edge_status", ["std_msgs/msg/String"]) is None     # another type
    assert edge_namespace_of("/x/intradp/edge_status_old", status) is None
    assert edge_namespace_of("/intradp/plan", ["intradp_ros/msg/PlanStatus"]) is None


def _offers(**prices):
    return [Offer(ns, price is not None, price if price is not None else float("inf")) for ns, price in prices.items()]


def test_choice_takes_the_cheapest_usable_edge_first_in_the_list_on_a_tie():
    assert choose(_offers(a=100.0, b=60.0), None, 0.0) == "b"
    assert choose(_offers(a=100.0, b=100.0), None, 0.0) == "a"
    assert choose(_offers(a=None, b=300.0), None, 0.0) == "b"            # a not usable (lost, full, unprofiled)
    assert choose(_offers(a=None, b=None), "a", 99.0) is None


def test_choice_fails_over_at_once_but_moves_off_a_healthy_edge_only_for_a_clear_gain_after_a_hold():
    assert choose(_offers(a=None, b=500.0), "a", 0.0) == "b"              # the edge in use is lost: no hold
    cheaper = 100.0 * SWITCH_GAIN
    assert choose(_offers(a=100.0, b=cheaper * 1.01), "a", 1e6) == "a"    # not cheap enough to move
    assert choose(_offers(a=100.0, b=cheaper), "a", SWITCH_HOLD_S * 0.99) == "a"   # too soon after the last move
    assert choose(_offers(a=100.0, b=cheaper), "a", SWITCH_HOLD_S) == "b"
