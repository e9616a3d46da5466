"""aggregator_node: reassembles each frame's outputs from robot and edge, publishes the result and timing.

A frame is complete when every output's rows are covered; one whose parts do not all arrive within
``frame_timeout_s`` is dropped with a log line and counted, never kept.
"""
from __future__ import annotations

import queue
import threading
import time

from rclpy.impl.logging_severity import LoggingSeverity
from rclpy.node import Node
from sensor_msgs.msg import Image

from intradp_ros.engine.admission import Admission, Refusal
from intradp_ros.engine.codec import CodecError
from intradp_ros.engine.packet import ProtocolError
from intradp_ros.engine.plan import Plan, PlanError
from intradp_ros.msg import Classification, FrameTiming, PlanStatus, TensorTile
from intradp_ros.nodes.common import (Counters, declare, msg_to_packet, name_native_thread, publisher, run_node,
                                      shutting_down, stamp_ms, subscription, subscription_qos)
from intradp_ros.nodes.detections_out import CHOICES, detections_message, detections_type, type_name
from intradp_ros.nodes.log_limit import LogLimiter
from intradp_ros.nodes.receiver import Receiver, sessions
from intradp_ros.runtime import AggregatorRuntime, LateOutput, ModelConfig
from intradp_ros.topology import TOPICS
from intradp_ros.vision.image_convert import ImageConversionError, array_to_image_fields, image_to_array, to_rgb8


