"""A camera client for tests that run the nodes in another network namespace (started there with ``ip netns exec``):
waits until robot_node listens, publishes each image given, and prints each result as one JSON line.

    python test/ns_client.py NAMESPACE IMAGE...      (NAMESPACE: the robots' ROS namespace, "/" for the root)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ros_helpers import robot_listening, spin_until  # noqa: E402

from intradp_ros.launching.qos_file import resolve  # noqa: E402
from intradp_ros.msg import DetectionArray  # noqa: E402
from intradp_ros.nodes.common import topic_qos  # noqa: E402
from intradp_ros.topology import TOPICS  # noqa: E402
from intradp_ros.vision.image_convert import array_to_image_fields  # noqa: E402


def main(ns: str, images: list[str]) -> int:
    rclpy.init()
    node = Node("intradp_ns_client")
    got: list[DetectionArray] = []
    camera_topic = resolve(TOPICS["camera"].name, ns)
    camera = node.create_publisher(Image, camera_topic, topic_qos("camera"))
    node.create_subscription(DetectionArray, resolve(TOPICS["detections"].name, ns), got.append,
                             topic_qos("detections"))
    spin_until(node, lambda: robot_listening(node, camera, camera_topic), "robot_node to listen", 300.0)
    for path in images:
        msg = Image(**array_to_image_fields(cv2.imread(path, cv2.IMREAD_COLOR), "bgr8"))
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = Path(path).name
        n = len(got)
        camera.publish(msg)
        spin_until(node, lambda n=n: len(got) > n, f"the detections of {path}", 120.0)
        d = got[n]
        print(json.dumps({"frame_id": d.header.frame_id, "stamp_ok": d.header.stamp == msg.header.stamp,
                          "plan": d.plan_spec, "detections": [[b.class_name, b.score, b.center_x]
                                                              for b in d.detections]}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
