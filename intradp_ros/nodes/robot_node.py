"""robot_node: camera frames in, the robot's tiles computed, the edge's share sent while computing.

Threads: the camera callback only keeps the newest frame; an inference thread runs the robot's share; a
sender thread publishes tiles in order, because a reliable publish blocks for the transfer time on a slow
link and must not stall computation.
"""
from __future__ import annotations

import os
import queue
import threading
import time

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image

from intradp_ros.engine.plan import PlanError, compile_plan
from intradp_ros.engine.profiler import DeviceProfile
from intradp_ros.engine.executor import STAGE_PROBE
from intradp_ros.msg import EdgeProfile, FrameTiming, LinkEstimate, PlanStatus, TensorTile
from intradp_ros.nodes.common import Counters, declare, packet_to_msg, run_node, topic_qos
from intradp_ros.runtime import RobotConfig, RobotRuntime, parse_plan_choice
from intradp_ros.topology import TOPICS
from intradp_ros.vision.image_convert import ImageConversionError, image_to_array, to_rgb8


# live parameters: each goes into RobotConfig and re-plans when changed
_REPLAN_PARAMETERS = ("plan", "bandwidth_mbps", "link_latency_ms", "encodings", "bandwidth_source", "min_split_gain",
                      "explore_margin")


class RobotNode(Node):

    def __init__(self):
        super().__init__("robot_node")
        d = RobotConfig()
        ro = True
        self.cfg = RobotConfig(
            model=declare(self, "model", d.model, "model to run (see intradp_ros.models)", ro),
            weights=declare(self, "weights", d.weights, "detector weights: auto (installed) or a file path", ro),
            input_size=declare(self, "input_size", d.input_size, "network input side in px, 0 = model default", ro),
            device=declare(self, "device", d.device, "torch device for the robot's share", ro),
            threads=declare(self, "threads", d.threads, "torch CPU threads, 0 = torch default", ro),
            plan=declare(self, "plan", d.plan, "auto | local | offload | cut:<op> | a plan text"),
            bandwidth_mbps=declare(self, "bandwidth_mbps", d.bandwidth_mbps, "robot-edge bandwidth for planning"),
            link_latency_ms=declare(self, "link_latency_ms", d.link_latency_ms, "one-way message latency"),
            encodings=declare(self, "encodings", d.encodings, "tile encodings the planner may use (raw,fp16,lz4,zstd)"),
            min_split_gain=declare(self, "min_split_gain", d.min_split_gain,
                                   "choose a split plan only if predicted this fraction faster than every baseline"),
            explore_margin=declare(self, "explore_margin", d.explore_margin,
                                   "once per link, measure the best split of each of the 3 best segments for a few "
                                   "frames when priced within this fraction of the choice and the edge's share is "
                                   "worth this fraction of it (0 = never)"),
            profile_cache_dir=declare(self, "profile_cache_dir", d.profile_cache_dir, "'' = ~/.cache/intradp_ros", ro),
        )
        self.cfg.bandwidth_source = declare(self, "bandwidth_source", d.bandwidth_source,
                                            "measured (from real transfers) | parameter (bandwidth_mbps)")
        self.edge_wait_s = declare(self, "edge_wait_s", 30.0, "wait this long for the edge before running alone", ro)
        self.probe_period_s = declare(self, "probe_period_s", 10.0,
                                      "measure the link with a small probe this often when no frame does (0 = off)")
        self.probe_kib = declare(self, "probe_kib", 128, "probe size, KiB (sent as 4 back-to-back chunks)", ro)
        self.send_selftest = declare(self, "send_selftest", True,
                                     "at start-up, measure this process's CPU per message sent to the edge (two "
                                     "bursts of 12 probe messages, ~1 s) for the planner", ro)
        self.counters = Counters(self, ["frames_received", "frames_processed", "frames_skipped_busy", "bad_images",
                                        "frame_errors", "tiles_sent", "bytes_to_edge", "replans", "link_samples",
                                        "probes_sent", "guard_switches", "send_errors"])
        log = self.get_logger()
        self.rt = RobotRuntime(self.cfg, log=log.info)
        self.tile_pub = self.create_publisher(TensorTile, TOPICS["to_edge"].name, topic_qos(self, "to_edge"))
        self.out_pub = self.create_publisher(TensorTile, TOPICS["outputs"].name, topic_qos(self, "outputs"))
        self.plan_pub = self.create_publisher(PlanStatus, TOPICS["plan"].name, topic_qos(self, "plan"))
        self.create_subscription(EdgeProfile, TOPICS["edge_profile"].name, self.edge_profile_callback,
                                 topic_qos(self, "edge_profile"))
        self.create_subscription(LinkEstimate, TOPICS["link"].name, self.link_callback, topic_qos(self, "link"))
        self.create_subscription(FrameTiming, TOPICS["timing"].name, self.timing_callback, topic_qos(self, "timing"))
        self.add_on_set_parameters_callback(self.parameters_callback)
        self._camera_qos = topic_qos(self, "camera")
        self._camera_sub = None
        self._frame = None
        self._cond = threading.Condition()
        self._seq = 0
        self._send_q: queue.Queue = queue.Queue()
        self._plan_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._replan_waiting = False
        self._stop = threading.Event()
        self._started = self.get_clock().now()
        self._threads = [threading.Thread(target=self._infer_loop, daemon=True, name="infer"),
                         threading.Thread(target=self._send_loop, daemon=True, name="send")]
        for t in self._threads:
            t.start()
        self._ready_timer = self.create_timer(0.1, self.ready_callback)
        self._last_link_sample = self.get_clock().now()
        self._probe_seq = 0
        self._selftest: threading.Thread | None = None
        if self.probe_period_s > 0:
            self.create_timer(self.probe_period_s, self.probe_callback)
        self.publish_plan()
        log.info(f"robot_node: model {self.cfg.model} @ {self.rt.m.size}px on {self.rt.m.device}; "
                 f"waiting for the edge (up to {self.edge_wait_s:.0f} s) and the aggregator")

    # -- readiness: subscribe to the camera only once the frames' consumers are there --------------------------
    def ready_callback(self):
        waited = (self.get_clock().now() - self._started).nanoseconds / 1e9
        have_agg = self.out_pub.get_subscription_count() > 0
        have_edge = self.rt.edge_profile is not None and self.tile_pub.get_subscription_count() > 0
        plan_fixed = self.cfg.plan != "auto"
        if not have_agg or not (have_edge or waited > self.edge_wait_s or (plan_fixed and not self.rt.needs_edge)):
            return
        if have_edge and self.send_selftest:
            if self._selftest is None:
                self._selftest = threading.Thread(target=self._measure_send_cpu, daemon=True, name="send self-test")
                self._selftest.start()
            if self._selftest.is_alive():
                return                     # frames would disturb the measurement: the camera waits for it
        self._ready_timer.cancel()
        if not have_edge:
            self.get_logger().warning(f"no edge after {waited:.0f} s: running all-local until one appears")
        self._camera_sub = self.create_subscription(Image, TOPICS["camera"].name, self.image_callback,
                                                    self._camera_qos)
        self.get_logger().info(f"ready: plan {self.rt.plan.describe(self.rt.m.graph)}; "
                               f"listening on {self._camera_sub.topic_name}")

    def edge_profile_callback(self, msg: EdgeProfile):
        try:
            prof = DeviceProfile.from_json(msg.profile_json)
            self.rt.set_edge_profile(prof, replan=False)
        except (ValueError, TypeError, KeyError) as e:
            self.get_logger().error(f"edge profile from {msg.device} rejected: {e}")
            return
        self.get_logger().info(f"edge profile received ({msg.device}, whole model {sum(prof.op_ms):.1f} ms)")
        self._replan_soon()

    def link_callback(self, msg: LinkEstimate):
        self.counters.inc("link_samples")
        self._last_link_sample = self.get_clock().now()
        if self.rt.observe_bandwidth(msg.bandwidth_mbps):
            self.get_logger().info(f"link measured at {self.rt.bandwidth():.1f} Mbit/s (planned for "
                                   f"{self.rt.planned_mbps:.1f}): re-planning")
            self._replan_soon()

    def timing_callback(self, msg: FrameTiming):
        """Measured latency of our frames (from the aggregator): the per-frame overhead the planner adds to every
        plan, and the guard, which swaps a plan that under-delivers."""
        if self.rt.observe_overhead(msg.frame_seq, msg.aggregator_ms):
            self.get_logger().info(f"measured per-frame overhead (intake + aggregation) {self.rt.frame_ms():.1f} ms: "
                                   f"added to every plan's prediction")
            self.publish_plan()
        self.rt.observe_edge_compute(msg.plan_spec, msg.edge_compute_ms)
        before = self.rt.plan.spec()
        new = self.rt.observe_latency(msg.plan_spec, msg.latency_ms, msg.frame_seq)
        if new is None:
            return
        self.counters.inc("guard_switches")
        g = self.rt.m.graph
        self.get_logger().warning(
            f"plan {before} measures {self.rt.guard.measured(before):.1f} ms (predicted "
            f"{self.rt.predicted_ms(before) or float('nan'):.1f}); switching to {new.describe(g)} "
            f"(score {self.rt.guard.score(new.spec()):.1f} ms)")
        self.publish_plan()

    def probe_callback(self):
        """Keep the bandwidth estimate alive when the plan in force sends nothing measurable."""
        idle_s = (self.get_clock().now() - self._last_link_sample).nanoseconds / 1e9
        if (self.cfg.bandwidth_source != "measured" or idle_s < self.probe_period_s or self._camera_sub is None
                or self.rt.edge_profile is None or self.tile_pub.get_subscription_count() == 0):
            return
        self._queue_probe(4, max(16, int(self.probe_kib) * 1024 // 4))
        self.counters.inc("probes_sent")

    def _queue_probe(self, count: int, nbytes: int) -> None:
        """Queue ``count`` back-to-back probe messages of ``nbytes`` each for the sender (the edge times them)."""
        self._probe_seq += 1
        n = nbytes // 4                                      # float32 elements per message
        for i in range(count):
            m = TensorTile(frame_seq=self._probe_seq, plan_spec="probe", tensor="__probe__", stage=STAGE_PROBE,
                           tile_index=i, tile_count=count, sender="robot", shape=[1, 1, 1, n],
                           payload_shape=[1, 1, 1, n], dtype="float32", encoding="raw")
            m.data = bytes(4 * n)
            self._send_q.put((m, None, None))

    def _measure_send_cpu(self):
        """What sending costs this process in CPU, all threads: the sender thread's own CPU misses the
        middleware's threads (acknowledgements, fragments, heartbeats). Two bursts of probe messages (4 KiB and
        64 KiB) through the real publisher, each measured as process CPU time beyond the idle rate until the sender
        has drained and the acknowledgements are in. The planner takes the larger of this and the sender's own."""
        def burst(n: int, nbytes: int) -> float:
            done = threading.Event()
            w0, c0 = time.monotonic(), time.process_time()
            self._queue_probe(n, nbytes)
            self._send_q.put((done.set, None, None))
            done.wait(30.0)
            time.sleep(0.2)
            return (time.process_time() - c0 - idle * (time.monotonic() - w0)) * 1e3

        def quiet() -> bool:   # no planning running or waiting (a search would count as sending)
            return not self._plan_lock.locked() and not self._replan_waiting and not self.rt._planning

        try:
            for _ in range(3):
                deadline = time.monotonic() + 60.0
                while not quiet() and time.monotonic() < deadline:
                    time.sleep(0.05)
                replans = self.counters.values.get("replans", 0)
                w0, c0 = time.monotonic(), time.process_time()
                time.sleep(0.4)
                idle = (time.process_time() - c0) / (time.monotonic() - w0)
                small, large = burst(12, 4096), burst(12, 65536)
                if quiet() and self.counters.values.get("replans", 0) == replans:
                    break
            per_msg, per_mb = self.rt.set_process_send_cpu((12, 4096, small), (12, 65536, large))
            self.get_logger().info(f"sending costs this process {per_msg:.2f} ms CPU per message + {per_mb:.1f} ms "
                                   f"per MB (all threads; the planner divides by the CPU share "
                                   f"{self.rt.profile.cpu_share:.2f})")
            self._replan_soon()
        except Exception as e:  # noqa: BLE001 - a failed self-test leaves the sender-thread measurement
            self.get_logger().error(f"send self-test failed: {e!r}; pricing messages by the sender thread alone")

    def parameters_callback(self, params):
        changed = {p.name: p.value for p in params}
        for name in ("bandwidth_mbps", "link_latency_ms"):
            if name in changed and not (isinstance(changed[name], (int, float)) and changed[name] > 0):
                return SetParametersResult(successful=False, reason=f"{name} must be a positive number")
        for name in ("min_split_gain", "explore_margin"):
            if name in changed and not (isinstance(changed[name], float) and 0.0 <= changed[name] < 1.0):
                return SetParametersResult(successful=False, reason=f"{name} must be a float in [0, 1)")
        fixed = None
        if "plan" in changed:
            try:
                fixed = parse_plan_choice(changed["plan"], self.rt.m.graph, self.rt.m.spec.name)
                if fixed is not None:
                    compile_plan(self.rt.m.graph, fixed)
            except (PlanError, ValueError) as e:
                return SetParametersResult(successful=False, reason=str(e))
        if "bandwidth_source" in changed and changed["bandwidth_source"] not in ("measured", "parameter"):
            return SetParametersResult(successful=False, reason="bandwidth_source: measured | parameter")
        for name in _REPLAN_PARAMETERS:
            if name in changed:
                setattr(self.cfg, name, changed[name])
        if fixed is not None:
            self.rt.set_plan(fixed)        # effective from the next frame; frames in flight keep theirs
        if changed.keys() & set(_REPLAN_PARAMETERS):
            # (re)planning and predicting take a moment: off the parameter service thread
            self._replan_soon()
        return SetParametersResult(successful=True)

    def _replan_soon(self):
        """Re-plan in a thread: planning takes a moment, and callbacks and the frame loop must not wait for it."""
        threading.Thread(target=self._report_plan, daemon=True).start()

    def _report_plan(self):
        """Re-plan and publish. One planning at a time, and at most one waiting: requests that arrive while one
        waits are served by it, since it reads the newest inputs when it runs (two parameters set together plan
        once, not twice). The planning thread runs at the lowest CPU priority: on a CPU-capped robot a search
        takes seconds of wall time, and the frame in progress should not wait for it."""
        _lowest_priority()
        with self._pending_lock:
            if self._replan_waiting:
                return
            self._replan_waiting = True
        with self._plan_lock:
            with self._pending_lock:
                self._replan_waiting = False
            self._plan_once()

    def _plan_once(self):
        decision = self.rt.replan()
        self.counters.inc("replans")
        if decision is not None:
            lines = decision.report().splitlines()
            lines[0] += f"  ({self.rt.last_replan}: {decision.considered} plans priced)"
            if self.rt.exploring and self.rt.plan.spec() == self.rt.exploring:
                lines.append(f"  trying {self.rt.plan.describe(self.rt.m.graph)} for a few frames: predicted within "
                             f"{self.rt.cfg.explore_margin:.0%} of the choice; its measured latency will decide")
            for line in lines:
                self.get_logger().info(line)
        self.publish_plan()

    def publish_plan(self):
        msg = PlanStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        plan = self.rt.plan
        msg.plan_id, msg.plan_spec = plan.plan_id, plan.spec()
        msg.bandwidth_mbps = float(self.rt.planned_mbps or self.rt.bandwidth())
        msg.settled = self.rt.settled()
        dec = self.rt.decision
        if dec is not None:
            extra = self.rt.frame_ms()
            self.rt.reported_frame_ms = msg.frame_overhead_ms = extra
            msg.predicted_ms = float(self.rt.predicted_ms(plan.spec()) or dec.chosen.latency_ms + extra)
            msg.baseline_names = list(dec.baselines)
            msg.baseline_plan_specs = [p.plan.spec() for p in dec.baselines.values()]
            msg.baseline_predicted_ms = [float(p.latency_ms + extra) for p in dec.baselines.values()]
            why = ("" if plan == dec.chosen.plan else
                   f" (trial, to be measured; the planner chose {dec.chosen.name})" if plan.spec() == self.rt.exploring
                   else f" (measured-latency guard; the planner chose {dec.chosen.name})")
            msg.reason = plan.describe(self.rt.m.graph) + why
        else:
            msg.reason = "no edge profile yet: " + plan.describe(self.rt.m.graph)
        self.plan_pub.publish(msg)

    # -- frames -------------------------------------------------------------------------------------------------
    def image_callback(self, msg: Image):
        self.counters.inc("frames_received")
        try:
            arr = image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))
            rgb = to_rgb8(arr, msg.encoding)
        except ImageConversionError as e:
            self.counters.inc("bad_images")
            self.get_logger().error(f"frame {msg.header.frame_id}@{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"
                                    f" rejected: {e}")
            return
        with self._cond:
            if self._frame is not None:
                self.counters.inc("frames_skipped_busy")   # a newer frame replaces one not yet started
            self._frame = (msg.header, rgb)
            self._cond.notify()

    def _infer_loop(self):
        while not self._stop.is_set():
            with self._cond:
                while self._frame is None and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                header, rgb = self._frame
                self._frame = None
            self._seq += 1
            seq = self._seq
            size = (rgb.shape[1], rgb.shape[0])
            age_ms = (self.get_clock().now() - Time.from_msg(header.stamp)).nanoseconds / 1e6
            try:
                ms = self.rt.run_frame(seq, rgb, lambda p, h=header, s=size: self._send_q.put((p, h, s)), age_ms)
                self.counters.inc("frames_processed")
                self.get_logger().debug(f"frame {seq} ({header.frame_id}): robot share {ms:.1f} ms")
                if self.rt.compute_drifted():
                    self.get_logger().info(f"robot / edge compute at {self.rt.compute_scale():.2f}x / "
                                           f"{self.rt.edge_scale():.2f}x their start-up profiles (planned with "
                                           f"{self.rt.planned_scale:.2f}x / {self.rt.planned_edge_scale:.2f}x): "
                                           f"re-planning")
                    self._replan_soon()
                elif why := self.rt.own_drifted():
                    self.get_logger().info(f"{why}: re-pricing")
                    self._replan_soon()
            except Exception as e:  # noqa: BLE001 - one bad frame must not stop the robot
                self.counters.inc("frame_errors")
                self.get_logger().error(f"frame {seq} ({header.frame_id}) failed on the robot: {e}")

    def _send_loop(self):
        while not self._stop.is_set():
            try:
                item = self._send_q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._send_one(*item)
            except Exception as e:  # noqa: BLE001 - the sender must outlive one bad message, or every frame stalls
                if self._stop.is_set():
                    return
                self.counters.inc("send_errors")
                self.get_logger().error(f"sending {getattr(item[0], 'tensor', '?')} of frame "
                                        f"{getattr(item[0], 'frame_seq', '?')} failed: {e!r}")

    def _send_one(self, pkt, header, size):
        if callable(pkt):                          # a marker: everything queued before it has been sent
            pkt()
            return
        if isinstance(pkt, TensorTile):            # a ready message (link probe)
            pkt.sent = self.get_clock().now().to_msg()
            self.tile_pub.publish(pkt)
            return
        cpu0 = time.thread_time()
        msg = packet_to_msg(pkt, header, size, self.cfg.model, self.get_clock().now().to_msg())
        if pkt.dest == "edge":
            self.tile_pub.publish(msg)
            self.counters.inc("tiles_sent")
            self.counters.inc("bytes_to_edge", len(pkt.payload))
        else:
            self.out_pub.publish(msg)
        # what sending costs this (maybe CPU-capped) robot, for the planner
        if self.rt.observe_send(len(pkt.payload), (time.thread_time() - cpu0) * 1e3) and self.cfg.plan == "auto":
            self.get_logger().info(f"measured send cost {self.rt.msg_ms():.2f} ms/message (planned with "
                                   f"{self.rt.planned_msg_ms:.2f}): re-planning")
            self._replan_soon()

    def close(self):
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=2.0)


def _lowest_priority():
    """nice 19 for the calling thread (Linux applies nice per thread); elsewhere nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def main(args=None):
    run_node(RobotNode, args)


if __name__ == "__main__":
    main()