class AggregatorNode(Node):
    HOUSEKEEPING_S = 0.5           # stale frames dropped and suppressed log lines summarised this often

    def __init__(self):
        super().__init__("aggregator_node")
        ro = True
        cfg = ModelConfig(
            model=declare(self, "model", "yolov3_tiny", "model whose outputs arrive (must match robot/edge)", ro),
            input_size=declare(self, "input_size", 0, "network input side in px, 0 = model default", ro,
                               limits=(0, 8192)))
        self.conf = declare(self, "conf_threshold", 0.25, "detections: objectness x class score threshold",
                            limits=(0.0, 1.0))
        self.nms = declare(self, "nms_threshold", 0.45, "detections: per-class NMS IoU threshold", limits=(0.0, 1.0))
        self.top_k = declare(self, "top_k", 5, "classification: classes published per frame", limits=(1, 1000))
        self.frame_timeout_s = declare(self, "frame_timeout_s", 5.0, "drop a frame whose parts stop arriving",
                                       limits=(0.1, 3600.0))
        self.max_result_age_s = declare(self, "max_result_age_s", 5.0, "never publish a result whose camera "
                                        "frame is older than this (its timing still goes to the robot)",
                                        limits=(0.1, 3600.0))
        max_age = declare(self, "max_tile_age_s", 2.0, "ignore outputs that took this much longer than the fastest "
                          "of their sender (queued by an outage); 0 = off", limits=(0.0, 3600.0))
        annotated = declare(self, "publish_annotated", False, "publish an annotated image (needs the camera)", ro)
        # the detections' message class (a ValueError saying what to do when vision_msgs is asked for but missing)
        self.detections_type = detections_type(declare(
            self, "detections_type", "auto", f"detections message: {' | '.join(CHOICES)} (auto: vision_msgs/msg/"
            "Detection2DArray where vision_msgs is installed, else intradp_ros/msg/DetectionArray)", ro))
        self.counters = Counters(self, ["outputs_received", "bad_outputs", "frames_published",
                                        "frames_dropped_timeout", "annotate_misses", "late_outputs_discarded",
                                        "frames_rescued", "stale_results_dropped",
                                        *(r.value for r in Refusal if r is not Refusal.DUPLICATE)])
        # outputs of our robot's session only (from its PlanStatus; none before it): another robot's, or an
        # earlier run's, never reach the detections
        self.admission = Admission(max_age, expected="")
        self.report = LogLimiter(self.get_logger().warning)
        self.rt = AggregatorRuntime(cfg)
        self.cfg = cfg
        self.task = self.rt.m.spec.task
        self.detection = self.task == "detection"
        key = {"detection": "detections", "dense": "segmentation"}.get(self.task, "classifications")
        kinds = {"detections": self.detections_type, "segmentation": Image}
        self.result_pub = publisher(self, kinds.get(key, Classification), key)
        self.timing_pub = publisher(self, FrameTiming, "timing")
        # outputs on their own thread (see Receiver), serialized: the session is read before deserializing, and
        # only our robot's are deserialized (see tile_session). ``_session`` is written by the executor (PlanStatus)
        # and read by the receiver (one str, replaced whole); the work thread's Admission has its own copy
        self._session = ""
        subscription(self, PlanStatus, "plan", self.plan_callback)
        self._frames: dict[int, dict] = {}     # seq -> header, size, first arrival, bytes
        self._images: dict[tuple, object] = {}
        self.annotated_pub = None
        if annotated:
            self.annotated_pub = publisher(self, Image, "annotated")
            subscription(self, Image, "camera", self.image_callback)
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work_loop, daemon=True, name="aggregate")
        self._thread.start()
        self._rx = Receiver(self, "outputs")
        self._rx.add(TensorTile, TOPICS["outputs"].name, subscription_qos(self, "outputs"),
                     sessions(TensorTile, admit=lambda session: session == self._session, refuse=self._refuse,
                              bad="bad_outputs", name="outputs",
                              handle=lambda msg, arrived: (self.counters.inc("outputs_received"),
                                                           self._q.put((msg, arrived)))))
        self._rx.start()
        kind = type_name(self.detections_type) if self.detection else TOPICS[key].type
        self.get_logger().info(f"aggregator_node: model {cfg.model}, publishing {TOPICS[key].name} ({kind})")

    def plan_callback(self, msg: PlanStatus):
        self._session = msg.session
        self._q.put(("session", msg.session))     # frame state is the work thread's alone

    def _refuse(self, counter: str, line: str):
        self.counters.inc(counter)
        self.report(counter, line)

    def image_callback(self, msg: Image):
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self._images[key] = msg
        while len(self._images) > 30:
            self._images.pop(next(iter(self._images)))

    def _work_loop(self):
        name_native_thread()
        housekeeping = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - housekeeping >= self.HOUSEKEEPING_S:   # here, not on an executor timer (each
                housekeeping = time.monotonic()                           # wake-up of rclpy's costs ~1 ms)
                self._drop_stale()
                self.report.flush()
            try:
                item = self._q.get(timeout=self.HOUSEKEEPING_S)
            except queue.Empty:
                continue
            if item[0] == "session":
                self._new_session(item[1])
                continue
            msg, arrived = item
            seq = msg.frame_seq
            refused = self.admission.check(msg.session, seq, msg.sender, stamp_ms(msg.sent) / 1e3,
                                           time.time() - (time.monotonic() - arrived))
            if refused is not None:        # a duplicate is late: its frame was published (or rescued) already
                name = "late_outputs_discarded" if refused is Refusal.DUPLICATE else refused.value
                self.counters.inc(name)
                if name != "late_outputs_discarded":
                    self.report(name, f"output {msg.tensor} of frame {seq} from {msg.sender} (session "
                                f"{msg.session or '?'}) ignored: {name.replace('_', ' ')}")
                continue
            info = self._frames.setdefault(seq, {"header": msg.header, "size": (msg.image_width, msg.image_height),
                                                 "t0": time.monotonic(), "bytes": 0})
            try:
                info["bytes"] += len(msg.data)
                info["last_arrival"] = arrived
                replaced = self.rt.replaced
                fo = self.rt.add(msg_to_packet(msg, "aggregator"))
                if self.rt.replaced != replaced:
                    self.counters.inc("frames_rescued")
            except LateOutput:
                self.counters.inc("late_outputs_discarded")
                continue
            except (PlanError, CodecError, ProtocolError, RuntimeError) as e:
                self.counters.inc("bad_outputs")
                self._frames.pop(seq, None)
                self.rt.assembler.frames.pop(seq, None)
                self.report("bad_outputs", f"frame {seq} ({msg.header.frame_id}) output {msg.tensor} from "
                            f"{msg.sender} rejected, frame dropped: {e}")
                continue
            if fo is not None:
                self.admission.finish(msg.session, seq)
                try:
                    self._publish(fo, self._frames.pop(seq))
                except Exception as e:  # noqa: BLE001 - one frame's result must not stop the aggregator
                    if shutting_down(self):
                        return             # Ctrl-C: the context went under a publish
                    self.counters.inc("bad_outputs")
                    self.report("bad_outputs", f"frame {seq}: its result could not be published: {e!r}")

    def _new_session(self, session: str):
        if session == self.admission.expected:
            return
        if self.admission.expected:
            self.get_logger().info(f"robot session {session} (was {self.admission.expected}): frames of the old one "
                                   "are dropped")
        self.admission.expect(session)
        self.rt.reset()
        self._frames.clear()

    def _publish(self, fo, info):
        header, (w, h) = info["header"], info["size"]
        try:
            result = self.rt.finalize(fo, w, h)
        except Exception as e:  # noqa: BLE001 - a bad frame must not stop the aggregator
            self.counters.inc("bad_outputs")
            self.report("bad_outputs", f"frame {fo.frame_seq} ({header.frame_id}): post-processing failed: {e}")
            return
        if self.detection:
            msg = detections_message(self.detections_type, header, fo.frame_seq, fo.plan_spec, result)
        elif self.task == "dense":
            msg = Image(header=header, **array_to_image_fields(result, "mono8"))
        else:
            top = result[: int(self.top_k)]
            msg = Classification(header=header, frame_seq=fo.frame_seq, plan_spec=fo.plan_spec,
                                 class_ids=[int(c.class_id) for c in top], class_names=[c.class_name for c in top],
                                 scores=[float(c.score) for c in top])
        now = self.get_clock().now().to_msg()
        age_s = (stamp_ms(now) - stamp_ms(header.stamp)) / 1e3
        if age_s <= self.max_result_age_s:
            self.result_pub.publish(msg)
        else:
            self.counters.inc("stale_results_dropped")
            self.report("stale_results_dropped", f"frame {fo.frame_seq} ({header.frame_id}): result {age_s:.1f} s "
                        f"old (max_result_age_s {self.max_result_age_s:.1f}): not published")
        timing = FrameTiming(header=header, frame_seq=fo.frame_seq, plan_spec=fo.plan_spec,
                             latency_ms=stamp_ms(now) - stamp_ms(header.stamp), robot_compute_ms=float(fo.robot_ms),
                             edge_compute_ms=float(fo.edge_ms), bytes_robot_to_edge=int(fo.bytes_to_edge),
                             bytes_to_aggregator=int(info["bytes"]),
                             aggregator_ms=(time.monotonic() - info["last_arrival"]) * 1e3)
        self.timing_pub.publish(timing)
        self.counters.inc("frames_published")
        if self.get_logger().is_enabled_for(LoggingSeverity.DEBUG):   # the line costs more than the check
            summary = (", ".join(f"{d.class_name} {d.score:.2f}" for d in result[:8]) if self.detection else
                       f"{len(set(result.flatten().tolist()))} classes" if self.task == "dense" else
                       ", ".join(f"{c.class_name} {c.score:.2f}" for c in result[:3]))
            self.get_logger().debug(f"frame {fo.frame_seq} ({header.frame_id}): {timing.latency_ms:.1f} ms, "
                                    f"plan {Plan.parse(fo.plan_spec).kind(len(self.rt.m.graph.ops))}: {summary}")
        if self.annotated_pub is not None and self.task != "classification":
            self._annotate(header, result)

    def _annotate(self, header, result):
        from intradp_ros.vision.detection import draw_detections, overlay_mask
        img = self._images.pop((header.stamp.sec, header.stamp.nanosec), None)
        if img is None:
            self.counters.inc("annotate_misses")
            return
        try:
            rgb = to_rgb8(image_to_array(img.encoding, img.height, img.width, img.step, img.data,
                                         bool(img.is_bigendian)), img.encoding)
        except ImageConversionError:
            return
        bgr = rgb[:, :, ::-1].copy()
        bgr = draw_detections(bgr, result) if self.detection else overlay_mask(bgr, result)
        out = Image(header=header, **array_to_image_fields(bgr, "bgr8"))
        self.annotated_pub.publish(out)

    def _drop_stale(self):
        now = time.monotonic()
        for seq, info in list(self._frames.items()):
            if now - info["t0"] > self.frame_timeout_s:
                self._frames.pop(seq)
                self.rt.assembler.frames.pop(seq, None)
                self.counters.inc("frames_dropped_timeout")
                self.report("frames_dropped_timeout", f"frame {seq} ({info['header'].frame_id}): outputs incomplete "
                            f"after {self.frame_timeout_s:.1f} s; dropped")

    def close(self):
        self._rx.close()
        self._stop.set()
        self._thread.join(timeout=2.0)


def main(args=None) -> int:
    return run_node(AggregatorNode, args, "aggregator_node")


if __name__ == "__main__":
    raise SystemExit(main())
