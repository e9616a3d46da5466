"""The whole pipeline on this machine, on the sample frames: `./intradp run`.

Starts camera_player, robot_node, edge_node and aggregator_node as separate processes (the same node set as
``ros2 launch intradp_ros intradp.launch.py``) on a private ROS_DOMAIN_ID, subscribes to
``/intradp/detections`` as a user would, prints each frame's detections and latency, and stops everything.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov3_tiny")
    ap.add_argument("--frames", type=int, default=0, help="frames to run (0 = each sample image once)")
    ap.add_argument("--rate", type=float, default=2.0, help="camera rate, Hz")
    ap.add_argument("--plan", default="auto", help="auto | local | offload | cut:<op> | a plan text")
    ap.add_argument("--bandwidth", type=float, default=100.0, help="robot-edge Mbit/s the planner assumes")
    ap.add_argument("--source", default="samples", help="camera_player source (samples, pattern, a path)")
    ap.add_argument("--timeout", type=float, default=240.0, help="give up after this many seconds")
    ap.add_argument("--verbose", action="store_true", help="echo the nodes' log lines")
    a = ap.parse_args(argv)

    import rclpy
    from rclpy.node import Node

    from intradp_ros.launcher import share_dir, start
    from intradp_ros.msg import DetectionArray, FrameTiming
    from intradp_ros.nodes.common import topic_qos
    from intradp_ros.topology import TOPICS
    from intradp_ros.tools.params import with_overrides
    from intradp_ros.vision.samples import find_samples, images_in

    frames = a.frames
    if frames <= 0:
        folder = find_samples() if a.source == "samples" else None
        frames = len(images_in(folder)) if folder else 5
    domain = os.environ.get("ROS_DOMAIN_ID") or str(random.randint(100, 199))
    env = dict(os.environ, ROS_DOMAIN_ID=domain)
    os.environ["ROS_DOMAIN_ID"] = domain
    params = with_overrides(share_dir() / "config" / "robot.yaml", {
        "camera_player": {"source": a.source, "rate_hz": a.rate, "count": frames, "loop": True},
        "robot_node": {"plan": a.plan, "bandwidth_mbps": a.bandwidth},
    })
    print(f"intradp demo: {frames} frame(s) of {a.source} through {a.model}, plan {a.plan}, "
          f"{a.bandwidth:g} Mbit/s assumed, ROS_DOMAIN_ID={domain}", flush=True)

    rclpy.init()
    node = Node("intradp_demo_client")
    got: dict[int, DetectionArray] = {}
    timing: dict[int, FrameTiming] = {}
    printed: set[int] = set()
    node.create_subscription(DetectionArray, TOPICS["detections"].name, lambda m: got.setdefault(m.frame_seq, m),
                             topic_qos(node, "detections"))
    node.create_subscription(FrameTiming, TOPICS["timing"].name, lambda m: timing.setdefault(m.frame_seq, m),
                             topic_qos(node, "timing"))
    launch = start("all", {"model": a.model, "robot_params_file": str(params)}, env=env, echo=a.verbose)
    latencies = []
    deadline = time.monotonic() + a.timeout
    status = 0
    try:
        while len(printed) < frames:
            rclpy.spin_once(node, timeout_sec=0.2)
            for seq in sorted(set(got) & set(timing) - printed):
                d, t = got[seq], timing[seq]
                latencies.append(t.latency_ms)
                dets = ", ".join(f"{x.class_name} {x.score:.2f} @({x.center_x:.0f},{x.center_y:.0f} "
                                 f"{x.size_x:.0f}x{x.size_y:.0f})" for x in d.detections) or "nothing"
                print(f"frame {seq:3d}  stamp {d.header.stamp.sec}.{d.header.stamp.nanosec:09d}  "
                      f"latency {t.latency_ms:7.1f} ms  [{d.plan_spec}]  {dets}", flush=True)
                printed.add(seq)
            if launch.poll() not in (None, 0):
                print("a node exited with an error; its last lines:", file=sys.stderr)
                for name, lines in launch.output.items():
                    for line in list(lines)[-15:]:
                        print(f"[{name}] {line}", file=sys.stderr)
                status = 1
                break
            if time.monotonic() > deadline:
                print(f"timed out after {a.timeout:.0f} s with {len(printed)}/{frames} frames", file=sys.stderr)
                status = 1
                break
    except KeyboardInterrupt:
        status = 130
    finally:
        launch.stop()
        node.destroy_node()
        rclpy.shutdown()
        params.unlink(missing_ok=True)
    if latencies:
        print(f"{len(latencies)} frame(s): latency p50 {statistics.median(latencies):.1f} ms, "
              f"min {min(latencies):.1f}, max {max(latencies):.1f} (camera stamp -> detections published; "
              "robot and edge share this machine's CPU)")
    return status


if __name__ == "__main__":
    sys.exit(main())
