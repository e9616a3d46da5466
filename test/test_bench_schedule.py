"""The benchmark's schedule and bookkeeping (pure logic; the run itself is test_bench_quick.py)."""
import collections

import numpy as np
import pytest

from intradp_ros.tools.bench_client import orders, turns
from intradp_ros.tools.bench_report import _settling, _tbf_drops, ratio_interval, verdict_text

STRATEGIES = ["local", "offload", "best-cut", "intra-dp"]


@pytest.mark.parametrize("frames,rounds", [(50, 5), (20, 5), (7, 3), (3, 5), (10, 1)])
def test_every_strategy_gets_its_frames_in_rotating_turns(frames, rounds):
    plan = turns(STRATEGIES, frames, rounds, warmup=10, round_warmup=2)
    measured, warm = collections.Counter(), collections.Counter()
    for _, s, w, n in plan:
        measured[s] += n
        warm[s] += w
    n_rounds = min(rounds, frames)
    assert all(measured[s] == frames for s in STRATEGIES)
    assert all(warm[s] == 10 + 2 * (n_rounds - 1) for s in STRATEGIES)
    assert all(n >= 1 for *_, n in plan)
    firsts = [plan[r * len(STRATEGIES)][1] for r in range(n_rounds)]
    assert firsts == [STRATEGIES[r % len(STRATEGIES)] for r in range(n_rounds)]    # each comes first in turn


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_each_strategy_follows_every_other_equally_often(n):
    """Carry-over balance: over the design's orders, every ordered pair (a then b) of distinct strategies is
    adjacent the same number of times, and each order holds every strategy once."""
    design = orders(n)
    assert all(sorted(row) == list(range(n)) for row in design)
    pairs = collections.Counter((a, b) for row in design for a, b in zip(row, row[1:]))
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert len(set(pairs.values())) <= 1


def test_tbf_drops_add_up_over_a_strategy_s_turns():
    def mark(rnd, phase, drops):
        return {"mbps": 50.0, "strategy": "offload", "round": rnd, "phase": phase,
                "robot": {"drops": drops}, "edge": {"drops": 0}}
    marks = [mark(0, "start", 0), mark(0, "end", 2), mark(1, "start", 5), mark(1, "end", 8)]
    assert _tbf_drops(marks) == {(50.0, "offload"): 5}      # 2 + 3; the 3 dropped between turns are not counted


def test_the_interval_of_a_p50_ratio_tells_a_tie_from_a_real_difference():
    """Two cells of one plan (frames spread like the bench's, +-20 %) give an interval around 1; a plan 15 %
    faster one that excludes 1; a strict miss inside its interval is reported as noise, outside as a plain NO."""
    rng = np.random.default_rng(3)
    a, b = (200.0 * (1 + 0.1 * rng.standard_normal(50)) for _ in range(2))
    lo, hi = ratio_interval(a, b)
    assert lo < 1.0 < hi and hi - lo < 0.2
    lo, hi = ratio_interval(0.85 * a, b)
    assert hi < 1.0
    assert ratio_interval(a, b) == ratio_interval(a, b)          # seeded: a report is reproducible
    assert verdict_text(True, (0.9, 1.1)) == "yes"
    assert verdict_text(False, (0.97, 1.08)).startswith("NO (within noise")
    assert verdict_text(False, (1.02, 1.10)) == "NO"


def test_settle_frames_are_reported_per_cell():
    rows = [{"bandwidth_mbps": "50", "strategy": "intra-dp", "phase": ph, "ok": "1", "latency_ms": str(ms),
             "frame_plan": plan} for ph, ms, plan in [("warmup", 900, "a"), ("settle", 300, "a"), ("settle", 200, "b"),
                                                      ("settle", 250, "b"), ("measure", 100, "b")]]
    assert _settling(rows) == ["Intra-DP @ 50 Mbit/s 3 frames (p50 250.0 ms, 2 plans)"]


def test_the_physical_limit_is_below_every_plan_priced_with_its_overheads(tmp_path):
    """bench_limit prices the best plan with compute and wire time only: never above what the cost model predicts
    for the planner's choice with the overheads it measured, and lower as the link gets faster."""
    import dataclasses
    import pathlib

    from intradp_ros.engine.cost import LinkModel
    from intradp_ros.engine.profile import DeviceProfile
    from intradp_ros.engine.search import Problem, SearchOptions, choose
    from intradp_ros.runtime import ModelConfig, ModelRuntime
    from intradp_ros.tools.bench_limit import limits

    m = ModelRuntime(ModelConfig())
    recorded = (pathlib.Path(__file__).parent / "data" / "yolov3_tiny_profile.json").read_text()
    edge = dataclasses.replace(DeviceProfile.from_json(recorded), key=m.graph.key)
    robot = edge.scaled(4.0)
    for folder, prof in (("robot-q2500-p10000", robot), ("edge", edge)):
        (tmp_path / "profiles" / folder).mkdir(parents=True)
        (tmp_path / "profiles" / folder / f"{m.graph.key}-cpu-t1.json").write_text(prof.to_json())
    cfg = {"model": "yolov3_tiny", "input_size": 0, "bandwidths_mbps": [10, 50, 200]}
    lim = limits(tmp_path, cfg)
    assert sorted(lim) == [10.0, 50.0, 200.0]
    assert lim[10.0].latency_ms > lim[50.0].latency_ms > lim[200.0].latency_ms > 0
    for bw, x in lim.items():
        link = LinkModel(bw, 1.0, msg_ms=0.3)
        priced = choose(Problem(m.graph, "yolov3_tiny", robot, edge, link), SearchOptions(encodings=("raw", "lz4")))
        assert x.latency_ms <= min(p.latency_ms for p in [priced.chosen, *priced.baselines.values()])
