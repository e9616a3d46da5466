"""The three runtimes behind the nodes, wired in one process with every packet encoded and decoded:
collaborative detections equal single-process inference for every kind of plan (real YOLOv3-tiny weights)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from intradp_ros.engine.plan import Plan, compile_plan
from intradp_ros.engine.planner import Decision, Prediction, family, split_points
from intradp_ros.engine.rows import Segment
from intradp_ros.runtime import AggregatorRuntime, EdgeRuntime, ModelConfig, RobotConfig, RobotRuntime
from intradp_ros.vision.samples import load_sample


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("profiles"))
    try:
        robot = RobotRuntime(RobotConfig(profile_cache_dir=cache), log=lambda s: None)
    except FileNotFoundError as e:
        pytest.skip(f"detector weights not installed: {e}")
    edge = EdgeRuntime(ModelConfig(), cache, log=lambda s: None)
    return robot, edge, AggregatorRuntime(ModelConfig())


def _forget_calibration(robot):
    for d in (robot.plan_ratios, robot.compute_ratios, robot.tile_ratios, robot.edge_ratios):
        d.clear()


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


def _run(robot, edge, agg, plan, rgb, seq):
    robot.plan = plan
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
    robot = RobotRuntime(cfg, log=lambda s: None)
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


def test_replanning_on_the_same_link_keeps_what_the_guard_measured(sides):
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.bandwidth_mbps = "auto", "parameter", 50.0
    robot.planned_mbps = None
    robot.set_edge_profile(edge.profile)                      # plans for 50 Mbit/s
    chosen = robot.plan.spec()
    others = [s for s in robot.predicted if s != chosen]
    for _ in range(robot.guard.min_samples):                 # the chosen plan measures far worse than all others
        robot.observe_latency(chosen, 100 * max(robot.predicted.values()) + 1000.0)
    assert robot.plan.spec() in others
    for _ in range(robot.guard.min_samples):
        robot.observe_latency(robot.plan.spec(), 1.0)
    switched = robot.plan.spec()
    robot.replan()                                            # e.g. a send-cost update: same link, same candidates
    # the planner now compares both by what they measured: the measured-fast plan is its choice too
    assert robot.decision.chosen.plan.spec() == switched and robot.plan.spec() == switched
    assert robot.measured_used[chosen] > robot.measured_used[switched]
    robot.cfg.bandwidth_mbps = 5.0
    robot.replan()                       # another link: the planner's choice (or a trial near it), measured afresh
    assert robot.plan.spec() == (robot.exploring or robot.decision.chosen.plan.spec())
    assert robot.guard.measured(switched) is None
    assert robot.last_replan == "search"


def test_a_re_plan_searches_only_when_the_link_or_a_setting_changed(sides):
    """Calibration updates re-price the last search's shortlist (a search costs a quarter-core robot seconds);
    a new link, a planner setting or a large calibration move searches again."""
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.bandwidth_mbps = "auto", "parameter", 40.0
    robot.set_edge_profile(edge.profile)
    assert robot.last_replan == "search"
    robot.edge_ratios.extend([1.25] * 3)                      # the edge measures 25 % slower than its profile
    robot.replan()
    assert robot.last_replan == "re-price" and robot.decision.considered < 200
    robot.edge_ratios.extend([2.5] * 24)                      # 2.5x as slow: the best plans may have moved
    robot.replan()
    assert robot.last_replan == "search"
    robot.replan()
    assert robot.last_replan == "re-price"
    robot.cfg.min_split_gain = 0.2
    robot.replan()
    assert robot.last_replan == "search"
    robot.cfg.bandwidth_mbps = 80.0
    robot.replan()
    assert robot.last_replan == "search"
    robot.edge_ratios.clear()
    robot.cfg.min_split_gain = RobotConfig.min_split_gain


def test_back_to_auto_after_a_fixed_plan_keeps_what_the_guard_measured_on_that_link(sides):
    """plan auto -> a fixed plan -> auto on the same link: auto resumes with its measurements (a re-price, no new
    search, no re-exploration); frames of the fixed plan are not the guard's (they are the planner's: see
    test_a_plan_is_chosen_by_what_it_measured_not_by_its_prediction)."""
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.bandwidth_mbps = "auto", "parameter", 30.0
    robot.cfg.explore_margin = 0.0        # the planner's choice in force, not a trial
    robot.set_edge_profile(edge.profile)
    chosen = robot.plan.spec()
    for _ in range(robot.guard.min_samples):
        robot.observe_latency(chosen, 123.0)
    offload = Plan.offload(robot.m.graph, "yolov3_tiny")
    robot.cfg.plan = offload.spec()
    robot.set_plan(offload)
    robot.replan()
    assert robot.plan == offload and robot.last_replan == "baselines"
    for _ in range(robot.guard.min_samples):
        robot.observe_latency(offload.spec(), 5.0)           # the fixed plan's frames: not auto's
    robot.cfg.plan = "auto"
    robot.replan()
    assert robot.last_replan == "re-price"
    assert robot.guard.measured(chosen) == pytest.approx(123.0) and robot.guard.measured(offload.spec()) is None
    robot.cfg.explore_margin = RobotConfig.explore_margin


def test_guard_skips_frames_computed_while_planning_or_right_after_a_switch(sides):
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.bandwidth_mbps = "auto", "parameter", 50.0
    robot.set_edge_profile(edge.profile)
    spec = robot.plan.spec()
    rgb = np.zeros((48, 64, 3), np.uint8)
    robot._last_frame_plan = "another plan"
    for seq in (101, 102):
        robot.run_frame(seq, rgb, lambda p: None)
    robot._planning += 1                                  # as while a re-plan runs in its thread
    robot.run_frame(103, rgb, lambda p: None)
    robot._planning -= 1
    for seq in (101, 102, 103):
        robot.observe_latency(spec, 10.0 * seq, seq)
    assert list(robot.guard._lat[spec]) == [1020.0]          # only frame 102 judged the plan


def test_frame_timing_carries_each_sides_total_compute(sides):
    """FrameTiming's compute figures calibrate the planner: they must be frame totals, not one tile's time."""
    import time
    robot, edge, agg = sides
    g = robot.m.graph
    n = len(g.ops)
    plan = Plan("yolov3_tiny", 416, 416, 0, n, 2, 2, 8)         # both sides tile the whole network, no suffix
    rgb = cv2.cvtColor(load_sample("dog.jpg"), cv2.COLOR_BGR2RGB)
    robot.plan = plan
    to_edge, to_agg = [], []
    robot_busy = robot.run_frame(900, rgb, lambda p: (to_edge if p.dest == "edge" else to_agg).append(p))
    edge_wall = 0.0
    for p in to_edge:
        t0 = time.perf_counter()
        to_agg += edge.on_packet(p)
        edge_wall += (time.perf_counter() - t0) * 1e3
    fo = [fo for p in to_agg if (fo := agg.add(p)) is not None][0]
    assert 0.5 * edge_wall <= fo.edge_ms <= edge_wall              # 8 edge tiles: one tile would be ~1/8
    assert 0.5 * (robot.worker.last_whole_ms + robot.worker.last_tiles_ms) <= fo.robot_ms <= robot_busy


def test_guard_never_overrides_a_fixed_plan(sides):
    """With plan set to a fixed plan, frames that measure badly must not make the guard switch to another."""
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.bandwidth_mbps = "auto", "parameter", 50.0
    robot.set_edge_profile(edge.profile)                  # the guard now holds auto's candidates
    fixed = Plan.cut(robot.m.graph, "yolov3_tiny", 16, "lz4")
    robot.cfg.plan = fixed.spec()
    robot.set_plan(fixed)                                 # as robot_node does at once, before it re-plans
    worst = 100 * max(robot.predicted.values()) + 1000.0
    for _ in range(2 * robot.guard.min_samples):
        assert robot.observe_latency(fixed.spec(), worst) is None
    assert robot.plan == fixed
    robot.replan()
    for _ in range(2 * robot.guard.min_samples):
        assert robot.observe_latency(fixed.spec(), worst) is None
    assert robot.plan == fixed
    robot.cfg.plan = "auto"                               # back to auto on the same link: the planner's choice,
    robot.replan()                                        # not the plan the user had fixed (or a trial near it)
    assert robot.plan.spec() == (robot.exploring or robot.decision.chosen.plan.spec()) != fixed.spec()


def test_each_candidate_is_priced_with_its_own_measured_calibration(sides):
    """Plans that take turns must not price each other: a plan's own frames calibrate its prediction."""
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.bandwidth_mbps = "auto", "parameter", 60.0
    robot.set_edge_profile(edge.profile)
    g = robot.m.graph
    local, offload = Plan.local(g, "yolov3_tiny").spec(), Plan.offload(g, "yolov3_tiny").spec()
    _forget_calibration(robot)                         # frames of earlier tests
    robot.replan()
    before = dict(robot.predicted)
    for _ in range(3):
        robot._note_ratio("whole", local, 1.5)         # all-local's frames ran 1.5x its profile
        robot._note_ratio("edge", offload, 2.0)        # all-offload's edge share ran 2x the edge profile
    robot.replan()
    assert robot.predicted[local] == pytest.approx(1.5 * before[local], rel=0.01)
    assert 1.3 * before[offload] < robot.predicted[offload] < 2.0 * before[offload]
    assert robot.decision.baselines["local"].latency_ms == robot.predicted[local]
    robot.plan_ratios.clear()


