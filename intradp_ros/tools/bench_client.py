"""The benchmark's client: a ROS 2 node inside the robot's namespace and CPU cgroup (started by
:mod:`intradp_ros.tools.bench`, never by hand).

It plays the camera in a closed loop: publish one frame, wait for its result (``/intradp/detections`` or
``/intradp/classifications``) and its ``/intradp/frame_timing``, both matched by the header stamp, then send the
next. Per bandwidth, the strategies take turns in ``rounds`` (a few frames each per round, in orders where each
follows every other equally often):
before each turn it sets robot_node's ``plan`` (and, with ``bandwidth_source: parameter``, ``bandwidth_mbps`` to the
shaped rate: the oracle) and waits for the ``/intradp/plan`` status that reflects them (the planner's prediction for
the plan in force).

It talks to the benchmark over stdin/stdout, one JSON object per line:
  client -> bench: {"event": "shape", "mbps": R}  (bench answers "ok" once the link is shaped)
                   {"event": "mark", ...}         (bench answers "ok" after reading its counters)
                   {"event": "plan", ...}, {"event": "frame", ...}, {"event": "log", ...}, {"event": "done"}
Per frame it reads the robot's CPU time from cgroup cpuacct.usage files the bench opened for it (the file
descriptors survive ``ip netns exec``, which hides /sys/fs/cgroup), and the veth byte counters (visible here).

In a fleet (``./intradp bench --robots``, :mod:`intradp_ros.tools.fleet_bench`) one client runs per robot, its node
in that robot's namespace; config ``fleet`` = {"robots": [1, 2, 4], "robot": k}. Per bandwidth every client takes
the planner's decision with the edge idle; then for each fleet size N the first N clients run the same turns at
once (the bench answers ``mark`` once all N asked, a barrier). After its measured frames a client says
{"event": "measured"} and goes on with "tail" frames until the bench writes "stop" (all N measured), so that every
measured frame met the full fleet's load. Client 1 also reports the edge's heartbeats per turn ({"event": "edge"}).
"""
from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def orders(n: int) -> list[list[int]]:
    """A Williams design: orders of n strategies in which each strategy follows every other one equally often
    (once in n orders for even n, twice in 2n for odd n) and each comes first in turn. A turn may be slowed by the
    one before it (on the bench the same plan once measured 11% slower in every round behind the best cut than
    behind all-local), and a plain rotation keeps every strategy behind the same one."""
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def turns(strategies: list[str], frames: int, rounds: int, warmup: int, round_warmup: int) -> list[tuple]:
    """The order of one bandwidth's runs: (round, strategy, warm-up frames, measured frames) per turn. Each
    strategy gets ``frames`` measured frames over ``rounds`` rounds (at most one round per frame), ``warmup`` frames
    before its first turn and ``round_warmup`` before each later one; the rounds follow :func:`orders`."""
    rounds = max(1, min(rounds, frames))
    design = orders(len(strategies))
    out = []
    for rnd in range(rounds):
        for k in design[rnd % len(design)]:
            out.append((rnd, strategies[k], warmup if rnd == 0 else round_warmup,
                        frames // rounds + (rnd < frames % rounds)))
    return out


def _emit(**event) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _ask(**event) -> str:
    _emit(**event)
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("bench went away")
    return line.strip()


def _stop_asked() -> bool:
    """Whether the bench wrote "stop" (every robot of the fleet has measured its frames). Nothing else can be
    pending on stdin then: the bench writes only answers to asks, and none is open during the tail."""
    if not select.select([sys.stdin], [], [], 0)[0]:
        return False
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("bench went away")
    return line.strip() == "stop"


def _read_fd(fd: int) -> int:
    return int(os.pread(fd, 64, 0).split()[0])


class Counters:
    """Robot CPU ns (nodes, client) and veth bytes (tx, rx), read together."""

    def __init__(self, nodes_fd: int, client_fd: int, dev: str):
        self.nodes_fd, self.client_fd = nodes_fd, client_fd
        self.paths = [Path(f"/sys/class/net/{dev}/statistics/{k}_bytes") for k in ("tx", "rx")]

    def read(self) -> tuple[float, int, int, int, int]:
        tx, rx = (int(p.read_text()) for p in self.paths)
        return time.time(), _read_fd(self.nodes_fd), _read_fd(self.client_fd), tx, rx


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="JSON written by the bench")
    cfg = json.loads(Path(ap.parse_args(argv).config).read_text())

    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from sensor_msgs.msg import Image

    from intradp_ros.models import get_spec
    from intradp_ros.msg import Classification, EdgeStatus, FrameTiming, PlanStatus
    from intradp_ros.nodes.common import stamp_ms, topic_qos
    from intradp_ros.nodes.detections_out import detections_type, frame_and_plan, read_detections
    from intradp_ros.topology import TOPICS
    from intradp_ros.vision.image_convert import array_to_image_fields
    from intradp_ros.vision.samples import find_samples, images_in

    folder = find_samples()
    if folder is None:
        _emit(event="error", text="no sample images: ./intradp setup puts them in .cache/samples")
        return 2
    images = [(p.name, Image(**array_to_image_fields(cv2.imread(str(p), cv2.IMREAD_COLOR), "bgr8")))
              for p in images_in(folder)]
    task = get_spec(cfg["model"]).task
    detection = task == "detection"
    counters = Counters(cfg["nodes_fd"], cfg["client_fd"], cfg["dev"])

    fleet = cfg.get("fleet")          # {"robots": [N, ...], "robot": k} in a fleet bench, else None
    rclpy.init()
    node = Node("intradp_bench_client", namespace=cfg.get("namespace") or None)
    results: dict[tuple[int, int], float] = {}        # stamp -> receive time (s, wall clock)
    result_info: dict[tuple[int, int], dict] = {}
    timings: dict[tuple[int, int], FrameTiming] = {}
    plans: list[tuple[float, PlanStatus]] = []

    def key(h):
        return h.stamp.sec, h.stamp.nanosec

    def on_result(msg):
        k = key(msg.header)
        results.setdefault(k, time.time())
        if detection:       # either detections type; vision_msgs' has no plan (the frame's FrameTiming has it)
            boxes = read_detections(msg)
            n, top, plan = len(boxes), boxes[0].class_name if boxes else "", (frame_and_plan(msg) or (0, ""))[1]
        elif task == "dense":   # a mask: the classes it shows, the most frequent first (its plan is in FrameTiming)
            ids, counts = np.unique(np.frombuffer(bytes(msg.data), np.uint8), return_counts=True)
            n, top, plan = len(ids), f"class_{ids[counts.argmax()]}" if len(ids) else "", ""
        else:
            n, top, plan = len(msg.class_ids), msg.class_names[0] if msg.class_names else "", msg.plan_spec
        result_info[k] = {"n_results": n, "top": top, "result_plan": plan}

    camera = node.create_publisher(Image, TOPICS["camera"].name, topic_qos("camera"))
    rkey = {"detection": "detections", "dense": "segmentation"}.get(task, "classifications")
    rtype = {"detection": detections_type() if detection else None, "dense": Image}.get(task, Classification)
    node.create_subscription(rtype, TOPICS[rkey].name, on_result, topic_qos(rkey))
    node.create_subscription(FrameTiming, TOPICS["timing"].name, lambda m: timings.setdefault(key(m.header), m),
                             topic_qos("timing"))
    node.create_subscription(PlanStatus, TOPICS["plan"].name, lambda m: plans.append((time.time(), m)),
                             topic_qos("plan"))
    heartbeats: list[tuple[float, EdgeStatus]] = []     # (receive time, heartbeat): the edge's load in a fleet
    if fleet:
        node.create_subscription(EdgeStatus, "/" + TOPICS["edge_status"].name,
                                 lambda m: heartbeats.append((time.monotonic(), m)), topic_qos("edge_status"))
    params = AsyncParameterClient(node, "robot_node")     # relative: this robot's, in the client's namespace

    def spin_until(cond, what: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                _emit(event="log", text=f"timed out after {timeout:.0f} s waiting for {what}")
                return False
            rclpy.spin_once(node, timeout_sec=0.05)
        return True

    def ready() -> bool:
        decided = any(p.predicted_ms > 0 and p.baseline_plan_specs for _, p in plans)
        return camera.get_subscription_count() > 0 and decided

    if not spin_until(ready, "robot_node to be ready (edge profile, plan, camera subscription)",
                      cfg["startup_timeout_s"]) or not params.wait_for_services(timeout_sec=60):
        _emit(event="error", text="robot_node never became ready")
        return 3
    _emit(event="ready")

    def set_plan(plan: str, mbps: float, expect_spec: str | None) -> PlanStatus | None:
        t0 = time.time()
        # atomically: rclpy's plain set_parameters calls robot_node's callback once per parameter, so it would re-plan
        # twice on two threads, the first with the new plan but the old bandwidth, and that one may finish last
        # with a measured link the shaped rate is not told at all (as deployed: no robot knows it)
        fut = params.set_parameters_atomically([Parameter("plan", value=plan)] + (
            [Parameter("bandwidth_mbps", value=float(mbps))] if check_bw else []))
        if not spin_until(fut.done, "set_parameters", 60) or not fut.result().result.successful:
            _emit(event="error", text=f"robot_node refused plan {plan!r} @ {mbps} Mbit/s: {fut.result()}")
            return None

        def fresh() -> list[PlanStatus]:
            return [p for t, p in plans if t >= t0 and stamp_ms(p.header.stamp) >= t0 * 1e3 - 5
                    and (not check_bw or abs(p.bandwidth_mbps - mbps) < 1e-6)
                    and (expect_spec is None or p.plan_spec == expect_spec)]
        if not spin_until(lambda: bool(fresh()), f"the plan status of {plan!r}", cfg["plan_timeout_s"]):
            return None
        # robot_node re-plans on a thread per change: let concurrent re-plans land, then take the newest status
        n, quiet_since = len(plans), time.monotonic()
        while time.monotonic() - quiet_since < cfg["status_quiet_s"]:
            rclpy.spin_once(node, timeout_sec=0.05)
            if len(plans) != n:
                n, quiet_since = len(plans), time.monotonic()
        return fresh()[-1]

    check_bw = cfg["bandwidth_source"] == "parameter"     # else robot_node plans for the bandwidth it measures
    frame_no = 0
    fleet_n = 1
    timeout = cfg["frame_timeout_s"]

    def settled() -> bool:
        return plans[-1][1].settled if plans else False

    def phases(warmup: int, frames: int, cell: dict):
        """The phase of each frame of a turn: ``warmup`` frames, then "settle" frames while robot_node's newest
        PlanStatus says the plan in force is not settled (plan auto measuring its candidates on a new link: every
        strategy gets the same rule, and fixed plans are settled at once), at most settle_max; then ``frames``;
        in a fleet then "tail" frames until the bench says stop."""
        yield from ["warmup"] * warmup
        for _ in range(cfg["settle_max"]):
            if settled():
                break
            yield "settle"
        since = len(heartbeats)
        yield from ["measure"] * frames
        if fleet:
            _emit(event="measured", **cell)
            edge_load(heartbeats[since:], cell)
            while not _stop_asked():
                yield "tail"

    def edge_load(hbs: list, cell: dict) -> None:
        """Client 1: the edge's heartbeats during its measured frames (the fleet's load on the edge)."""
        if fleet["robot"] != 1 or len(hbs) < 2:
            return
        span = hbs[-1][0] - hbs[0][0]
        _emit(event="edge", **cell, span_s=span, busy_fraction=float(np.mean([m.busy_fraction for _, m in hbs[1:]])),
              frames_per_s=(hbs[-1][1].frames_done - hbs[0][1].frames_done) / span if span > 0 else 0.0,
              sessions=max(len(m.robot_sessions) for _, m in hbs))

    def run_cell(mbps, strategy, base, base_pred, rnd: int, warmup: int, frames: int) -> bool:
        """One strategy's turn in one round: set its plan, then ``warmup`` (+ settle) + ``frames`` frames, closed
        loop."""
        nonlocal frame_no
        # the baselines run exactly the plans the planner compared Intra-DP with (their texts from PlanStatus)
        choice = "auto" if strategy == "intra-dp" else base[strategy]
        st = set_plan(choice, mbps, None if strategy == "intra-dp" else choice)
        if st is None:
            return False
        predicted = st.predicted_ms
        if strategy != "intra-dp" and abs(predicted - base_pred[strategy]) > 0.01 * predicted and rnd == 0:
            _emit(event="log", text=f"{strategy} @ {mbps:g}: PlanStatus.predicted_ms {predicted:.1f} differs "
                  f"from the Intra-DP decision's {base_pred[strategy]:.1f} for the same plan and bandwidth")
        _emit(event="plan", mbps=mbps, strategy=strategy, round=rnd, plan_spec=st.plan_spec, predicted_ms=predicted,
              decision_predicted_ms=base_pred.get(strategy), reason=st.reason)
        cell = dict(mbps=mbps, strategy=strategy, round=rnd, **({"robots": fleet_n} if fleet else {}))
        _ask(event="mark", **cell, phase="start")
        since = len(plans)      # robot_node may switch plans during the run (its measured-latency guard)
        for i, phase in enumerate(phases(warmup, frames, cell)):
            plan_settled = settled()
            name, img = images[frame_no % len(images)]
            frame_no += 1
            before = counters.read()
            img.header.stamp = node.get_clock().now().to_msg()
            img.header.frame_id = f"bench/{name}"
            k = key(img.header)
            camera.publish(img)
            ok = spin_until(lambda k=k: k in results and k in timings, f"frame {frame_no} ({name})", timeout)
            after = counters.read()
            t = timings.get(k)
            frame_plan = t.plan_spec if t else ""
            # the prediction for the plan this frame ran under: from the newest status announcing that plan
            in_force = [p for _, p in plans[since:] if p.plan_spec == frame_plan]
            frame_pred = in_force[-1].predicted_ms if in_force else predicted
            row = dict(event="frame", **cell, phase=phase, plan_settled=int(plan_settled), index=i, image=name, ok=ok,
                       plan_spec=st.plan_spec, predicted_ms=frame_pred,
                       latency_ms=(results[k] - (k[0] + k[1] * 1e-9)) * 1e3 if k in results else None,
                       agg_latency_ms=t.latency_ms if t else None,
                       robot_compute_ms=t.robot_compute_ms if t else None,
                       edge_compute_ms=t.edge_compute_ms if t else None,
                       frame_plan=frame_plan, wall_s=after[0] - before[0],
                       cpu_nodes_s=(after[1] - before[1]) / 1e9, cpu_client_s=(after[2] - before[2]) / 1e9,
                       tx_bytes=after[3] - before[3], rx_bytes=after[4] - before[4], **result_info.get(k, {}))
            _emit(**row)
            results.pop(k, None)
            timings.pop(k, None)
            result_info.pop(k, None)
        _ask(event="mark", **cell, phase="end")
        return True

    def edge_idle() -> bool:
        """In a fleet, before a decision: wait for a heartbeat that shows the edge idle, then 6 s more (three time
        constants of the robots' load estimate), so that every robot decides its baselines for an idle edge."""
        t0 = time.monotonic()
        if not spin_until(lambda: any(t > t0 and m.busy_fraction == 0.0 for t, m in heartbeats), "an idle edge", 120):
            return False
        t1 = time.monotonic()
        return spin_until(lambda: time.monotonic() > t1 + 6.0, "the load estimate to decay", 10)

    for mbps in cfg["bandwidths"]:
        _ask(event="shape", mbps=mbps)
        if fleet and not edge_idle():
            return 4
        auto = set_plan("auto", mbps, None)
        if auto is None:
            return 4
        base = dict(zip(auto.baseline_names, auto.baseline_plan_specs))
        base_pred = dict(zip(auto.baseline_names, auto.baseline_predicted_ms))
        _emit(event="decision", mbps=mbps, chosen=auto.plan_spec, predicted_ms=auto.predicted_ms, reason=auto.reason,
              baselines={k: [base[k], base_pred[k]] for k in base})
        # strategies take turns, a few frames each, in orders where each follows every other equally often: slow
        # drift of the host (its other tenants, thermal state) and what a turn leaves to the next then fall on every
        # strategy alike instead of on whichever cell ran during it or behind it
        for fleet_n in fleet["robots"] if fleet else [1]:
            if fleet and fleet["robot"] > fleet_n:
                continue        # not in a fleet of this size: idle while the first fleet_n robots run
            for rnd, strategy, warm, n in turns(cfg["strategies"], cfg["frames"], cfg["rounds"], cfg["warmup"],
                                                cfg["round_warmup"]):
                if not run_cell(mbps, strategy, base, base_pred, rnd, warm, n):
                    return 5
    node.destroy_node()
    rclpy.shutdown()
    _emit(event="done")      # last: the bench then stops everything, this process included
    return 0


if __name__ == "__main__":
    sys.exit(main())
