"""edge_node: the edge's share of every frame, computed tile by tile as the robot's tiles arrive.

Publishes its latency profile (latched) so that robots can plan and price it before they choose it, and a
heartbeat with its load (EdgeStatus), by which robots tell a live edge from a dead one and price the queueing they
would meet; a robot offloads only once the heartbeat lists it, i.e. once its outputs have somewhere to go. One
edge_node serves a fleet: robots are told apart by session, and their tiles are computed in fair turns
(nodes.edge_fleet).

Threads: the tile receiver queues admitted tiles (its own thread, see Receiver); one compute thread takes them
from the fair queue, computes and publishes, and alone touches frame state (``_headers``, ``_last_seen``, the
runtime); timers and the roster run on the executor.
"""
from __future__ import annotations

import threading
import time

from intradp_ros.engine.admission import Admission, Refusal
from intradp_ros.engine.codec import CodecError
from intradp_ros.engine.packet import STAGE_PROBE, STAGE_SPLIT, ProtocolError
from intradp_ros.engine.link import ChunkTimer
from intradp_ros.engine.plan import PlanError, compile_plan
from intradp_ros.msg import EdgeProfile, EdgeStatus, LinkEstimate, PlanStatus, TensorTile
from intradp_ros.nodes.common import (Counters, declare, msg_to_packet, name_native_thread, packet_to_msg, publisher,
                                      run_node, shutting_down, stamp_ms, subscription, subscription_qos)
from intradp_ros.nodes.edge_fleet import EdgeFleet
from intradp_ros.nodes.lifecycle import ManagedNode
from intradp_ros.nodes.log_limit import LogLimiter
from intradp_ros.nodes.receiver import Receiver, sessions
from intradp_ros.runtime import EdgeRuntime, ModelConfig
from intradp_ros.topology import TOPICS


