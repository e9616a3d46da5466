"""The three runtimes behind the nodes, wired in one process with every packet encoded and decoded:
collaborative detections equal single-process inference for every kind of plan (real YOLOv3-tiny weights).
The robot's plan is fixed per test (no edge profile, so no planner): the controller's tests are elsewhere."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from intradp_ros.engine.plan import Plan
from intradp_ros.engine.rows import Segment
from intradp_ros.engine.search import split_points
from intradp_ros.robot.runtime import RobotRuntime
from intradp_ros.runtime import AggregatorRuntime, EdgeRuntime, ModelConfig, RobotConfig
from intradp_ros.vision.samples import load_sample


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("profiles"))
    try:
        robot = RobotRuntime(RobotConfig(profile_cache_dir=cache), log=lambda s: None, start_planner=False)
    except FileNotFoundError as e:
        pytest.skip(f"detector weights not installed: {e}")
    edge = EdgeRuntime(ModelConfig(), cache, log=lambda s: None)
    yield robot, edge, AggregatorRuntime(ModelConfig())
    robot.close()


def _use(robot, plan):
    """Run ``plan`` from the next frame (as the plan parameter does, once priced: here there is no edge profile)."""
    robot.controller.configure(plan=plan.spec())
    assert robot.controller.replan_now().plan == plan


def _plans(graph):
    n = len(graph.ops)
    starts, ends = split_points(graph)
    whole = Segment(graph, 0, n).grid
    mid = starts[len(starts) // 2]
    return [Plan.local(graph, "yolov3_tiny"), Plan.offload(graph, "yolov3_tiny"),
            Plan.cut(graph, "yolov3_tiny", mid, "lz4"),
            Plan("yolov3_tiny", 416, 416, 0, n, whole // 2, 4, 3),                 # whole network split
            Plan("yolov3_tiny", 416, 416, 0, n, 2, 2, 8, "zstd"),
            Plan("yolov3_tiny", 416, 416, starts[1], ends[starts[1]][0], 1, 3, 2)]  # prefix, split, suffix


_SEQ = itertools.count(1)     # frame numbers are unique across tests: the aggregator publishes each frame once


def _run(robot, edge, agg, plan, rgb, _seq=None):
    seq = next(_SEQ)
    _use(robot, plan)
    to_edge, to_agg = [], []
    robot.run_frame(seq, rgb, lambda p: (to_edge if p.dest == "edge" else to_agg).append(p))
    for p in to_edge:
        to_agg += edge.on_packet(p)
    done = [fo for p in to_agg if (fo := agg.add(p)) is not None]
    assert len(done) == 1, f"{plan.spec()}: frame completed {len(done)} times"
    return agg.finalize(done[0], rgb.shape[1], rgb.shape[0])


@pytest.mark.parametrize("image", ["dog.jpg", "person.jpg"])
def test_every_plan_detects_what_one_process_detects(sides, image):
    robot, edge, agg = sides
    bgr = load_sample(image)
    if bgr is None:
        pytest.skip(f"{image} not found: ./intradp setup puts darknet's samples in .cache/samples")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    ref = robot.m.reference(rgb)
    assert len(ref) >= 3
    for seq, plan in enumerate(_plans(robot.m.graph)):
        got = _run(robot, edge, agg, plan, rgb, seq)
        assert [d.class_name for d in got] == [d.class_name for d in ref], plan.spec()
        for a, b in zip(got, ref):
            assert abs(a.score - b.score) <= 1e-4, plan.spec()
            for f in ("center_x", "center_y", "size_x", "size_y"):
                assert abs(getattr(a, f) - getattr(b, f)) <= 1e-2, (plan.spec(), f)


def test_classifier_top_k_through_a_split_plan(tmp_path):
    """Any model of the zoo is served the same way; a classifier's result is its top-k."""
    cfg = RobotConfig(model="resnet18", input_size=96, profile_cache_dir=str(tmp_path))
    robot = RobotRuntime(cfg, log=lambda s: None, start_planner=False)
    edge = EdgeRuntime(ModelConfig(model="resnet18", input_size=96), str(tmp_path), log=lambda s: None)
    agg = AggregatorRuntime(ModelConfig(model="resnet18", input_size=96))
    g = robot.m.graph
    starts, ends = split_points(g)
    rgb = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    ref = robot.m.reference(rgb)
    assert len(ref) == 5 and all(0 <= c.class_id < 1000 for c in ref)
    for seq, plan in enumerate([Plan("resnet18", 96, 96, starts[1], ends[starts[1]][-1], 1, 2, 2),
                                Plan.cut(g, "resnet18", len(g.ops) - 1)]):
        got = _run(robot, edge, agg, plan, rgb, seq)
        assert [c.class_id for c in got] == [c.class_id for c in ref]
        assert max(abs(a.score - b.score) for a, b in zip(got, ref)) <= 1e-5


def test_frame_timing_carries_each_sides_total_compute(sides):
    """FrameTiming's compute figures calibrate the planner: they must be frame totals, not one tile's time."""
    import time
    robot, edge, agg = sides
    g = robot.m.graph
    n = len(g.ops)
    plan = Plan("yolov3_tiny", 416, 416, 0, n, 2, 2, 8)         # both sides tile the whole network, no suffix
    rgb = cv2.cvtColor(load_sample("dog.jpg"), cv2.COLOR_BGR2RGB)
    _use(robot, plan)
    to_edge, to_agg = [], []
    robot_busy = robot.run_frame(900, rgb, lambda p: (to_edge if p.dest == "edge" else to_agg).append(p)).busy_ms
    edge_wall = 0.0
    for p in to_edge:
        t0 = time.perf_counter()
        to_agg += edge.on_packet(p)
        edge_wall += (time.perf_counter() - t0) * 1e3
    fo = [fo for p in to_agg if (fo := agg.add(p)) is not None][0]
    assert 0.5 * edge_wall <= fo.edge_ms <= edge_wall              # 8 edge tiles: one tile would be ~1/8
    assert 0.5 * (robot.worker.last_whole_ms + robot.worker.last_tiles_ms) <= fo.robot_ms <= robot_busy


def test_building_each_packet_is_measured_and_priced_per_message(sides):
    """The frame thread's time to build a packet for the edge, beyond the profiled encoding, is a per-message
    cost: 8 input chunks pay it 8 times."""
    robot = sides[0]
    g = robot.m.graph
    send = robot.controller.measurements.send
    before = len(send.packing)
    rgb = (np.random.default_rng(1).random((240, 320, 3)) * 255).astype(np.uint8)
    stream = Plan("yolov3_tiny", 416, 416, 0, 10, 0, 1, 8)
    for seq, plan in enumerate([Plan.offload(g, "yolov3_tiny"), stream], start=500):
        _use(robot, plan)
        robot.run_frame(seq, rgb, lambda p: None)
    packed = robot.worker.last_packed
    assert len(packed) == 8 and len(send.packing) == before + 9 and all(enc == "u8" for _, enc, _ in packed)
    assert sum(mb for mb, _, _ in packed) >= 3 * 416 * 416 * 4 / 1e6       # the chunks cover every input row
    assert robot.controller.measurements.link(50.0, 1.0).msg_ms == pytest.approx(
        send.per_message_and_mb()[0] + send.pack_ms())
