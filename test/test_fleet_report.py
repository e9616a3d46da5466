"""The fleet bench's summary from its CSV files (pure logic: intradp_ros.tools.fleet_report): only measured frames
count, each robot's p50 is its own, the edge's load is weighted by span, and the verdicts follow the figures."""
from __future__ import annotations

import csv

import pytest

pytest.importorskip("matplotlib")

from intradp_ros.tools import fleet_report  # noqa: E402
from intradp_ros.tools.fleet_bench import EDGE_COLUMNS, FLEET_COLUMNS  # noqa: E402


def _frame(n, robot, strategy, latency, phase="measure", ok=1, kind=None):
    return {"model": "m", "bandwidth_mbps": 50.0, "strategy": strategy, "round": 0, "phase": phase, "ok": ok,
            "latency_ms": latency, "cpu_robot_s": 0.01, "plan_kind": kind or strategy, "robots": n, "robot": robot}


def _write(path, columns, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _cfg():
    return {"model": "m", "robot": {"cpu_quota_us": 2500, "cpu_period_us": 10000}, "edge": {"threads": 1,
            "device": "cpu"}, "warmup": 1, "frames": 3, "rounds": 1, "bandwidth_source": "measured"}


@pytest.fixture
def run_dir(tmp_path):
    rows = []
    for robot, base in ((1, 100.0), (2, 300.0)):            # robot 2 slower: per-robot p50s must differ
        rows += [_frame(2, robot, "offload", base + d) for d in (0, 10, 20)]
        rows += [_frame(2, robot, "intra-dp", base * 0.5 + d, kind="intra-dp") for d in (0, 10, 20)]
        rows.append(_frame(2, robot, "intra-dp", 9999.0, phase="tail"))        # never counted
        rows.append(_frame(2, robot, "intra-dp", 9999.0, phase="warmup"))
    rows += [_frame(1, 1, "offload", 80.0 + d) for d in (0, 1, 2)]
    rows += [_frame(1, 1, "intra-dp", 90.0 + d) for d in (0, 1, 2)]
    rows.append(_frame(1, 1, "intra-dp", None, ok=0))                           # lost
    _write(tmp_path / "frames.csv", FLEET_COLUMNS, rows)
    edge = [{"bandwidth_mbps": 50.0, "robots": 2, "strategy": "offload", "round": 0, "span_s": 1.0,
             "busy_fraction": 0.9, "frames_per_s": 4.0, "sessions": 2},
            {"bandwidth_mbps": 50.0, "robots": 2, "strategy": "offload", "round": 1, "span_s": 3.0,
             "busy_fraction": 0.5, "frames_per_s": 8.0, "sessions": 2}]
    _write(tmp_path / "edge.csv", EDGE_COLUMNS, edge)
    return tmp_path


def test_summary_counts_measured_frames_per_robot(run_dir):
    stats = fleet_report.summarize(fleet_report.load_rows(run_dir / "frames.csv"),
                                   fleet_report.load_rows(run_dir / "edge.csv"))
    two = stats[(50.0, 2, "intra-dp")]
    assert two["n"] == 6 and two["lost"] == 0
    assert two["robot_p50"] == {1: 60.0, 2: 160.0}
    assert max(two["latencies"]) < 9999.0
    one = stats[(50.0, 1, "intra-dp")]
    assert one["n"] == 3 and one["lost"] == 1 and one["p50"] == 91.0
    off = stats[(50.0, 2, "offload")]
    assert off["busy"] == pytest.approx((0.9 * 1 + 0.5 * 3) / 4)
    assert off["fps"] == pytest.approx((4 * 1 + 8 * 3) / 4)
    assert "busy" not in two                       # no heartbeats reported for that turn


def test_report_verdicts(run_dir):
    text = fleet_report.report(run_dir, _cfg(), {"robots": [1, 2]})
    lines = {ln.split("|")[2].strip(): ln for ln in text.splitlines() if ln.startswith("| 50 |") and "baseline" not in
             ln and ln.count("|") == 9}
    # 2 robots: Intra-DP p50 (median of 50,60,70,150,160,170 = 110) vs all-offload (median of 100..320 = 210)
    assert "all-offload (210.0)" in lines["2"] and "| 110.0 |" in lines["2"]
    assert "0.52" in lines["2"] and "meets <= 0.8" in lines["2"] and "| yes |" in lines["2"]
    # 1 robot: Intra-DP 91 > all-offload 81: not at or below the best baseline
    assert "| NO" in lines["1"]
    assert (run_dir / "fleet_summary.md").read_text().count("| 50 |") == 6
    assert (run_dir / "fleet_p50.png").read_bytes()[:4] == b"\x89PNG"
