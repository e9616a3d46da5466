"""Plans and the planner: text form, validation, cost model sanity, never worse than a baseline."""
import dataclasses

import pytest
import torch

from intradp_ros.engine.cost import LinkModel, predict
from intradp_ros.engine.graph import capture
from intradp_ros.engine.plan import CompiledPlan, Plan, PlanError, compile_plan
from intradp_ros.engine.profile import DeviceProfile
from intradp_ros.engine.profiler import load_or_profile, profile_graph
from intradp_ros.engine.rows import Segment
from intradp_ros.engine.search import Evidence, Problem, SearchOptions, choose, family, split_points
from intradp_ros.models import build_model


@pytest.fixture(scope="module")
def graph():
    return capture(build_model("resnet18"), torch.zeros(1, 3, 128, 128))


def _synthetic(graph, ms_per_melem: float) -> DeviceProfile:
    """A profile where each op costs in proportion to its output size: deterministic, no timing noise."""
    op_ms = [ms_per_melem * op.nbytes / 4e6 + 0.01 for op in graph.ops]
    n = len(graph.ops)
    return DeviceProfile(graph.key, "cpu", 1, op_ms, 0.02, {e: 1.0 for e in ("raw", "fp16", "u8", "lz4", "zstd")},
                         {e: 0.5 for e in ("raw", "fp16", "u8", "lz4", "zstd")},
                         {"raw": [1.0] * n, "fp16": [0.5] * n, "lz4": [0.6] * n, "zstd": [0.5] * n},
                         {o: 4000.0 for o in graph.outputs})


RAW_LZ4 = SearchOptions(encodings=("raw", "lz4"))


def _resnet(graph, robot, edge, bw) -> Problem:
    return Problem(graph, "resnet18", robot, edge, LinkModel(bw))


def test_plan_text_round_trip_and_errors(graph):
    p = Plan("resnet18", 128, 128, 3, 40, 5, 4, 2, "lz4")
    assert Plan.parse(p.spec()) == p and p.plan_id == Plan.parse(p.spec()).plan_id
    for bad in ["", "resnet18@128x128|3|40", "resnet18@128x128|a|40|5|4x2|lz4", "x@1x1|0|0|0|1x1|raw; rm -rf"]:
        with pytest.raises(PlanError):
            Plan.parse(bad)


@pytest.mark.parametrize("plan,match", [
    (Plan("resnet18", 128, 128, 40, 3), "does not hold"),
    (Plan("resnet18", 224, 224, 0, 0), "input 224x224"),
    (Plan("resnet18", 128, 128, 0, 0, encoding="u8"), "not usable"),
    (Plan("resnet18", 128, 128, 0, 69), "barrier"),
    (Plan("resnet18", 128, 128, 0, 10, robot_rows=999), "outside the segment grid"),
    (Plan("resnet18", 128, 128, 0, 10, robot_tiles=0), "tiles per side"),
])
def test_invalid_plans_are_refused(graph, plan, match):
    with pytest.raises(PlanError, match=match):
        CompiledPlan(graph, plan)


def test_split_points_are_valid_segments(graph):
    starts, ends = split_points(graph)
    assert starts and starts[0] == 0
    for start in starts:
        for end in ends[start]:
            CompiledPlan(graph, Plan("resnet18", 128, 128, start, end, 1, 2, 2))


def test_prediction_follows_bandwidth(graph):
    robot, edge = _synthetic(graph, 40.0), _synthetic(graph, 4.0)
    off = Plan.offload(graph, "resnet18")
    slow, fast = (predict(graph, off, robot, edge, LinkModel(bw)).latency_ms for bw in (5, 500))
    assert slow > fast
    local = Plan.local(graph, "resnet18")
    assert predict(graph, local, robot, edge, LinkModel(5)).latency_ms == pytest.approx(
        predict(graph, local, robot, edge, LinkModel(500)).latency_ms)


