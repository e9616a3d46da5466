"""The fault scenarios' observer: a ROS 2 node in the robot's namespace that sees what a user sees (started by
:mod:`intradp_ros.tools.faults`, never by hand).

It prints one JSON object per line on stdout, stamped with this host's wall clock (``t``; robot and edge share
it on the emulated link):
  {"ev": "det", "seq", "stamp", "plan", "lat_ms", "t"}      every /intradp/detections message
  {"ev": "plan", "plan", "settled", "predicted_ms", "local_ms", "local_spec", "reason", "t"}  every /intradp/plan
  {"ev": "diag", "node", "level", "message", "values", "t"}  every /diagnostics status of our nodes
"""
from __future__ import annotations

import json
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from intradp_ros.msg import FrameTiming, PlanStatus
from intradp_ros.nodes.common import stamp_ms, topic_qos
from intradp_ros.nodes.detections_out import detections_type, frame_and_plan, is_vision_msgs
from intradp_ros.topology import TOPICS


def _emit(**event) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Observer(Node):
    def __init__(self):
        super().__init__("intradp_faults_observer")
        kind = detections_type()       # what aggregator_node publishes with its default detections_type (auto)
        self.create_subscription(kind, TOPICS["detections"].name, self.on_detections, topic_qos("detections"))
        # vision_msgs' Detection2DArray has no frame number or plan: the frame's FrameTiming (same stamp) has them
        self._arrived: dict[tuple[int, int], float] = {}           # stamp -> arrival of detections awaiting it
        self._frames: dict[tuple[int, int], tuple[int, str]] = {}  # stamp -> (frame_seq, plan_spec) awaiting those
        if is_vision_msgs(kind):
            self.create_subscription(FrameTiming, TOPICS["timing"].name, self.on_timing, topic_qos("timing"))
        self.create_subscription(PlanStatus, TOPICS["plan"].name, self.on_plan, topic_qos("plan"))
        self.create_subscription(DiagnosticArray, TOPICS["diagnostics"].name, self.on_diag, 50)

    def on_detections(self, msg) -> None:
        now = time.time()
        frame = frame_and_plan(msg)
        if frame is None:
            k = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            frame = self._frames.pop(k, None)
            if frame is None:
                _keep(self._arrived, k, now)
                return
        self._det(msg.header.stamp, frame, now)

    def on_timing(self, msg: FrameTiming) -> None:
        k = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        frame = (int(msg.frame_seq), msg.plan_spec)
        if k in self._arrived:
            self._det(msg.header.stamp, frame, self._arrived.pop(k))
        else:                       # before its detections, or of a frame whose result was not published
            _keep(self._frames, k, frame)

    def _det(self, stamp, frame: tuple[int, str], now: float) -> None:
        _emit(ev="det", seq=frame[0], stamp=stamp_ms(stamp) / 1e3, plan=frame[1], lat_ms=now * 1e3 - stamp_ms(stamp),
              t=now)

    def on_plan(self, msg: PlanStatus) -> None:
        local = dict(zip(msg.baseline_names, msg.baseline_predicted_ms)).get("local", 0.0)
        local_spec = dict(zip(msg.baseline_names, msg.baseline_plan_specs)).get("local", "")
        _emit(ev="plan", plan=msg.plan_spec, settled=bool(msg.settled), predicted_ms=float(msg.predicted_ms),
              local_ms=float(local), local_spec=local_spec, reason=msg.reason, t=time.time())

    def on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            _emit(ev="diag", node=st.name.rsplit("/", 1)[-1], level=int.from_bytes(st.level, "little")
                  if isinstance(st.level, bytes) else int(st.level), message=st.message,
                  values={kv.key: kv.value for kv in st.values}, t=time.time())


def _keep(d: dict, k, v, most: int = 100) -> None:
    d[k] = v
    while len(d) > most:
        d.pop(next(iter(d)))


def main(args=None) -> int:
    rclpy.init(args=args)
    node = Observer()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
