"""What the tests that start the real nodes share: waiting while spinning, a camera stream, robot_node's readiness,
the nodes' last output lines when a test failed."""
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


def stream(node, camera, bgr, seconds: float, rate_hz: float, frame_id: str) -> None:
    """Publish ``bgr`` on ``camera`` at ``rate_hz`` for ``seconds``, freshly stamped each time, spinning ``node``
    in between."""
    from sensor_msgs.msg import Image

    from intradp_ros.vision.image_convert import array_to_image_fields
    fields = array_to_image_fields(bgr, "bgr8")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        msg = Image(**fields)
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = frame_id
        camera.publish(msg)
        t = time.monotonic() + 1.0 / rate_hz
        while time.monotonic() < t:
            rclpy.spin_once(node, timeout_sec=0.02)


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