def test_the_plan_in_force_is_re_priced_when_its_own_compute_moves(sides):
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.bandwidth_mbps = "auto", "parameter", 70.0
    robot.set_edge_profile(edge.profile)
    local = Plan.local(robot.m.graph, "yolov3_tiny")
    robot.cfg.plan = local.spec()
    robot.set_plan(local)
    _forget_calibration(robot)
    robot.replan()
    assert not robot.own_drifted()
    for _ in range(3):
        robot._note_ratio("whole", local.spec(), 1.1)
    assert not robot.own_drifted()                      # 10 %: within tolerance
    for _ in range(4):
        robot._note_ratio("whole", local.spec(), 1.3)
    robot._frames_since_priced = robot.REPRICE_MIN_FRAMES - 1
    assert not robot.own_drifted()                      # a drift re-price waits for a window of fresh frames
    robot._frames_since_priced += 1
    assert robot.own_drifted()
    robot.replan()
    assert not robot.own_drifted()
    robot.plan_ratios.clear()
    robot.cfg.plan = "auto"


def test_the_process_send_cost_from_two_bursts_is_a_floor_of_the_planner_s_message_price(sides):
    robot, _, _ = sides
    robot.sends.clear()
    robot.process_send_cpu = None
    base_msg, base_mb = robot.send_cost()
    # 12 x 4 KiB cost 14.4 ms of process CPU, 12 x 64 KiB 26.2 ms: 1.15 ms per message + 16 ms per MB
    per_msg, per_mb = robot.set_process_send_cpu((12, 4096, 14.4), (12, 65536, 26.2))
    assert per_mb == pytest.approx((26.2 - 14.4) / 12 / ((65536 - 4096) / 1e6), rel=1e-6)
    assert per_msg == pytest.approx(14.4 / 12 - per_mb * 4096 / 1e6, rel=1e-6)
    msg, mb = robot.send_cost()
    share = min(1.0, max(robot.profile.cpu_share, 0.05))
    assert msg == pytest.approx(max(base_msg * share, per_msg) / share) and mb == pytest.approx(per_mb / share)
    robot.set_process_send_cpu((12, 4096, 1.0), (12, 65536, 0.5))     # noise: never a negative slope
    assert robot.process_send_cpu[1] == 0.0 and robot.send_cost()[0] == pytest.approx(base_msg)
    robot.process_send_cpu = None


