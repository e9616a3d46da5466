"""A hostile host on the robot's ROS domain, for the fault scenarios (started by :mod:`intradp_ros.tools.faults`
in the edge's namespace, never by hand).

  --mode flood   garbage tiles to the edge and garbage outputs to the aggregator, ``--rate`` per second for
                 ``--seconds``: unknown plans, shapes that do not fit, random payloads, random sessions
  --mode bomb    one tile and one output whose 1.1 MB lz4 payload expands to 256 MiB
  --mode replay  records the genuine outputs for ``--seconds``, then publishes each again as it was (replays and
                 duplicates) and under another session with new frame numbers (another robot's, or a forgery)

Prints one JSON line with what it published.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
import zlib

import rclpy
from rclpy.node import Node

from intradp_ros.msg import TensorTile
from intradp_ros.nodes.common import topic_qos
from intradp_ros.topology import TOPICS


class Injector(Node):
    def __init__(self, listen: bool):
        super().__init__("intradp_faults_injector")
        out_qos = topic_qos("outputs")
        self.tiles = self.create_publisher(TensorTile, TOPICS["to_edge"].name, topic_qos("to_edge"))
        self.outputs = self.create_publisher(TensorTile, TOPICS["outputs"].name, out_qos)
        self.seen: list[TensorTile] = []
        if listen:                      # replay only: else the robot and the edge would send it their outputs too
            self.create_subscription(TensorTile, TOPICS["outputs"].name, self.seen.append, out_qos)

    def wait_matched(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while (self.tiles.get_subscription_count() == 0 or self.outputs.get_subscription_count() == 0) \
                and time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=0.1)

    def garbage(self, rng: random.Random, model: str) -> TensorTile:
        m = TensorTile(session=os.urandom(8).hex(), frame_seq=rng.randrange(1 << 40), model=model,
                       tensor=rng.choice(["input", "stem_0_0", "yolo_13", "nonsense"]),
                       stage=rng.randrange(4), tile_index=rng.randrange(8), tile_count=8, sender="robot",
                       row_start=rng.randrange(64), row_stop=rng.randrange(64, 512), shape=[1, 3, 416, 416],
                       payload_shape=[1, 3, rng.randrange(1, 64), 416], dtype="float32",
                       encoding=rng.choice(["raw", "lz4", "zstd", "bogus"]))
        if rng.random() < 0.5:
            m.plan_spec = f"{model}@416x416|0|18|0|1x8|raw"
            m.plan_id = zlib.crc32(m.plan_spec.encode())
        else:
            m.plan_spec, m.plan_id = "garbage", rng.randrange(1 << 32)
        m.data = os.urandom(rng.randrange(64, 2048))
        return m

    def flood(self, rate: float, seconds: float, model: str) -> int:
        rng, n, t0 = random.Random(0), 0, time.monotonic()
        while (now := time.monotonic()) - t0 < seconds:
            due = int((now - t0) * rate)
            while n < due:
                (self.tiles if n % 2 == 0 else self.outputs).publish(self.garbage(rng, model))
                n += 1
            time.sleep(0.001)
        return n

    def bomb(self, model: str) -> int:
        import lz4.frame
        data = lz4.frame.compress(bytes(256 << 20), compression_level=0)
        for pub, payload_shape in ((self.tiles, [1, 3, 52, 416]), (self.outputs, [1, 255, 13, 13])):
            m = self.garbage(random.Random(1), model)
            m.encoding, m.dtype, m.data, m.payload_shape = "lz4", "float32", data, payload_shape
            m.row_start, m.row_stop = 0, 52
            pub.publish(m)
        return 2

    def replay(self, seconds: float) -> int:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=0.05)
        got, n = list(self.seen), 0
        for m in got:
            self.outputs.publish(m)                               # as it was
            n += 1
        for m in got:
            m.session, m.frame_seq = "f0f0f0f0f0f0f0f0", m.frame_seq + 100_000   # another session's "new" frames
            self.outputs.publish(m)
            n += 1
        return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("flood", "bomb", "replay"), required=True)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--model", default="yolov3_tiny")
    a = ap.parse_args(argv)
    rclpy.init()
    node = Injector(listen=a.mode == "replay")
    try:
        node.wait_matched()
        t0 = time.time()
        n = {"flood": lambda: node.flood(a.rate, a.seconds, a.model), "bomb": lambda: node.bomb(a.model),
             "replay": lambda: node.replay(a.seconds)}[a.mode]()
        print(json.dumps({"mode": a.mode, "published": n, "start": t0, "end": time.time()}), flush=True)
        end = time.monotonic() + 2.0          # let reliable delivery finish before the participant goes
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
