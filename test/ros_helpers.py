"""What the tests that start the real nodes share: waiting while spinning, robot_node's readiness, the nodes' last
output lines when a test failed."""
from __future__ import annotations

import time

import rclpy


def spin_until(node, cond, what: str, timeout: float) -> None:
    """Spin ``node`` until ``cond()``; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        rclpy.spin_once(node, timeout_sec=0.1)


def robot_listening(node, camera, topic: str) -> bool:
    """robot_node subscribes to the camera only once edge and aggregator are up: our start signal, once the
    publisher ``camera`` of ``node`` matched every subscription of ``topic``."""
    subs = node.get_subscriptions_info_by_topic(topic)
    return any(s.node_name == "robot_node" for s in subs) and camera.get_subscription_count() >= len(subs)


def print_outputs(launches: dict, lines: int = 25) -> None:
    """The last lines of each node of each launch (label -> Launch): pytest shows them when a test failed."""
    for label, launch in launches.items():
        for name, out in launch.output.items():
            print(f"---- {label} {name}\n" + "\n".join(list(out)[-lines:]))
