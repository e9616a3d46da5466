"""The benchmark's settings and files: config/bench.yaml with the command-line options over it, the nodes'
parameter files of a run, the CSV columns of frames.csv, and what run.json records about the machine.

Used by :mod:`intradp_ros.tools.bench` (the command line) and :mod:`intradp_ros.tools.bench_run` (the run).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
from pathlib import Path

import yaml

from intradp_ros.launching.arguments import share_dir
from intradp_ros.tools import bench_report

__all__ = ["CSV_COLUMNS", "config_file", "load_config", "write_params", "machine_info"]

CSV_COLUMNS = ["model", "bandwidth_mbps", "strategy", "round", "phase", "index", "image", "ok", "plan_spec",
               "plan_kind", "frame_plan", "plan_settled", "latency_ms", "agg_latency_ms", "predicted_ms",
               "robot_compute_ms", "edge_compute_ms", "cpu_robot_s", "cpu_client_s", "busy_core_s", "tx_bytes",
               "rx_bytes", "wire_bytes", "wall_s", "energy_j", "energy_idle_j", "energy_compute_j", "energy_radio_j",
               "n_results", "top"]


def config_file(name: str) -> Path:
    """config/<name> of the installed share directory, else of this checkout."""
    for base in (share_dir(), Path(__file__).resolve().parents[2]):
        if (base / "config" / name).is_file():
            return base / "config" / name
    raise FileNotFoundError(f"config/{name} not found")


def load_config(path: Path | None, a: argparse.Namespace) -> dict:
    """The bench's settings: ``path`` (default config/bench.yaml), its quick block with --quick, the options over it."""
    cfg = yaml.safe_load((path or config_file("bench.yaml")).read_text())
    if getattr(a, "robots", None):
        cfg.update(cfg.get("fleet", {}))
    if a.quick:
        cfg.update(cfg.get("quick", {}))
    for opt, keyname in (("model", "model"), ("warmup", "warmup"), ("frames", "frames"), ("input_size", "input_size"),
                         ("frame_timeout", "frame_timeout_s"), ("rounds", "rounds"), ("settle_max", "settle_max")):
        if getattr(a, opt) is not None:
            cfg[keyname] = getattr(a, opt)
    if a.bandwidths:
        cfg["bandwidths_mbps"] = [float(b) for b in a.bandwidths.split(",") if b]
    if a.strategies:
        cfg["strategies"] = [s for s in a.strategies.split(",") if s]
    if a.bandwidth_source:
        cfg["bandwidth_source"] = a.bandwidth_source
    if a.executor:
        cfg["executor"] = a.executor
    if a.edge_threads is not None:
        cfg["edge"]["threads"] = a.edge_threads
    if a.cpu_quota is not None:
        cfg["robot"]["cpu_quota_us"] = a.cpu_quota
    if a.cpu_period is not None:
        cfg["robot"]["cpu_period_us"] = a.cpu_period
    unknown = set(cfg["strategies"]) - set(bench_report.STRATEGIES)
    if unknown:
        raise SystemExit(f"unknown strategies {sorted(unknown)}; known: {', '.join(bench_report.STRATEGIES)}")
    return cfg


def write_params(name: str, path: Path, updates: dict[str, dict]) -> Path:
    """Write config/<name> to ``path`` with ``updates`` ({node: {parameter: value}}) merged into its node blocks."""
    base = yaml.safe_load(config_file(name).read_text())
    for node, params in updates.items():
        base.setdefault(f"/**/{node}", {}).setdefault("ros__parameters", {}).update(params)
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def machine_info() -> dict:
    """What run.json records about this machine and checkout."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    git = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[2]), "describe", "--always", "--dirty"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    return {"git": git, "cpu_model": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
