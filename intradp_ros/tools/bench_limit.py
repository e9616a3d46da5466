"""The physical limit of a bench cell: how fast any plan could be on these devices and this link.

For each shaped rate, the best plan (all-local, all-offload, every cut and split the search reaches) priced by
the cost model with everything that is not compute or wire time set to zero: no per-message, per-call or
per-frame costs, no serialisation, encoding or decoding, no latency, and the measured compression ratios of lz4
and zstd for free. The compute comes from the run's own measured profiles (the CPU-capped robot's and the
edge's, in ``<run>/profiles``), the wire time from the shaped rate. The replay already overlaps transfer with
compute per chunk and tile, so the limit is a latency no implementation of these plans beats on this testbed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = ["Limit", "limits"]


@dataclasses.dataclass(frozen=True)
class Limit:
    bandwidth_mbps: float
    latency_ms: float
    plan: str          # the plan text that reaches it
    kind: str          # local | offload | cut | intra-dp


def _ideal(p):
    """A profile with only compute left: no per-call or codec costs, tiles as efficient as whole ops."""
    zero = {k: 0.0 for k in p.encode_ms_per_mb}
    return dataclasses.replace(p, call_ms=0.0, encode_ms_per_mb=zero, decode_ms_per_mb=dict(zero), tile_scale=1.0)


def _profile(folder: Path, key: str):
    from intradp_ros.engine.profile import DeviceProfile
    for path in sorted(folder.glob(f"{key}-*.json")):
        return DeviceProfile.from_json(path.read_text())
    raise FileNotFoundError(f"no profile {key}-*.json in {folder}")


def limits(run: Path, cfg: dict) -> dict[float, Limit]:
    """Bandwidth -> the limit, from the profiles robot_node and edge_node cached in ``run/profiles``."""
    from intradp_ros.engine.cost import LinkModel
    from intradp_ros.engine.search import Problem, SearchOptions, choose
    from intradp_ros.runtime import ModelConfig, ModelRuntime
    m = ModelRuntime(ModelConfig(model=cfg["model"], input_size=int(cfg.get("input_size") or 0)))
    g = m.graph
    robot_dirs = sorted((run / "profiles").glob("robot-*"))
    if not robot_dirs:
        raise FileNotFoundError(f"no robot profile in {run / 'profiles'}")
    robot, edge = _ideal(_profile(robot_dirs[0], g.key)), _ideal(_profile(run / "profiles" / "edge", g.key))
    options = SearchOptions(encodings=("raw", "lz4", "zstd"), min_split_gain=0.0)
    out = {}
    for bw in cfg["bandwidths_mbps"]:
        link = LinkModel(float(bw), latency_ms=0.0, send_ms_per_mb=0.0, msg_ms=0.0, local_ms=0.0)
        best = choose(Problem(g, cfg["model"], robot, edge, link), options).chosen
        out[float(bw)] = Limit(float(bw), best.latency_ms, best.plan.spec(), best.plan.kind(len(g.ops)))
    return out