def test_what_split_plans_measure_beyond_their_prediction_is_learned_and_priced(sides):
    """Split-plan frames that measure above their prediction raise every split plan's price (the planner test
    shows the choice that follows); baseline frames do not count."""
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.bandwidth_mbps = "auto", "parameter", 50.0
    robot.split_residuals.clear()
    robot.set_edge_profile(edge.profile)
    robot._searched = None
    robot.replan()
    g = robot.m.graph
    split = robot.decision.best_split
    spec = split.plan.spec()
    robot.predicted[spec] = split.latency_ms
    for seq in range(5):                        # split frames measure 30 ms above their prediction
        robot.observe_latency(spec, robot.predicted_ms(spec) + 30.0, 10_000 + seq)
    robot.observe_latency(Plan.offload(g, "yolov3_tiny").spec(), 1e6)   # a baseline frame: not a split residual
    assert robot.split_extra_ms() == pytest.approx(30.0)
    robot._frames_since_priced = robot.REPRICE_MIN_FRAMES
    assert robot.own_drifted()                  # priced with 0 ms: re-price
    robot._searched = None                      # the same search, now with the learned extra
    robot.replan()
    assert robot.decision.best_split.plan == split.plan
    assert robot.decision.best_split.latency_ms == pytest.approx(split.latency_ms + 30.0, rel=0.05)
    # the prediction a split plan is measured against excludes the extra, so it is not counted twice
    robot.predicted[spec] = split.latency_ms + robot.split_extra_used
    for seq in range(10):
        robot.observe_latency(spec, robot.predicted_ms(spec), 20_000 + seq)
    assert robot.split_extra_ms() == pytest.approx(30.0)
    robot.cfg.bandwidth_mbps = 90.0             # another link: learned afresh
    robot.replan()
    assert robot.split_extra_ms() == 0.0


