"""`./intradp bench --quick` end to end: namespaces, shaped veth, CPU-capped robot, the real nodes over UDP-only
Fast DDS, all four strategies. Checks that the result files exist and are well formed, never a timing.

Needs root, `ip netns`, tc tbf and cgroup v1 cpu/cpuacct: skipped (with the reason) where those are missing.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from intradp_ros.tools import netem
from intradp_ros.tools.bench import CSV_COLUMNS
from intradp_ros.tools.bench_report import LABELS, STRATEGIES
from intradp_ros.vision.samples import find_samples

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_reason = netem.unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"bench emulation unavailable: {_reason}")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("rclpy")
    if find_samples() is None:
        pytest.skip("sample images missing: ./intradp setup puts them in .cache/samples")
    out = tmp_path_factory.mktemp("bench") / "quick"
    proc = subprocess.run([sys.executable, "-m", "intradp_ros.tools.bench", "--quick", "--out", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=420,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.returncode == 0, proc.stdout[-6000:]
    return out, proc.stdout


def _quick_config() -> dict:
    cfg = yaml.safe_load((REPO / "config" / "bench.yaml").read_text())
    cfg.update(cfg["quick"])
    return cfg


def test_csv_has_every_frame(quick_run):
    out, _ = quick_run
    cfg = _quick_config()
    with open(out / "frames.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        rows = list(reader)
    for bw in cfg["bandwidths_mbps"]:
        for st in STRATEGIES:
            cell = [r for r in rows if float(r["bandwidth_mbps"]) == bw and r["strategy"] == st]
            settle = [r for r in cell if r["phase"] == "settle"]
            assert [r["phase"] for r in cell] == (["warmup"] * cfg["warmup"] + ["settle"] * len(settle)
                                                  + ["measure"] * cfg["frames"])
            # settle frames run while robot_node's PlanStatus says its plan is not settled, and stop when it is
            # (or at settle_max); a fixed plan is settled at once
            assert len(settle) <= cfg["settle_max"]
            assert all(r["plan_settled"] == "0" for r in settle)
            if st != "intra-dp":
                assert not settle and all(r["plan_settled"] == "1" for r in cell)
            elif len(settle) < cfg["settle_max"]:
                assert cell[cfg["warmup"] + len(settle)]["plan_settled"] == "1"
            for r in cell:
                assert r["ok"] == "1", r
                assert r["model"] == cfg["model"]
                for col in ("latency_ms", "predicted_ms", "cpu_robot_s", "energy_j"):
                    assert float(r[col]) > 0, (col, r)
                assert int(r["tx_bytes"]) >= 0 and int(r["rx_bytes"]) >= 0
                if st != "intra-dp":   # auto: robot_node's measured-latency guard may switch plans mid-run
                    assert r["frame_plan"] == r["plan_spec"]    # the result was computed under the plan set
                assert r["frame_plan"].startswith(cfg["model"] + "@")
    kinds = {r["strategy"]: r["plan_kind"] for r in rows}
    assert kinds["local"] == "local" and kinds["offload"] == "offload"
    assert kinds["best-cut"] in ("cut", "local", "offload")


def test_offload_tiles_cross_the_shaped_veth(quick_run):
    """UDP-only DDS: the all-offload frames' input tensor (3 x 416 x 416 u8) went over the robot's veth."""
    out, _ = quick_run
    with open(out / "frames.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["strategy"] == "offload" and r["phase"] == "measure"]
    assert rows and all(int(r["tx_bytes"]) >= 3 * 416 * 416 for r in rows)


def test_summary_table_has_every_strategy(quick_run):
    out, stdout = quick_run
    md = (out / "summary.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| 50 |")]
    for st in STRATEGIES:
        assert any(f"| {LABELS[st]} |" in ln for ln in table), (st, md)
    header = next(ln for ln in md.splitlines() if ln.startswith("| Mbit/s | strategy"))
    for col in ("p50 ms", "p95 ms", "predicted ms", "measured/predicted", "robot CPU s/frame", "bytes/frame",
                "energy J/frame"):
        assert col in header
    for line in ("Intra-DP p50 <= best baseline", "best ratio Intra-DP / best layer-wise cut",
                 "within 20% of predicted", "Intra-DP vs all-local", "tiles crossed the shaped veth: yes"):
        assert line in stdout, (line, stdout[-3000:])


def test_plots_are_png(quick_run):
    out, _ = quick_run
    for name in ("latency_vs_bandwidth.png", "breakdown.png", "energy.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name


def test_nothing_is_left_behind(quick_run):
    """Namespaces, veths and cgroups of the run are gone."""
    names = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], stdout=subprocess.PIPE, text=True).stdout
    mine = [ln for ln in (names + links).splitlines() if netem.PREFIX in ln]
    # other benchmark runs may be live in parallel: only ours (this process's children) must be gone
    out, _ = quick_run
    run = yaml.safe_load((out / "run.json").read_text())
    ours = set(run["testbed"]["netns"].values()) | set(run["testbed"]["veth"].values())
    assert not [ln for ln in mine if any(n in ln for n in ours)]
    assert not Path(run["testbed"]["cgroup_cpu"]).exists()