def test_more_edge_tiles_overlap_transfer_with_compute(graph):
    robot, edge = _synthetic(graph, 40.0), _synthetic(graph, 4.0)
    starts, ends = split_points(graph)
    end = ends[0][len(ends[0]) // 3]      # a shallow segment: small halos, so tiles pipeline well
    one = predict(graph, Plan("resnet18", 128, 128, 0, end, 0, 1, 1), robot, edge, LinkModel(20)).latency_ms
    four = predict(graph, Plan("resnet18", 128, 128, 0, end, 0, 1, 4), robot, edge, LinkModel(20)).latency_ms
    assert four < one


@pytest.mark.parametrize("bw", [1, 5, 25, 100, 500, 5000])
@pytest.mark.parametrize("ratio", [1.0, 4.0, 30.0])
def test_choice_never_worse_than_best_baseline(graph, bw, ratio):
    robot, edge = _synthetic(graph, 4.0 * ratio), _synthetic(graph, 4.0)
    d = choose(_resnet(graph, robot, edge, bw), RAW_LZ4)
    best = min(p.latency_ms for p in d.baselines.values())
    assert d.chosen.latency_ms <= best + 1e-9
    assert set(d.baselines) == {"local", "offload", "best-cut"}
    assert "chosen:" in d.report()


@pytest.mark.parametrize("bw", [25, 100])
def test_split_plan_needs_its_minimum_gain(graph, bw):
    """A split plan wins only when predicted min_split_gain faster than the best baseline; else that baseline."""
    robot, edge = _synthetic(graph, 16.0), _synthetic(graph, 4.0)
    free = choose(_resnet(graph, robot, edge, bw), SearchOptions(min_split_gain=0.0))
    best = min(d.latency_ms for d in free.baselines.values())
    assert free.best_split is not None
    gain = 1.0 - free.best_split.latency_ms / best
    assert gain > 0.02        # the setting must have a split plan worth choosing, or the test proves nothing
    n = len(graph.ops)
    for need in (0.0, max(gain - 0.01, 0.0), gain + 0.01, 0.9):
        d = choose(_resnet(graph, robot, edge, bw), SearchOptions(min_split_gain=need))
        split_chosen = d.chosen.plan.kind(n) == "intra-dp"
        assert split_chosen == (gain > need), (need, gain, d.chosen.name)
        assert d.chosen.latency_ms <= best + 1e-9


@pytest.mark.parametrize("bw", [25, 100])
def test_re_pricing_the_shortlist_finds_the_search_s_choice_for_a_fraction_of_the_work(graph, bw):
    robot, edge = _synthetic(graph, 16.0), _synthetic(graph, 4.0)
    full = choose(_resnet(graph, robot, edge, bw), RAW_LZ4)
    assert full.best_split is not None and full.shortlist[0] == full.best_split.plan
    assert len(full.shortlist) == len(set(full.shortlist)) == 16
    again = choose(_resnet(graph, robot, edge, bw), RAW_LZ4, shortlist=full.shortlist)
    assert again.chosen.plan == full.chosen.plan and again.chosen.latency_ms == pytest.approx(full.chosen.latency_ms)
    assert again.considered < full.considered / 2
    # the edge 1.3x slower: re-pricing still never returns a plan predicted worse than a baseline
    slower = choose(_resnet(graph, robot, edge.scaled(1.3), bw), RAW_LZ4, shortlist=full.shortlist)
    assert slower.chosen.latency_ms <= min(p.latency_ms for p in slower.baselines.values()) + 1e-9


@pytest.mark.parametrize("bw", [25, 100])
def test_a_learned_split_extra_makes_a_marginal_split_lose_to_the_baseline(graph, bw):
    robot, edge = _synthetic(graph, 16.0), _synthetic(graph, 4.0)
    free = choose(_resnet(graph, robot, edge, bw))
    n = len(graph.ops)
    best = min(d.latency_ms for d in free.baselines.values())
    assert free.chosen.plan.kind(n) == "intra-dp"
    gap = best - free.chosen.latency_ms
    d = choose(_resnet(graph, robot, edge, bw), evidence=Evidence(split_extra_ms=gap - 0.5))
    assert d.chosen.plan.kind(n) == "intra-dp" and d.chosen.latency_ms == pytest.approx(best - 0.5)
    d = choose(_resnet(graph, robot, edge, bw), evidence=Evidence(split_extra_ms=gap + 0.5))
    assert d.chosen.plan.kind(n) != "intra-dp" and d.chosen.latency_ms == pytest.approx(best)
    assert d.best_split.latency_ms == pytest.approx(free.chosen.latency_ms + gap + 0.5)


@pytest.mark.parametrize("bw", [25, 100])
def test_a_measured_plan_is_compared_by_what_it_measured(graph, bw):
    """Where a plan has measured latency the choice uses it, not the prediction; the returned predictions stay
    the model's. A measured plan the search would not reach is a candidate too."""
    robot, edge = _synthetic(graph, 16.0), _synthetic(graph, 4.0)
    free = choose(_resnet(graph, robot, edge, bw))
    n = len(graph.ops)
    assert free.chosen.plan.kind(n) == "intra-dp"
    split = free.chosen
    best = min(free.baselines.values(), key=lambda p: p.latency_ms)
    extra = best.latency_ms - split.latency_ms + 5.0          # a learned extra that makes every split lose ...
    priced = choose(_resnet(graph, robot, edge, bw), evidence=Evidence(split_extra_ms=extra))
    assert priced.chosen.plan == best.plan
    # ... unless the split measured faster than the best baseline did
    measured = {split.plan.spec(): 0.8 * best.latency_ms, best.plan.spec(): best.latency_ms}
    d = choose(_resnet(graph, robot, edge, bw), evidence=Evidence(measured, split_extra_ms=extra))
    assert d.chosen.plan == split.plan and d.chosen.latency_ms == pytest.approx(split.latency_ms + extra)
    # a split measured slower than the best baseline measured is not chosen, whatever its prediction
    d = choose(_resnet(graph, robot, edge, bw), evidence=Evidence({split.plan.spec(): 1.5 * best.latency_ms}))
    assert d.chosen.plan != split.plan
    # a measured plan outside the search's reach (odd tiles) is priced and chosen when it measured best
    odd = dataclasses.replace(split.plan, robot_tiles=3, edge_tiles=5) if split.plan.robot_rows else \
        dataclasses.replace(split.plan, edge_tiles=7)
    d = choose(_resnet(graph, robot, edge, bw), evidence=Evidence({odd.spec(): 0.1 * split.latency_ms}))
    assert d.chosen.plan == odd
    assert d.chosen.latency_ms == pytest.approx(predict(graph, odd, robot, edge, LinkModel(bw)).latency_ms)
    # baselines too: all-local measured fastest is chosen over every prediction
    local = free.baselines["local"].plan
    d = choose(_resnet(graph, robot, edge, bw), evidence=Evidence({local.spec(): 1.0}))
    assert d.chosen.plan == local


@pytest.mark.parametrize("bw", [25, 100])
def test_a_measured_family_prices_its_unmeasured_variants(graph, bw):
    """Plans of a family with measured excess are priced with it, other split plans with the class-wide extra."""
    robot, edge = _synthetic(graph, 16.0), _synthetic(graph, 4.0)
    free = choose(_resnet(graph, robot, edge, bw))
    split = free.chosen.plan
    assert split.is_split
    best = min(p.latency_ms for p in free.baselines.values())
    big = best                                         # class-wide: every split loses ...
    d = choose(_resnet(graph, robot, edge, bw), evidence=Evidence(split_extra_ms=big))
    assert not d.chosen.plan.is_split
    # ... but this family measured as predicted
    d = choose(_resnet(graph, robot, edge, bw), evidence=Evidence(split_extra_ms=big,
                                                                 family_extra_ms={family(split): 0.0}))
    assert d.chosen.plan.is_split and family(d.chosen.plan) == family(split)
    others = [p for p in d.shortlist if family(p) != family(split)]
    assert others and all(predict(graph, p, robot, edge, LinkModel(bw)).latency_ms + big >= best for p in others)


def test_tiny_bandwidth_keeps_everything_local(graph):
    robot, edge = _synthetic(graph, 40.0), _synthetic(graph, 1.0)
    d = choose(_resnet(graph, robot, edge, 0.01))
    assert d.chosen.plan.kind(len(graph.ops)) == "local"


@pytest.mark.parametrize("bw", [0.5, 5.0])
def test_a_split_where_the_edge_does_nothing_is_never_a_candidate(bw):
    """The robot computing every row of a segment that ends the network is all-local in tiles: the same compute
    plus messages. Priced with a profile a little faster than all-local's own measured one (as unmeasured plans
    are on a robot), such plans rank first; they are never candidates, measured or not."""
    g = capture(build_model("yolov3_tiny"), torch.zeros(1, 3, 128, 128))
    n = len(g.ops)
    starts, ends = split_points(g)
    start = max(k for k in starts if n in ends[k])
    disguised = Plan("yolov3_tiny", 128, 128, start, n, Segment(g, start, n).grid, 2, 1)
    cp = compile_plan(g, disguised)
    assert not cp.edge_work and not cp.edge_ops and not cp.to_edge_whole
    robot, edge = _synthetic(g, 4.0), _synthetic(g, 1.0)
    local_ms = predict(g, Plan.local(g, "yolov3_tiny"), robot, edge, LinkModel(bw)).latency_ms
    faster = dataclasses.replace(robot, scale=0.9)
    measured = {Plan.local(g, "yolov3_tiny").spec(): local_ms, disguised.spec(): 0.5 * local_ms}
    d = choose(Problem(g, "yolov3_tiny", faster, edge, LinkModel(bw)), evidence=Evidence(measured))
    assert predict(g, disguised, faster, edge, LinkModel(bw)).latency_ms < local_ms    # it would look faster
    for plan in [d.chosen.plan, d.best_split.plan if d.best_split else None, *d.shortlist]:
        if plan is not None and plan.is_split:
            c = compile_plan(g, plan)
            assert c.edge_work or c.edge_ops or c.to_edge_whole, plan.spec()


def test_profile_cache_hit_skips_profiling(graph, tmp_path, monkeypatch):
    import intradp_ros.engine.profiler as profiler
    x = torch.zeros(1, 3, 128, 128)
    logs = []
    p1 = load_or_profile(graph, x, tmp_path, log=logs.append)
    assert "profiled" in logs[0] and len(p1.op_ms) == len(graph.ops) and all(t > 0 for t in p1.op_ms)
    # timing noise must not decide this test: pretend the check forward took what the profile says
    monkeypatch.setattr(profiler, "_whole_forward_ms", lambda g, x: sum(p1.op_ms))
    p2 = load_or_profile(graph, x, tmp_path, log=logs.append)
    assert "cache hit" in logs[1] and p2.op_ms == p1.op_ms
    # a device now 5x slower than when profiled (another load, a throttled clock): measured again
    monkeypatch.setattr(profiler, "_whole_forward_ms", lambda g, x: 5 * sum(p1.op_ms))
    load_or_profile(graph, x, tmp_path, log=logs.append)
    assert "stale profile" in logs[2] and "profiled" in logs[3]
    (next(tmp_path.iterdir())).write_text("{not json")
    p3 = load_or_profile(graph, x, tmp_path, log=logs.append)
    assert "ignoring unreadable profile" in logs[4] and len(p3.op_ms) == len(graph.ops)


def test_profile_round_trips_as_json(graph):
    p = profile_graph(graph, torch.zeros(1, 3, 128, 128), repeats=1, warmup=0)
    assert DeviceProfile.from_json(p.to_json()) == p
    with pytest.raises(ValueError):
        DeviceProfile.from_json(p.to_json().replace(f'"version": {p.version}', '"version": -1'))
    assert dataclasses.replace(p, scale=2.0).compute_ms(0, 10, 10) == pytest.approx(2 * p.compute_ms(0, 10, 10))
    # streamed row tiles were timed as the executor runs them; the factor prices every tile
    assert 0.5 <= p.tile_scale <= 3.0 and p.tile_scale != 1.0
    assert dataclasses.replace(p, tile_scale=1.0).compute_ms(3, 5, 10) * p.tile_scale == pytest.approx(
        p.compute_ms(3, 5, 10))


def test_chunk_timer_measures_a_burst():
    from intradp_ros.engine.link import BandwidthEstimate, ChunkTimer
    timer = ChunkTimer()
    # 4 chunks of 125 kB arriving 10 ms apart: 375 kB after the first in 30 ms = 100 Mbit/s
    samples = [timer.arrived(7, i, 4, 125_000, 1.0 + 0.01 * i) for i in (0, 2, 1, 3)]   # order may vary
    assert samples[:3] == [None] * 3
    nbytes, span = samples[3]
    assert nbytes == 375_000 and abs(span - 0.03) < 1e-9
    assert timer.arrived(8, 0, 1, 10, 2.0) is None              # one chunk: nothing to measure
    est = BandwidthEstimate(window=3)
    assert est.mbps is None
    for v in (100.0, 5.0, 90.0, 110.0):
        est.add(v)
    assert est.mbps == 90.0                                      # median of the last three


def test_guard_replaces_a_plan_that_measures_worse_than_a_baseline():
    from intradp_ros.engine.guard import PlanGuard
    g = PlanGuard(window=6, min_samples=3)
    g.reset({"split": 100.0, "offload": 150.0, "local": 400.0})
    cur = "split"
    for _ in range(2):
        g.observe(cur, 300.0)
        assert g.pick(cur) == cur                 # not enough samples yet
    g.observe(cur, 310.0)
    cur = g.pick(cur)
    assert cur == "offload"                       # measured 300 > offload's prediction 150: try it
    for _ in range(3):
        g.observe(cur, 200.0)
    assert g.pick(cur) == "offload"               # 200 measured beats split's 300 measured; local predicted 400
    g.observe("local", 1.0)                       # samples of a plan not in force do not count until 3
    assert g.pick(cur) == "offload"


def test_guard_keeps_a_plan_that_delivers():
    from intradp_ros.engine.guard import PlanGuard
    g = PlanGuard(min_samples=2)
    g.reset({"split": 100.0, "offload": 150.0})
    for _ in range(4):
        g.observe("split", 104.0)
    assert g.pick("split") == "split"
    assert g.pick("unknown") == "unknown"


def test_per_message_cost_penalises_many_tiles(graph):
    robot, edge = _synthetic(graph, 40.0), _synthetic(graph, 4.0)
    starts, ends = split_points(graph)
    end = ends[0][len(ends[0]) // 3]
    plan = Plan("resnet18", 128, 128, 0, end, 0, 1, 8)
    cheap = predict(graph, plan, robot, edge, LinkModel(20))
    dear = predict(graph, plan, robot, edge, LinkModel(20, msg_ms=10.0))
    n = len(CompiledPlan(graph, plan).edge_chunks)
    assert dear.robot_ms == pytest.approx(cheap.robot_ms + 10.0 * n)    # the robot builds every message
    assert dear.latency_ms > cheap.latency_ms + 10.0                    # and that is on the critical path


def test_guard_keeps_measurements_across_a_replan_on_the_same_link():
    from intradp_ros.engine.guard import PlanGuard
    g = PlanGuard(min_samples=2)
    g.reset({"split": 100.0, "offload": 150.0})
    for _ in range(3):
        g.observe("split", 180.0)
    g.reset({"split": 140.0, "offload": 190.0, "cut": 170.0}, keep=True)
    assert g.measured("split") == pytest.approx(180.0)
    g.reset({"offload": 190.0, "cut": 170.0}, keep=True)      # no longer a candidate: forgotten
    g.reset({"split": 140.0, "offload": 190.0}, keep=True)
    assert g.measured("split") is None
    for _ in range(3):
        g.observe("split", 180.0)
    g.reset({"split": 140.0, "offload": 190.0})               # another link: measure again
    assert g.measured("split") is None


def test_robot_compute_prediction_matches_the_profile_and_its_scale(graph):
    from intradp_ros.engine.cost import edge_compute_ms, robot_compute_ms
    robot = _synthetic(graph, 40.0)
    local = Plan.local(graph, "resnet18")
    assert robot_compute_ms(graph, local, robot) == pytest.approx((sum(robot.op_ms), 0.0))
    assert robot_compute_ms(graph, Plan.offload(graph, "resnet18"), robot) == (0.0, 0.0)
    assert edge_compute_ms(graph, Plan.offload(graph, "resnet18"), robot) == pytest.approx(sum(robot.op_ms))
    assert edge_compute_ms(graph, local, robot) == 0.0
    starts, ends = split_points(graph)
    split = Plan("resnet18", 128, 128, 0, ends[0][-1], 3, 2, 2)
    whole, tiles = robot_compute_ms(graph, split, robot)
    assert whole == 0.0 and tiles > 0                      # the whole network split: the robot only has tiles
    assert robot_compute_ms(graph, split, robot.scaled(1.5))[1] == pytest.approx(1.5 * tiles)
    assert robot_compute_ms(graph, split, dataclasses.replace(robot, tile_scale=2.0))[1] == pytest.approx(2 * tiles)


def test_guard_needs_a_larger_promise_to_try_an_unmeasured_plan():
    from intradp_ros.engine.guard import PlanGuard
    g = PlanGuard(min_samples=2, margin=0.1)
    g.reset({"offload": 150.0, "split": 170.0})
    for _ in range(2):
        g.observe("offload", 200.0)
    assert g.pick("offload") == "offload"          # predicted 15% better but never measured: not worth a try
    g.reset({"offload": 150.0, "split": 150.0}, keep=True)
    assert g.pick("offload") == "split"            # predicted 25% better: try it
    for _ in range(2):
        g.observe("split", 185.0)
    assert g.pick("split") == "split"              # measured 7.5% better: below the margin, but in force: stays
    assert g.pick("offload") == "offload"          # and from offload it would not switch for 7.5% either
