"""robot_node: camera frames in, the robot's tiles computed, the edge's share sent while computing.

Threads: the camera callback only keeps the newest frame; an inference thread runs the robot's share; a
sender thread publishes tiles in order, because a reliable publish blocks for the transfer time on a slow
link and must not stall computation; the plan controller's own planner thread decides the plan (see
intradp_ros.robot.controller for who owns what). The node reads the controller's status, never its parts.
"""
from __future__ import annotations

import queue
import secrets
import threading
import time

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.time import Time

from intradp_ros.engine.plan import PlanError
from intradp_ros.msg import FrameTiming, LinkEstimate, PlanStatus, TensorTile
from intradp_ros.nodes.camera_intake import CameraIntake
from intradp_ros.nodes.common import (Counters, declare, name_native_thread, packet_to_msg, publisher, run_node,
                                      shutting_down, subscription_qos)
from intradp_ros.nodes.edge_watch import EdgeWatch
from intradp_ros.nodes.link_probe import ProbeSender
from intradp_ros.nodes.lifecycle import ManagedNode
from intradp_ros.nodes.log_limit import LogLimiter
from intradp_ros.nodes.receiver import Receiver, deserialized
from intradp_ros.robot.controller import LIVE_SETTINGS
from intradp_ros.robot.planning import parse_plan_choice
from intradp_ros.robot.runtime import RobotRuntime
from intradp_ros.robot.state import Status
from intradp_ros.runtime import RobotConfig
from intradp_ros.topology import TOPICS, parse_edge_namespaces


