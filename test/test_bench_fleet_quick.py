"""`./intradp bench --robots 1,2 --quick` end to end: two robot namespaces with their own shaped links and CPU caps,
ONE edge_node, the real nodes over DDS. Checks that every robot ran every turn of its fleet sizes together with the
others, that the edge's load was recorded, and that the result files are well formed; never a timing.

Needs root, `ip netns`, tc tbf and cgroup v1 cpu/cpuacct: skipped (with the reason) where those are missing.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from intradp_ros.tools import netem
from intradp_ros.tools.bench_report import LABELS
from intradp_ros.tools.fleet_bench import FLEET_COLUMNS
from intradp_ros.vision.samples import find_samples

_reason = netem.unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"bench emulation unavailable: {_reason}")
STRATEGIES = ("offload", "intra-dp")
FRAMES = 3


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory):
    pytest.importorskip("rclpy")
    if find_samples() is None:
        pytest.skip("sample images missing: ./intradp setup puts them in .cache/samples")
    out = tmp_path_factory.mktemp("fleet") / "quick"
    proc = subprocess.run([sys.executable, "-m", "intradp_ros.tools.bench", "--robots", "1,2", "--quick",
                           "--strategies", ",".join(STRATEGIES), "--frames", str(FRAMES), "--out", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.returncode == 0, proc.stdout[-6000:]
    with open(out / "frames.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == FLEET_COLUMNS
        rows = list(reader)
    return out, proc.stdout, rows


def test_every_robot_ran_its_fleet_sizes(fleet_run):
    _, _, rows = fleet_run
    for n, robots in ((1, {1}), (2, {1, 2})):
        for st in STRATEGIES:
            cell = [r for r in rows if r["robots"] == str(n) and r["strategy"] == st]
            assert {int(r["robot"]) for r in cell} == robots, (n, st)
            for k in robots:
                mine = [r for r in cell if int(r["robot"]) == k]
                assert [r["phase"] for r in mine].count("measure") == FRAMES
                assert all(r["ok"] == "1" and float(r["latency_ms"]) > 0 for r in mine), mine
                # after its measured frames a robot runs unmeasured tail frames only, until all robots measured
                phases = [r["phase"] for r in mine]
                last = len(phases) - 1 - phases[::-1].index("measure")
                assert set(phases[last + 1:]) <= {"tail"}
    # robot 2 idles while the fleet has one robot
    assert not [r for r in rows if r["robots"] == "1" and r["robot"] == "2"]


def test_turns_start_together(fleet_run):
    """The bench marked each turn's start once, for all robots of the turn (a barrier), in the same order."""
    out, _, _ = fleet_run
    run = json.loads((out / "run.json").read_text())
    starts = [(m["robots"], m["strategy"]) for m in run["marks"] if m["phase"] == "start"]
    assert sorted(starts) == sorted((n, st) for n in (1, 2) for st in STRATEGIES)
    for m in run["marks"]:
        assert len(m["tbf"]) == m["robots"]          # every robot's shaped link read at the barrier
    assert {d["robot"] for d in run["decisions"]} == {1, 2}


def test_offload_frames_cross_each_robots_link(fleet_run):
    _, _, rows = fleet_run
    offload = [r for r in rows if r["strategy"] == "offload" and r["phase"] == "measure"]
    assert {r["robot"] for r in offload} == {"1", "2"}
    assert all(int(r["tx_bytes"]) >= 3 * 416 * 416 for r in offload)


def test_edge_load_and_summary(fleet_run):
    out, stdout, _ = fleet_run
    with open(out / "edge.csv", newline="") as f:
        edge = list(csv.DictReader(f))
    for n in (1, 2):
        off = [e for e in edge if e["robots"] == str(n) and e["strategy"] == "offload"]
        assert off and all(0.0 < float(e["busy_fraction"]) <= 1.0 and float(e["frames_per_s"]) > 0 for e in off)
        assert all(int(e["sessions"]) == 2 for e in off)        # both robots are the edge's, idle or not
    md = (out / "fleet_summary.md").read_text()
    for n in (1, 2):
        for st in STRATEGIES:
            assert any(ln.startswith(f"| 50 | {n} | {LABELS[st]} |") for ln in md.splitlines()), (n, st, md)
    assert "Intra-DP / all-offload" in stdout
    assert (out / "fleet_p50.png").read_bytes()[:4] == b"\x89PNG"


def test_nothing_is_left_behind(fleet_run):
    out, _, _ = fleet_run
    run = json.loads((out / "run.json").read_text())
    names = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, text=True).stdout
    assert not [n for n in run["testbed"]["netns"].values() if n in names]