def test_a_plan_is_chosen_by_what_it_measured_not_by_its_prediction(sides):
    """A split measured faster than the best baseline's prediction is chosen, and put in force, even when the
    learned split extra prices every split (itself included, by prediction) far above the baseline; once it
    measures slower, the baseline is. Measurements are per link."""
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.bandwidth_mbps = "auto", "parameter", 60.0
    robot.cfg.explore_margin = 0.0
    robot.set_edge_profile(edge.profile)
    robot.latencies.clear()
    robot._searched = None
    robot.replan()
    split = robot.decision.best_split
    spec, off = split.plan.spec(), robot.frame_ms()
    base = min(robot.decision.baselines.values(), key=lambda p: p.latency_ms)
    robot.predicted[spec] = split.latency_ms
    fast = 0.8 * base.latency_ms
    for seq in range(5):
        robot.observe_latency(spec, fast + off, 30_000 + seq)
    robot.split_residuals.extend([500.0] * 24)     # other split frames measured 500 ms over their predictions
    assert robot.measured_ms()[spec] == pytest.approx(fast) and robot.split_extra_ms() == 500.0
    robot.plan = split.plan
    robot.measured_used = {}
    assert robot.own_drifted()                 # the plan in force has measured what its prediction did not say
    robot.replan()
    assert robot.last_replan == "re-price"
    assert robot.decision.chosen.plan == split.plan and robot.plan == split.plan
    # its family (segment, robot rows or not) is priced by what it measured, not by the class-wide split extra
    assert robot.family_extra_used[family(split.plan)] < 0.0 < robot.split_extra_used
    assert not robot.own_drifted()
    for seq in range(10):                      # now it measures slower than the baseline's prediction: replaced
        robot.observe_latency(spec, 1.5 * base.latency_ms + off, 32_000 + seq)
    assert robot.plan != split.plan or robot.own_drifted()     # the guard swapped it, or a re-price will
    robot.replan()
    assert not robot.decision.chosen.plan.is_split and robot.plan == robot.decision.chosen.plan
    robot.cfg.bandwidth_mbps = 95.0            # another link: measured afresh
    robot.replan()
    assert robot.measured_ms() == {} and robot.split_extra_ms() == 0.0 and robot.last_replan == "search"
    robot.cfg.explore_margin = RobotConfig.explore_margin


