"""The bench's plan-stability summary, on hand-made frames."""
from intradp_ros.tools.stability import stability


def _rows(plans_settled, mbps="25", strategy="intra-dp", wall=0.5):
    return [{"bandwidth_mbps": mbps, "strategy": strategy, "ok": "1", "frame_plan": p, "plan_settled": s,
             "wall_s": str(wall)} for p, s in plans_settled]


def test_frames_until_settled_and_changes_after_it_per_minute():
    rows = _rows([("a", "0"), ("b", "0"), ("b", "1")] + [("b", "1")] * 57 + [("c", "1")] * 60)
    rows += _rows([("x", "1")] * 3, mbps="50")
    s25, s50 = stability(rows)
    assert (s25.settled_at, s25.settled_s, s25.plans) == (2, 1.5, 3)
    assert [(round(t, 1), a, b) for t, a, b in s25.changes_after] == [(29.0, "b", "c")]   # the change to c only
    assert abs(s25.minutes_after - 58.5 / 60) < 1e-9 and "1 plan change(s)" in s25.line()
    assert s50.settled_at == 0 and s50.changes_after == []


def test_a_block_that_never_settles_says_so():
    (s,) = stability(_rows([("a", "0"), ("b", "0")]))
    assert s.settled_at is None and "never settled" in s.line()