class EdgeNode(ManagedNode):
    """Lifecycle (see ManagedNode): configure loads the model and profiles it, activate serves (heartbeats, the
    profile, tiles admitted), deactivate stops serving (robots see the edge go and run alone), cleanup releases
    the model."""

    def __init__(self):
        super().__init__("edge_node")
        d = ModelConfig(device="auto")
        ro = True
        self.cfg = ModelConfig(
            model=declare(self, "model", d.model, "model to serve (must match the robot's)", ro),
            weights=declare(self, "weights", d.weights, "detector weights: auto (installed) or a file path", ro),
            input_size=declare(self, "input_size", d.input_size, "network input side in px, 0 = model default", ro,
                               limits=(0, 8192)),
            device=declare(self, "device", d.device, "auto (cuda when available) | cpu | cuda:N", ro),
            threads=declare(self, "threads", d.threads, "torch and OpenCV CPU threads, 0 = their defaults", ro,
                            limits=(0, 1024)),
        )
        self.frame_timeout_s = declare(self, "frame_timeout_s", 5.0, "drop a frame whose tiles stop arriving",
                                       limits=(0.1, 3600.0))
        self.cache = declare(self, "profile_cache_dir", "", "profile cache, '' = default", ro)
        self.heartbeat_hz = declare(self, "heartbeat_hz", 5.0, "EdgeStatus heartbeats per second (robots time out "
                                    "on them: keep well above 1 / their edge_timeout_s)", ro, limits=(0.5, 1000.0))
        self.max_age = declare(self, "max_tile_age_s", 2.0, "ignore tiles that took this much longer than the "
                               "fastest of their robot (queued by an outage: the robot has answered those frames "
                               "itself); 0 = off", limits=(0.0, 3600.0))
        self.counters = Counters(self, ["tiles_received", "bad_tiles", "frames_done", "frames_dropped_timeout",
                                        "outputs_sent", "link_samples", "tiles_while_inactive", "robots_refused",
                                        "robots_freed", "bad_roster", *(r.value for r in Refusal)])
        self.report = LogLimiter(self.get_logger().warning)
        self._fleet_args = EdgeFleet.declare_parameters(self)
        self.fleet = None
        self.rt = None
        self._rx = self._thread = self.status_pub = None

    def configure(self):
        self.admission = Admission(self.max_age)       # any robot's session: a fleet may share this edge
        self.chunks = ChunkTimer()
        self.rt = EdgeRuntime(self.cfg, self.cache, log=self.get_logger().info)
        self.profile_pub = publisher(self, EdgeProfile, "edge_profile")
        # tiles only of robots admitted on /intradp/robots (see EdgeFleet), on their own thread (see Receiver),
        # the session read before deserializing (see tile_session)
        self.fleet = EdgeFleet(*self._fleet_args, self.counters, self.report, lambda topic: publisher(
            self, TensorTile, "outputs", topic))
        subscription(self, PlanStatus, "roster", self.fleet.roster)
        self.link_pub = publisher(self, LinkEstimate, "link")
        self._headers: dict[tuple, tuple] = {}      # (session, seq) -> header, image size: compute thread's
        self._last_seen: dict[tuple, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work_loop, daemon=True, name="edge-compute")
        self._thread.start()
        self._rx = Receiver(self, "tiles")
        self._rx.add(TensorTile, TOPICS["to_edge"].name, subscription_qos(self, "to_edge"),
                     sessions(TensorTile, admit=self.fleet.admits, handle=self._queue_tile,
                              refuse=self._refuse, bad="bad_tiles", name="tiles"))
        self._rx.start()
        self._busy_s = 0.0               # compute thread busy time since start: written by it alone
        self.create_timer(0.5, self.report.flush)
        self.get_logger().info(f"edge_node: model {self.cfg.model} @ {self.rt.m.size}px on {self.rt.m.device}")

    def activate(self):
        # the heartbeat's writer exists only while active: robots learn from the middleware that it went
        self.status_pub = publisher(self, EdgeStatus, "edge_status")
        self._beat = (time.monotonic(), self._busy_s)   # (time, busy_s) at the last heartbeat: the executor's
        self._heartbeat_timer = self.create_timer(1.0 / max(float(self.heartbeat_hz), 0.1), self.heartbeat_callback)
        self._profile_timer = self.create_timer(0.2, self.profile_callback)

    def deactivate(self):
        for t in (self._heartbeat_timer, self._profile_timer):
            self.destroy_timer(t)
        self.destroy_publisher(self.status_pub)
        self.status_pub = None

    def release(self):
        if self._rx is not None:
            self._rx.close()
        if self._thread is not None:
            self._stop.set()
            self.fleet.queue.close()
            self._thread.join(timeout=2.0)
        self._rx = self._thread = self.rt = self.fleet = None

    def profile_callback(self):
        self._profile_timer.cancel()
        p = self.rt.profile
        msg = EdgeProfile()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.model, msg.model_hash = self.cfg.model, p.key
        msg.input_height = msg.input_width = self.rt.m.size
        msg.device = p.device
        msg.op_names = [op.name for op in self.rt.m.graph.ops]
        msg.op_ms = [float(t) for t in p.op_ms]
        msg.codec_ms_per_mb = float(p.encode_ms_per_mb.get("raw", 0.0))
        msg.profile_json = p.to_json()
        self.profile_pub.publish(msg)
        self.get_logger().info(f"edge profile published (whole model {sum(p.op_ms):.1f} ms on {p.device})")

    def heartbeat_callback(self):
        now, busy = time.monotonic(), self._busy_s
        (then, busy_then), self._beat = self._beat, (now, busy)
        msg = EdgeStatus(device=self.rt.profile.device, frames_in_flight=len(self._headers),
                         frames_done=self.counters.values.get("frames_done", 0),
                         busy_fraction=min((busy - busy_then) / max(now - then, 1e-6), 1.0))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(self.fleet.fill(msg))

    def _refuse(self, counter: str, line: str):
        self.counters.inc(counter)
        self.report(counter, line)

    def _queue_tile(self, msg: TensorTile, arrived: float):
        """Receiver thread: a tile of an announced robot, for the compute thread (arrival: to time the link)."""
        if not self.active:
            self._refuse("tiles_while_inactive", f"tile of frame {msg.frame_seq} (session {msg.session}) ignored: "
                         "edge_node is not active (`ros2 lifecycle set /edge_node activate`)")
            return
        self.counters.inc("tiles_received")
        self.fleet.queue.put(msg.session, (msg, arrived), msg.frame_seq)

    def _work_loop(self):
        name_native_thread()
        housekept = time.monotonic()
        while not self._stop.is_set():
            got = self.fleet.queue.get(timeout=0.25)
            if time.monotonic() - housekept > 0.5:
                housekept = time.monotonic()
                self._housekeeping()
            if got is None:
                continue
            session, queued, (msg, arrived) = got
            if msg.stage == STAGE_PROBE:
                self._time_chunk(("probe", msg.session, msg.frame_seq), msg, arrived)
                continue
            t0 = time.monotonic()
            waiting = tuple(s for s in self.fleet.queue.backlog() if s != session)   # they wait behind this tile
            done = False
            try:
                done = self._take(msg, arrived)
            except Exception:
                if shutting_down(self):
                    return                 # Ctrl-C: the context went under a publish
                raise
            finally:
                dt = time.monotonic() - t0
                self._busy_s += dt
                self.fleet.queue.done(session, dt)
                self.fleet.load.served(session, dt, t0 - queued, done, waiting)

    def _take(self, msg: TensorTile, arrived: float) -> bool:
        """One tile from a robot, on the compute thread: admitted, computed, its outputs published. True when it
        completed its frame."""
        key = (msg.session, msg.frame_seq)
        refused = self.admission.check(msg.session, msg.frame_seq, msg.sender, stamp_ms(msg.sent) / 1e3,
                                       time.time() - (time.monotonic() - arrived))
        if refused is not None:
            self.counters.inc(refused.value)
            self.report(refused.value, f"tile {msg.tensor}[{msg.tile_index}] of frame {msg.frame_seq} (session "
                        f"{msg.session or '?'}) ignored: {refused.value.replace('_', ' ')}")
            return False
        try:
            pkt = msg_to_packet(msg, "edge")
            self._headers[key] = (msg.header, (msg.image_width, msg.image_height))
            self._last_seen[key] = time.monotonic()
            outs = self.rt.on_packet(pkt)
            seg = compile_plan(self.rt.m.graph, pkt.plan_spec).segment
            if msg.stage == STAGE_SPLIT and seg is not None and msg.tensor == seg.input:
                self._time_chunk(key, msg, arrived)
        except (PlanError, CodecError, ProtocolError, RuntimeError) as e:
            self.counters.inc("bad_tiles")
            self.rt.drop_frame(key)
            self.admission.finish(*key)          # its other tiles are refused as duplicates, not re-started
            self._forget(key)
            self.report("bad_tiles", f"frame {msg.frame_seq} ({msg.header.frame_id}) tile {msg.tensor}["
                        f"{msg.tile_index}/{msg.tile_count}] rows [{msg.row_start},{msg.row_stop}) rejected, frame "
                        f"dropped: {e}")
            return False
        header, size = self._headers[key]
        out_pub = self.fleet.outputs.get(msg.session)
        for p in outs if out_pub is not None else ():      # None: the robot left meanwhile
            out_pub.publish(packet_to_msg(p, header, size, self.cfg.model, self.get_clock().now().to_msg()))
            self.counters.inc("outputs_sent")
        if not self.rt.in_progress(key):      # complete
            self.counters.inc("frames_done")
            self.admission.finish(*key)
            self._forget(key)
            return True
        return False

    def _time_chunk(self, key, msg: TensorTile, arrived: float):
        sample = self.chunks.arrived(key, msg.tile_index, msg.tile_count, len(msg.data), arrived)
        if sample is None:
            return
        nbytes, span = sample
        est = LinkEstimate(session=msg.session, frame_seq=msg.frame_seq, bytes_measured=int(nbytes),
                           span_ms=span * 1e3, bandwidth_mbps=nbytes * 8 / span / 1e6)
        est.header.stamp = self.get_clock().now().to_msg()
        self.link_pub.publish(est)
        self.counters.inc("link_samples")

    def _forget(self, key: tuple):
        self._headers.pop(key, None)
        self._last_seen.pop(key, None)

    def _housekeeping(self):
        """Compute thread: free robots that left, drop frames whose tiles stopped."""
        for session in self.fleet.leaving():
            frames = [k for k in self._last_seen if k[0] == session]
            for key in frames:
                self.rt.drop_frame(key)
                self._forget(key)
            self.counters.inc("robots_freed")
            self.get_logger().info(f"robot session {session} left: its state freed ({len(frames)} frames in flight "
                                   "dropped)")
        now = time.monotonic()
        for key, t in list(self._last_seen.items()):
            if now - t > self.frame_timeout_s and self.rt.in_progress(key):
                self.rt.drop_frame(key)
                self.admission.finish(*key)
                self._forget(key)
                self.counters.inc("frames_dropped_timeout")
                self.report("frames_dropped_timeout", f"frame {key[1]} (session {key[0]}): tiles stopped arriving "
                            f"for {self.frame_timeout_s:.1f} s; dropped")


def main(args=None) -> int:
    return run_node(EdgeNode, args, "edge_node")


if __name__ == "__main__":
    raise SystemExit(main())