def test_a_split_priced_near_the_choice_is_tried_once_per_link(sides):
    """A split priced within explore_margin of the choice runs until measured (never one where the robot computes
    every row: that is a cut in tiles), then its measurement decides; once per link; never with margin 0."""
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.explore_margin = "auto", "parameter", 0.1
    robot.set_edge_profile(edge.profile.scaled(0.25))      # an edge 4x the robot's speed, as on the bench
    g = robot.m.graph

    def replan_new_link(seq0: int):
        robot.replan()
        spec = robot.plan.spec()
        if robot.exploring is None and spec not in robot.measured_ms():
            for seq in range(5):              # trials wait until the choice was measured: as predicted
                robot.observe_latency(spec, robot.predicted_ms(spec), seq0 + seq)
            robot.replan()

    for mbps in (10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0):
        robot.cfg.bandwidth_mbps = mbps
        replan_new_link(39_000)
        if robot.exploring is not None:
            break
    else:
        pytest.skip("no link here with a split priced near the choice")
    d, off = robot.decision, robot.frame_ms()
    trial = Plan.parse(robot.exploring)
    assert robot.plan == trial != d.chosen.plan and trial.spec() in robot.predicted
    assert not robot.settled()                              # a trial runs: not what the robot will keep running
    assert compile_plan(g, trial).edge_work                 # the edge computes some of its rows
    robot.replan()                                          # before it is measured, a re-plan carries it on
    assert robot.plan == trial
    for seq in range(5):                                    # it measures far slower than the choice
        robot.observe_latency(trial.spec(), 3 * d.chosen.latency_ms + off, 40_000 + seq)
    robot.replan()
    assert robot.plan != trial and robot.exploring != trial.spec()
    assert trial.spec() in robot.explored                   # not tried again on this link
    robot.cfg.bandwidth_mbps, robot.cfg.explore_margin = mbps * 1.3, 0.0
    robot.replan()                                          # another link, margin 0: no trial
    assert robot.exploring is None and robot.plan == robot.decision.chosen.plan
    robot.cfg.bandwidth_mbps, robot.cfg.explore_margin = mbps, 0.1
    replan_new_link(39_100)                                 # back on the first link's rate: a new link, tried
    if robot.exploring is None:
        pytest.skip("no trial on the new link")
    trial = Plan.parse(robot.exploring)
    for seq in range(5):                                    # this time it measures fast: chosen
        robot.observe_latency(trial.spec(), 0.5 * robot.decision.chosen.latency_ms + off, 41_000 + seq)
    robot.replan()                  # chosen: it, or a variant its family's measured excess prices lower still
    chosen = robot.decision.chosen.plan
    assert family(chosen) == family(trial) and robot.plan.spec() in (chosen.spec(), robot.exploring)
    robot.cfg.explore_margin = RobotConfig.explore_margin


def test_a_trial_that_clearly_loses_is_measured_in_fewer_frames(sides):
    """A trial whose every frame is slower than the median of a plan measured in full counts as measured after
    TRIAL_MIN_FRAMES frames (and the plan in force asks for a re-price); one with a frame that fast, or a plan that
    is not a trial, needs MEASURED_MIN_FRAMES."""
    robot = sides[0]
    g = robot.m.graph
    robot.latencies.clear()
    robot.explored.clear()
    off = robot.frame_ms()
    full, trial, other, close = (Plan.offload(g, "yolov3_tiny").spec(), *(
        Plan("yolov3_tiny", 416, 416, 0, k2, 0, 1, 4).spec() for k2 in (10, 18, 27)))
    robot.explored.update({trial, close})
    for seq, (spec, ms) in enumerate([(full, 100.0)] * 5 + [(trial, 120.0), (trial, 125.0), (trial, 130.0),
                                      (other, 120.0), (other, 125.0), (other, 130.0),
                                      (close, 99.0), (close, 125.0), (close, 130.0)]):
        robot.observe_latency(spec, ms + off, 60_000 + seq)
    m = robot.measured_ms()
    assert m[full] == pytest.approx(100.0) and m[trial] == pytest.approx(125.0)
    assert other not in m and close not in m       # not a trial; a trial with a frame as fast as the best
    robot.plan = Plan.parse(trial)
    robot.measured_used = {}
    assert "measures 125.0 ms" in robot.own_drifted()
    for seq in range(2):
        robot.observe_latency(close, 130.0 + off, 61_000 + seq)
    assert robot.measured_ms()[close] == pytest.approx(130.0)
    robot.latencies.clear()
    robot.explored.clear()


def test_the_plan_is_settled_once_its_own_latency_priced_it(sides):
    """PlanStatus.settled: plan auto's choice on a new link is not settled until it was measured and re-priced
    with what it measured (no trial running: margin 0 here); a fixed plan is settled at once."""
    robot, edge, _ = sides
    robot.cfg.plan, robot.cfg.bandwidth_source, robot.cfg.explore_margin = "auto", "parameter", 0.0
    robot.set_edge_profile(edge.profile)
    robot.cfg.bandwidth_mbps = 33.0
    robot.replan()
    spec = robot.plan.spec()
    assert not robot.settled() and robot.measured_ms() == {}
    for seq in range(5):                       # it measures what it predicted
        robot.observe_latency(spec, robot.predicted_ms(spec), 62_000 + seq)
    assert not robot.settled() and robot.own_drifted()
    robot.replan()
    assert robot.plan.spec() == spec and robot.settled()
    robot.cfg.bandwidth_mbps = 45.0            # a new link: measured afresh
    robot.replan()
    assert not robot.settled()
    robot.cfg.plan = Plan.offload(robot.m.graph, "yolov3_tiny").spec()
    robot.replan()
    assert robot.settled()
    robot.cfg.plan, robot.cfg.explore_margin = "auto", RobotConfig.explore_margin