class RobotNode(ManagedNode):
    """Lifecycle (see ManagedNode): configure loads the model, profiles it and starts the threads; activate takes
    camera frames once the aggregator (and the edge, or edge_wait_s) is there; deactivate stops taking them;
    cleanup releases the model."""

    def __init__(self):
        super().__init__("robot_node")
        self.cfg = declare_config(self)
        ro = True
        self.max_image_pixels = declare(self, "max_image_pixels", 4096 * 4096, "refuse camera images larger than "
                                        "this many pixels (a corrupt or hostile header must not cost a conversion)",
                                        limits=(1, 1 << 30))
        self.edge_wait_s = declare(self, "edge_wait_s", 30.0, "wait this long for the edge before running alone", ro,
                                   (0.0, 86400.0))
        self.probe_period_s, self.probe_kib, self.send_selftest = ProbeSender.declare_parameters(self)
        self._watch_args = EdgeWatch.declare_parameters(self)
        self.report = LogLimiter(self.get_logger().warning)
        self.counters = Counters(self, ["frames_received", "frames_processed", "frames_skipped_busy", "bad_images",
                                        "frame_errors", "tiles_sent", "bytes_to_edge", "link_samples",
                                        "probes_sent", "guard_switches", "send_errors", "plan_changes",
                                        "frames_rescued", "edge_lost", "edge_switches"], also=self.report.flush)
        self.refuse = lambda cause, line: (self.counters.inc(cause), self.report(cause, line))   # bad input
        self.add_on_set_parameters_callback(self.parameters_callback)
        self.rt = self.controller = self._camera = self._rx = self._ready_timer = self.watch = None
        self._threads: list[threading.Thread] = []

    def configure(self):
        self.cfg = declare_config(self)              # as set now (declared already: the current values)
        parse_plan_choice(self.cfg.plan, None, self.cfg.model)     # a bad plan fails before the model loads
        parse_edge_namespaces(self._watch_args[0], self.get_namespace())   # so does a bad edge_namespace
        self.session = secrets.token_hex(8)   # names this run's frames: receivers ignore other sessions' tiles
        log = self.get_logger()
        self.plan_pub = publisher(self, PlanStatus, "plan")
        # lines dropped once Ctrl-C took the context; one lambda per severity (rclpy: one severity per call site)
        self.rt = RobotRuntime(self.cfg, log=lambda line: shutting_down(self) or log.info(line),
                               warn=lambda line: shutting_down(self) or log.warning(line), on_change=self.publish_plan)
        self.controller = self.rt.controller
        self.out_pub = publisher(self, TensorTile, "outputs")
        self._frame, self._seq = None, 0
        self._cond = threading.Condition()
        # what arrives with every frame, and the edges' heartbeats, off the executor (see Receiver)
        self._rx = Receiver(self, "rx")
        self._rx.add(FrameTiming, TOPICS["timing"].name, subscription_qos(self, "timing"),
                     deserialized(FrameTiming, lambda msg, _arrived: self.timing_callback(msg), self.refuse,
                                  "bad_timing", "timing"))
        self.watch = EdgeWatch(self, self._rx, self.rt, self.counters, self._cond, self.link_callback,
                               *self._watch_args)
        self._rx.start()
        self._send_q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._infer_loop, daemon=True, name="infer"),
                         threading.Thread(target=self._send_loop, daemon=True, name="send")]
        for t in self._threads:
            t.start()
        self.probes = ProbeSender(self._send_q, self.controller, log, self.rt.profile.cpu_share, self.probe_period_s,
                                  self.probe_kib)
        self._selftest: threading.Thread | None = None
        if self.probe_period_s > 0:
            self.create_timer(self.probe_period_s, self.probe_callback)
        self.publish_plan(self.controller.status())
        log.info(f"robot_node: model {self.cfg.model} @ {self.rt.m.size}px on {self.rt.m.device}")

    def activate(self):
        self._started = self.get_clock().now()
        self._ready_timer = self.create_timer(0.1, self.ready_callback)
        self.get_logger().info(f"waiting for the edge (up to {self.edge_wait_s:.0f} s) and the aggregator")

    def deactivate(self):
        if self._ready_timer is not None:
            self.destroy_timer(self._ready_timer)
        if self._camera is not None:
            self._camera.close()
        self._ready_timer = self._camera = None
        with self._cond:
            self._frame = None                 # a frame taken but not started is not served

    def release(self):
        if self.watch is not None and not shutting_down(self):
            self.watch.leave()
        if self._threads:
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            for t in self._threads:
                t.join(timeout=2.0)
        if self._rx is not None: self._rx.close()  # noqa: E701
        if self.rt is not None: self.rt.close()  # noqa: E701
        self._threads, self.rt, self.controller, self._rx, self.watch = [], None, None, None, None

    # -- readiness: subscribe to the camera only once the frames' consumers are there --------------------------
    def ready_callback(self):
        waited = (self.get_clock().now() - self._started).nanoseconds / 1e9
        have_agg = self.count_publishers(TOPICS["timing"].name) > 0    # ours: the timing topic is in our namespace
        full = self.watch.admitted is False       # an edge: its profile, tile subscription, and admission (heartbeat)
        have_edge = self.watch.serving() and self.watch.admitted
        plan_fixed = self.controller.config.plan != "auto"
        if not have_agg or not (have_edge or full or waited > self.edge_wait_s
                                or (plan_fixed and not self.rt.needs_edge)):
            return
        if have_edge and self.send_selftest:
            if self._selftest is None:
                self._selftest = threading.Thread(target=self.probes.measure_send_cpu, daemon=True,
                                                  name="send self-test")
                self._selftest.start()
            if self._selftest.is_alive():
                return                     # frames would disturb the measurement: the camera waits for it
        self.destroy_timer(self._ready_timer)
        self._ready_timer = None
        if not have_edge:
            self.get_logger().warning("every edge is full (max_robots): running all-local until a place frees" if full
                                      else f"no edge after {waited:.0f} s: running all-local until one appears")
        self._camera = CameraIntake(self, self.counters, self.report, self.max_image_pixels, self._offer)
        self.get_logger().info(f"ready: plan {self.controller.status().describe}; "
                               f"listening on {self._camera.topic_name}")

    def link_callback(self, msg: LinkEstimate):
        if msg.session not in ("", self.session):
            return                            # another robot's link to a shared edge
        self.counters.inc("link_samples")
        self.probes.sampled()
        self.controller.observe_bandwidth(msg.bandwidth_mbps)

    def timing_callback(self, msg: FrameTiming):
        """Measured latency of our frames (from the aggregator): the per-frame overhead the planner adds to every
        plan, and the guard, which swaps a plan that under-delivers."""
        self.watch.answered(msg.frame_seq)
        if self.controller.observe_timing(msg.frame_seq, msg.plan_spec, msg.latency_ms, msg.edge_compute_ms,
                                          msg.aggregator_ms) is not None:
            self.counters.inc("guard_switches")
        if self.controller.link_in_doubt:
            self.probe_callback(doubt=True)

    def probe_callback(self, doubt: bool = False):
        """Keep the bandwidth estimate alive when the plan in force sends nothing measurable (see ProbeSender)."""
        # the timestamp test first: in doubt this runs on every FrameTiming, and config copies under a lock
        if (not self.probes.due(doubt) or self.controller.config.bandwidth_source != "measured"
                or self._camera is None or not self.watch.serving()):
            return
        self.probes.probe()
        self.counters.inc("probes_sent")

    def parameters_callback(self, params):
        """Semantic checks only: rcl refused values outside the declared ranges before this is called."""
        changed = {p.name: p.value for p in params}
        if changed.get("bandwidth_source", "measured") not in ("measured", "parameter"):
            return SetParametersResult(successful=False, reason="bandwidth_source: measured | parameter")
        live = {k: v for k, v in changed.items() if k in LIVE_SETTINGS}
        if live and self.controller is not None:     # else read when configured
            try:
                self.controller.configure(**live)   # a new plan runs once priced, from the next frame after
            except (PlanError, ValueError) as e:
                return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    def publish_plan(self, status: Status):
        """PlanStatus for the plan the next frame runs (trials, guard switches, degraded mode included): the
        controller calls this after every change, from whichever thread made it."""
        if not shutting_down(self):     # else Ctrl-C: a pass that ends now has nowhere to say so
            self.counters.inc("plan_changes")
            msg = plan_status_msg(status, self.get_clock().now().to_msg(), self.session, self.get_namespace())
            self.plan_pub.publish(msg)
            if self.watch is not None:
                self.watch.announce(msg)      # the same, to the edge

    # -- frames -------------------------------------------------------------------------------------------------
    def _offer(self, header, rgb):
        """Camera thread (CameraIntake): the newest frame, for the frame thread."""
        with self._cond:
            if self._frame is not None:
                self.counters.inc("frames_skipped_busy")   # a newer frame replaces one not yet started
            self._frame = (header, rgb)
            self._cond.notify()

    def _infer_loop(self):
        """Frames and rescues, one at a time: a rescue (a frame whose edge part is late) goes before a new frame."""
        name_native_thread()
        while not self._stop.is_set():
            with self._cond:
                while self._frame is None and not self.watch.due and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                rescue = self.watch.due.popleft() if self.watch.due else None
                if rescue is None:
                    header, rgb = self._frame
                    self._frame = None
            if rescue is not None:
                self.watch.rescue(rescue, self.out_pub, self.cfg.model)
                continue
            self._seq += 1
            seq = self._seq
            size = (rgb.shape[1], rgb.shape[0])
            started = time.monotonic()
            age_ms = (self.get_clock().now() - Time.from_msg(header.stamp)).nanoseconds / 1e6
            try:
                edge = self.watch.current      # the frame's tiles go to the edge it was planned for
                run = self.rt.run_frame(seq, rgb, lambda p, h=header, s=size, e=edge: self._send_q.put((p, h, s, e)),
                                        age_ms)
                self.watch.keep(seq, run, header, size, started - age_ms / 1e3)
                self.counters.inc("frames_processed")
                self.get_logger().debug(f"frame {seq} ({header.frame_id}): robot share {run.busy_ms:.1f} ms")
            except Exception as e:  # noqa: BLE001 - one bad frame must not stop the robot
                if shutting_down(self):
                    return                 # Ctrl-C: the context went under a publish
                self.counters.inc("frame_errors")
                self.report("frame_errors", f"frame {seq} ({header.frame_id}) failed on the robot: {e}")

    def _send_loop(self):
        name_native_thread()
        while not self._stop.is_set():
            try:
                item = self._send_q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._send_one(*item)
            except Exception as e:  # noqa: BLE001 - the sender must outlive one bad message, or every frame stalls
                if self._stop.is_set() or shutting_down(self):
                    return
                self.counters.inc("send_errors")
                self.report("send_errors", f"sending {getattr(item[0], 'tensor', '?')} of frame "
                            f"{getattr(item[0], 'frame_seq', '?')} failed: {e!r}")

    def _send_one(self, pkt, header, size, edge=None):
        """``edge``: the EdgeLink the frame was planned for (None: the one in use now, for probes)."""
        if callable(pkt):                          # a marker: everything queued before it has been sent
            pkt()
            return
        edge = edge or self.watch.current
        if isinstance(pkt, TensorTile):            # a ready message (link probe)
            if edge is not None:
                pkt.session, pkt.sent = self.session, self.get_clock().now().to_msg()
                edge.tiles.publish(pkt)
            return
        cpu0 = time.thread_time()
        msg = packet_to_msg(pkt, header, size, self.cfg.model, self.get_clock().now().to_msg(), self.session)
        if pkt.dest == "edge":
            if edge is None:       # planned for an edge that was dropped since: the frame's rescue answers it
                raise RuntimeError("no edge to send to")
            edge.tiles.publish(msg)
            self.counters.inc("tiles_sent")
            self.counters.inc("bytes_to_edge", len(pkt.payload))
        else:
            self.out_pub.publish(msg)
        # what sending costs this (maybe CPU-capped) robot, for the planner
        self.controller.observe_send(len(pkt.payload), (time.thread_time() - cpu0) * 1e3)

