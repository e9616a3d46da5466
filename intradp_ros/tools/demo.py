"""The whole pipeline on this machine, on the sample frames: `./intradp run`.

Starts camera_player, robot_node, edge_node and aggregator_node as separate processes (the same node set as
``ros2 launch intradp_ros intradp.launch.py``) on a private ROS_DOMAIN_ID, subscribes to
the model's results as a user would (``/intradp/detections``, ``/intradp/classifications`` or
``/intradp/segmentation``, by the model's task), prints each frame's results and latency and each plan in words
(``/intradp/plan``'s description, once per plan change), writes each annotated frame
(``/intradp/annotated_image``: the boxes or the mask drawn on the camera frame) as a JPEG, and stops everything.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path


def save_jpeg(img, path: Path, quality: int = 90) -> None:
    """Write a sensor_msgs/Image (any encoding intradp_ros reads) as a JPEG file."""
    import cv2

    from intradp_ros.vision.image_convert import image_to_array, to_rgb8
    rgb = to_rgb8(image_to_array(img.encoding, img.height, img.width, img.step, img.data, bool(img.is_bigendian)),
                  img.encoding)
    if not cv2.imwrite(str(path), rgb[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"cannot write {path}")


def result_reader(task: str):
    """(message type, topic key, message -> one line) of the results of a model with ``task``."""
    import numpy as np
    from sensor_msgs.msg import Image

    from intradp_ros.msg import Classification, DetectionArray
    if task == "detection":
        return DetectionArray, "detections", lambda d: ", ".join(
            f"{x.class_name} {x.score:.2f} @({x.center_x:.0f},{x.center_y:.0f} {x.size_x:.0f}x{x.size_y:.0f})"
            for x in d.detections) or "nothing"
    if task == "dense":
        def mask(m) -> str:
            ids, n = np.unique(np.frombuffer(bytes(m.data), np.uint8), return_counts=True)
            order = np.argsort(-n)[:5]
            return f"{m.width}x{m.height} mask: " + ", ".join(f"class {ids[i]} {n[i] / n.sum():.0%}" for i in order)
        return Image, "segmentation", mask
    return Classification, "classifications", lambda c: ", ".join(
        f"{name} {score:.2f}" for name, score in zip(c.class_names[:3], c.scores[:3]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov3_tiny")
    ap.add_argument("--frames", type=int, default=0, help="frames to run (0 = each sample image once)")
    ap.add_argument("--rate", type=float, default=2.0, help="camera rate, Hz")
    ap.add_argument("--plan", default="auto", help="auto | local | offload | cut:<op> | a plan text")
    ap.add_argument("--bandwidth", type=float, default=100.0, help="robot-edge Mbit/s the planner assumes")
    ap.add_argument("--source", default="samples", help="camera_player source (samples, pattern, a path)")
    ap.add_argument("--pictures", default=str(Path(os.environ.get("INTRADP_ROOT", ".")) / ".cache" / "run"),
                    help="folder for the annotated frames, frame_<n>.jpg ('' = none; default %(default)s)")
    ap.add_argument("--timeout", type=float, default=240.0, help="give up after this many seconds")
    ap.add_argument("--verbose", action="store_true", help="echo the nodes' log lines")
    a = ap.parse_args(argv)

    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from intradp_ros.launcher import share_dir, start
    from intradp_ros.models import get_spec
    from intradp_ros.msg import FrameTiming, PlanStatus
    from intradp_ros.nodes.common import topic_qos
    from intradp_ros.topology import TOPICS
    from intradp_ros.tools.params import with_overrides
    from intradp_ros.vision.samples import find_samples, images_in

    frames = a.frames
    if frames <= 0:
        folder = find_samples() if a.source == "samples" else None
        frames = len(images_in(folder)) if folder else 5
    pictures = Path(a.pictures).resolve() if a.pictures else None
    if pictures:
        pictures.mkdir(parents=True, exist_ok=True)
    domain = os.environ.get("ROS_DOMAIN_ID") or str(random.randint(100, 199))
    env = dict(os.environ, ROS_DOMAIN_ID=domain)
    os.environ["ROS_DOMAIN_ID"] = domain
    params = with_overrides(share_dir() / "config" / "robot.yaml", {
        # robot_node subscribes once ready; with pictures, aggregator_node subscribes too (for the annotation)
        "camera_player": {"source": a.source, "rate_hz": a.rate, "count": frames, "loop": True,
                          "wait_for_subscribers": 2 if pictures else 1},
        "robot_node": {"plan": a.plan, "bandwidth_mbps": a.bandwidth},
        # this client reads intradp_ros/DetectionArray, whichever type `auto` would pick
        "aggregator_node": {"publish_annotated": pictures is not None, "detections_type": "intradp"},
    })
    print(f"intradp demo: {frames} frame(s) of {a.source} through {a.model}, plan {a.plan}, "
          f"{a.bandwidth:g} Mbit/s assumed, ROS_DOMAIN_ID={domain}", flush=True)

    rclpy.init()
    node = Node("intradp_demo_client")
    try:
        result_type, result_key, summarize = result_reader(get_spec(a.model).task)
    except ValueError as e:
        print(f"intradp run: {e}", file=sys.stderr)
        return 2
    got: dict[tuple[int, int], str] = {}                 # camera stamp -> the result in one line
    timing: dict[tuple[int, int], FrameTiming] = {}
    images: dict[tuple[int, int], Image] = {}            # annotated frames by camera stamp
    printed: set[tuple[int, int]] = set()
    saved: set[tuple[int, int]] = set()
    plans: dict[str, int] = {}                           # plan text -> its number in this run
    in_force = [""]

    def on_plan(m: PlanStatus) -> None:
        if m.plan_spec != in_force[0]:
            in_force[0] = m.plan_spec
            n = plans.setdefault(m.plan_spec, len(plans) + 1)
            predicted = f" (predicted {m.predicted_ms:.0f} ms)" if m.predicted_ms > 0 else ""
            print(f"plan {n}: {m.description or m.plan_spec}{predicted}", flush=True)

    def stamp(m) -> tuple[int, int]:
        return m.header.stamp.sec, m.header.stamp.nanosec

    node.create_subscription(result_type, TOPICS[result_key].name, lambda m: got.setdefault(stamp(m), summarize(m)),
                             topic_qos(result_key))
    node.create_subscription(FrameTiming, TOPICS["timing"].name, lambda m: timing.setdefault(stamp(m), m),
                             topic_qos("timing"))
    node.create_subscription(PlanStatus, TOPICS["plan"].name, on_plan, topic_qos("plan"))
    if pictures:
        node.create_subscription(Image, TOPICS["annotated"].name, lambda m: images.setdefault(stamp(m), m),
                                 topic_qos("annotated"))

    def save_pictures() -> None:
        for key in sorted(printed - saved):
            img = images.pop(key, None)
            if img is not None:
                save_jpeg(img, pictures / f"frame_{timing[key].frame_seq:03d}.jpg")
                saved.add(key)

    launch = start("all", {"model": a.model, "robot_params_file": str(params)}, env=env, echo=a.verbose)
    latencies = []
    deadline = time.monotonic() + a.timeout
    status = 0
    try:
        while len(printed) < frames:
            rclpy.spin_once(node, timeout_sec=0.2)
            for key in sorted(set(got) & set(timing) - printed, key=lambda k: timing[k].frame_seq):
                t = timing[key]
                latencies.append(t.latency_ms)
                tag = plans.setdefault(t.plan_spec, len(plans) + 1)
                print(f"frame {t.frame_seq:3d}  latency {t.latency_ms:7.1f} ms  plan {tag}  {got[key]}", flush=True)
                printed.add(key)
            if pictures:
                save_pictures()
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
        grace = time.monotonic() + 2.0                   # the last annotated frames follow their detections
        while pictures and status == 0 and printed - saved and time.monotonic() < grace:
            rclpy.spin_once(node, timeout_sec=0.1)
            save_pictures()
    except KeyboardInterrupt:
        status = 130
    finally:
        launch.stop()
        node.destroy_node()
        rclpy.shutdown()
        params.unlink(missing_ok=True)
    if latencies:
        print(f"{len(latencies)} frame(s): latency p50 {statistics.median(latencies):.1f} ms, "
              f"min {min(latencies):.1f}, max {max(latencies):.1f} (camera stamp -> results published; "
              "robot and edge share this machine's CPU)")
    if pictures:
        print(f"{len(saved)} annotated frame(s) written to {pictures}/ as frame_<n>.jpg")
    return status


if __name__ == "__main__":
    sys.exit(main())
