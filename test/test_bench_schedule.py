"""The benchmark's schedule and bookkeeping (pure logic; the run itself is test_bench_quick.py)."""
import collections

import pytest

from intradp_ros.tools.bench_client import turns
from intradp_ros.tools.bench_report import _tbf_drops

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
    assert firsts == [STRATEGIES[r % len(STRATEGIES)] for r in range(n_rounds)]    # the order rotates


def test_tbf_drops_add_up_over_a_strategy_s_turns():
    def mark(rnd, phase, drops):
        return {"mbps": 50.0, "strategy": "offload", "round": rnd, "phase": phase,
                "robot": {"drops": drops}, "edge": {"drops": 0}}
    marks = [mark(0, "start", 0), mark(0, "end", 2), mark(1, "start", 5), mark(1, "end", 8)]
    assert _tbf_drops(marks) == {(50.0, "offload"): 5}      # 2 + 3; the 3 dropped between turns are not counted