def test_exploration_tries_each_segment_once_and_a_few_per_link(sides):
    """Trials: the best plan of each top segment priced within the margin, one at a time (a trial carries on until
    measured), never a variant of a segment already measured or tried, at most EXPLORE_SEGMENTS per link."""
    robot = sides[0]
    robot.explored.clear()
    robot.exploring, robot.cfg.explore_margin = None, 0.1
    g = robot.m.graph
    seg = lambda k2, tiles=8, enc="raw": Plan("yolov3_tiny", 416, 416, 0, k2, 0, 1, tiles, enc)  # noqa: E731
    shortlist = [seg(10), seg(10, 4), seg(18), seg(1, 8, "lz4"), seg(1), seg(27), seg(35)]
    offload = Plan.offload(g, "yolov3_tiny")
    pred = lambda plan, ms, edge=50.0: Prediction(plan, plan.spec(), ms, 0.0, edge, 0.0, 0.0)  # noqa: E731
    decision = Decision(pred(offload, 100.0), {}, 0, pred(shortlist[0], 105.0), shortlist)
    prices = {seg(18).spec(): 120.0}                   # beyond the margin: never tried
    edge_ms: dict[str, float] = {}
    price = lambda plan: pred(plan, prices.get(plan.spec(), 105.0), edge_ms.get(plan.spec(), 50.0))  # noqa: E731

    def trials(measured: dict[str, float]) -> list[Plan]:
        tried = []
        while (trial := robot._explore(decision, measured, price)) is not None:
            spec = trial.plan.spec()
            robot.exploring = spec
            assert robot._explore(decision, measured, price).plan.spec() == spec    # carries on until measured
            measured[spec] = 130.0
            tried.append(trial.plan)
            assert len(tried) <= robot.EXPLORE_SEGMENTS
        robot.explored.clear()
        robot.exploring = None
        return tried

    measured: dict[str, float] = {}
    tried = trials(measured)
    assert [(p.k1, p.k2) for p in tried] == [(0, 10), (0, 1)]   # top 3 segments: (0,18) priced out of the margin
    assert tried[1] == seg(1, 8, "lz4")                        # its best plan, first in the shortlist
    assert robot._explore(decision, measured, price) is None       # measured segments are known ...
    # a segment whose edge share is worth less than the margin of the choice is passed over, and not counted
    edge_ms[seg(10).spec()] = 0.05 * 100.0
    assert [(p.k1, p.k2) for p in trials({})] == [(0, 1), (0, 27)]
    robot.cfg.explore_margin = 0.0
    assert robot._explore(decision, {}, price) is None             # ... and margin 0 never explores
    robot.cfg.explore_margin = RobotConfig.explore_margin


def test_building_each_packet_is_measured_and_priced_per_message(sides):
    """The frame thread's time to build a packet for the edge, beyond the profiled encoding, is a per-message
    cost: 8 input chunks pay it 8 times."""
    robot, edge, _ = sides
    g = robot.m.graph
    robot.packing.clear()
    rgb = (np.random.default_rng(1).random((240, 320, 3)) * 255).astype(np.uint8)
    stream = Plan("yolov3_tiny", 416, 416, 0, 10, 0, 1, 8)
    for seq, plan in enumerate([Plan.offload(g, "yolov3_tiny"), stream], start=500):
        robot.plan = plan
        robot.run_frame(seq, rgb, lambda p: None)
    packed = robot.worker.last_packed
    assert len(packed) == 8 and len(robot.packing) == 9 and all(enc == "u8" for _, enc, _ in packed)
    assert sum(mb for mb, _, _ in packed) >= 3 * 416 * 416 * 4 / 1e6       # the chunks cover every input row
    assert robot.pack_ms() == pytest.approx(float(np.median(robot.packing)) if np.median(robot.packing) > 0 else 0.0)
    assert robot.link().msg_ms == pytest.approx(robot.send_cost()[0] + robot.pack_ms())
    robot.packing.clear()