def declare_config(node: Node) -> RobotConfig:
    """The robot's parameters (model, planner settings) as a RobotConfig."""
    d, ro = RobotConfig(), True
    cfg = RobotConfig(
        model=declare(node, "model", d.model, "model to run (see intradp_ros.models)", ro),
        weights=declare(node, "weights", d.weights, "detector weights: auto (installed) or a file path", ro),
        input_size=declare(node, "input_size", d.input_size, "network input side in px, 0 = model default", ro,
                           (0, 8192)),
        device=declare(node, "device", d.device, "torch device for the robot's share", ro),
        threads=declare(node, "threads", d.threads, "torch and OpenCV CPU threads, 0 = their defaults", ro, (0, 1024)),
        plan=declare(node, "plan", d.plan, "auto | local | offload | cut:<op> | a plan text"),
        bandwidth_mbps=declare(node, "bandwidth_mbps", d.bandwidth_mbps, "robot-edge bandwidth for planning",
                               limits=(0.01, 1e5)),
        link_latency_ms=declare(node, "link_latency_ms", d.link_latency_ms, "one-way message latency",
                                limits=(0.0, 1e4)),
        encodings=declare(node, "encodings", d.encodings, "tile encodings the planner may use (raw,fp16,lz4,zstd)"),
        min_split_gain=declare(node, "min_split_gain", d.min_split_gain,
                               "choose a split plan only if predicted this fraction faster than every baseline",
                               limits=(0.0, 0.99)),
        explore_margin=declare(node, "explore_margin", d.explore_margin,
                               "once per link, measure the best split of each of the 3 best segments for a few "
                               "frames when priced within this fraction of the choice and the edge's share is "
                               "worth this fraction of it (0 = never)", limits=(0.0, 0.99)),
        profile_cache_dir=declare(node, "profile_cache_dir", d.profile_cache_dir, "'' = ~/.cache/intradp_ros", ro),
    )
    cfg.bandwidth_source = declare(node, "bandwidth_source", d.bandwidth_source,
                                   "measured (from real transfers) | parameter (bandwidth_mbps)")
    return cfg


def plan_status_msg(status: Status, stamp, session: str = "", namespace: str = "/") -> PlanStatus:
    msg = PlanStatus(session=session, robot_namespace=namespace)
    msg.header.stamp = stamp
    plan = status.plan
    msg.plan_id, msg.plan_spec = plan.plan_id, plan.spec()
    msg.bandwidth_mbps = float(status.bandwidth_mbps)
    msg.settled = status.settled
    msg.frame_overhead_ms = status.frame_ms
    msg.predicted_ms = float(status.predicted_ms or 0.0)
    msg.baseline_names = list(status.baselines)
    msg.baseline_plan_specs = [p.plan.spec() for p in status.baselines.values()]
    msg.baseline_predicted_ms = [float(p.latency_ms + status.frame_ms) for p in status.baselines.values()]
    msg.reason = status.reason
    msg.description = status.describe
    return msg


def main(args=None) -> int:
    return run_node(RobotNode, args, "robot_node")


if __name__ == "__main__":
    raise SystemExit(main())
