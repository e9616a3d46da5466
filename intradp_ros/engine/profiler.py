"""Measures per-operator profiles (:class:`~intradp_ros.engine.profile.DeviceProfile`) where the operators will
run, cached on disk.

Profiles are keyed by the graph's hash (structure, weights, input size), the device and the thread count; a
cache hit skips profiling at start-up.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from .codec import decode, encode
from .device import synchronize
from .graph import OpGraph
from .plan import Plan, compile_plan
from .profile import DeviceProfile
from .rows import RowStreamer, Segment, compute_op_rows
from .search import split_points

__all__ = ["profile_graph", "load_or_profile", "default_cache_dir"]


def profile_graph(graph: OpGraph, x: torch.Tensor, repeats: int = 5, warmup: int = 2,
                  output_fn: Callable | None = None) -> DeviceProfile:
    """Measure every op of ``graph`` on x's device (median of ``repeats`` after ``warmup`` passes).

    The graph's weights must already be on that device.
    """
    dev = x.device
    times: list[list[float]] = [[] for _ in graph.ops]
    env: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for it in range(warmup + repeats):
            if it == warmup:
                wall0, cpu0 = time.perf_counter(), time.process_time()
            env = {graph.input_name: x}
            for op in graph.ops:
                synchronize(dev)
                t0 = time.perf_counter()
                env[op.name] = graph.run_op(op, env)
                synchronize(dev)
                if it >= warmup:
                    times[op.index].append((time.perf_counter() - t0) * 1e3)
        share = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
        # one operator call on a single row: the per-tile overhead
        small = torch.zeros(1, 8, 1, 8, device=dev)
        t_call = []
        for _ in range(50):
            synchronize(dev)
            t0 = time.perf_counter()
            torch.relu(small + 1.0)
            synchronize(dev)
            t_call.append((time.perf_counter() - t0) * 1e3)
    op_ms = [statistics.median(t) for t in times]
    # Op-by-op timing sets each op's share; whole passes set the level. On a throttled CPU (cgroup quota) an
    # op's time depends on where the throttling falls, so summing per-op medians can be far from a real pass.
    whole = statistics.median(_whole_forward_ms(graph, x) for _ in range(3))
    level = whole / max(sum(op_ms), 1e-9)
    fixed = [f * level for f in _fixed_costs(graph, env, op_ms, repeats)]
    op_ms = [t * level for t in op_ms]
    env = {k: v.cpu() for k, v in env.items()}
    enc_ms, dec_ms, ratio = _codec_costs(graph, env)
    out_bytes = {}
    for name in graph.outputs:
        t = env[name]
        y = output_fn(name, t, 0) if output_fn else t
        out_bytes[name] = float(y.numel() * 4)
    prof = DeviceProfile(graph.key, str(dev), torch.get_num_threads(), op_ms, statistics.median(t_call) * 2,
                         enc_ms, dec_ms, ratio, out_bytes, cpu_share=round(share, 3), op_fixed_ms=fixed)
    prof.tile_scale = round(_tile_scale(graph, x, prof), 3)
    return prof


def _fixed_costs(graph: OpGraph, env: dict[str, torch.Tensor], op_ms: list[float], repeats: int) -> list[float]:
    """Each local op timed on one output row: with its whole-tensor time, the intercept of its cost line."""
    fixed = []
    with torch.inference_mode():
        for op in graph.ops:
            h = op.height
            if not op.local or h <= 1:
                fixed.append(0.0)
                continue
            rows_of = lambda name, a, b: env[name].narrow(graph.value_row_axis(name), a, b - a)  # noqa: E731
            ts = []
            for _ in range(max(repeats, 3)):
                synchronize(env[op.name].device)
                t0 = time.perf_counter()
                compute_op_rows(graph, op, h // 2, h // 2 + 1, rows_of)
                synchronize(env[op.name].device)
                ts.append((time.perf_counter() - t0) * 1e3)
            one = statistics.median(ts)
            slope = max(op_ms[op.index] - one, 0.0) / (h - 1)
            fixed.append(round(max(one - slope, 0.0), 4))
    return fixed


def _tile_scale(graph: OpGraph, x: torch.Tensor, prof: DeviceProfile, tiles: int = 4) -> float:
    """Run the longest split segment from the input in ``tiles`` row tiles, as the executor does, and return
    measured / modelled time. Per-op one-row and whole timings miss what streaming adds (row buffers, halo
    narrowing, less efficient small convolutions); on YOLOv3-tiny that was 1.3-1.6x."""
    starts, ends = split_points(graph)
    if not starts or not ends.get(starts[0]):
        return 1.0
    start, end = starts[0], ends[starts[0]][-1]
    grid = Segment(graph, start, end).grid
    cp = compile_plan(graph, Plan("profile", *graph.input_shape[2:], start, end, grid, min(tiles, grid), 1))
    if cp.segment is None or not cp.robot_work:
        return 1.0
    env: dict[str, torch.Tensor] = {graph.input_name: x}
    ts = []
    with torch.inference_mode():
        for k in cp.robot_ops:
            env[graph.ops[k].name] = graph.run_op(graph.ops[k], env)
        for _ in range(3):
            streamer = RowStreamer(cp.segment)
            streamer.feed(cp.segment.input, env[cp.segment.input], 0)
            synchronize(x.device)
            t0 = time.perf_counter()
            for work in cp.robot_work:
                streamer.compute(work.targets)
            synchronize(x.device)
            ts.append((time.perf_counter() - t0) * 1e3)
    modelled = sum(prof.compute_ms(graph.index[name], hi - lo, graph.by_name[name].height)
                   for work in cp.robot_work for name, (lo, hi) in work.compute.items())
    return min(max(statistics.median(ts) / max(modelled, 1e-9), 0.5), 3.0)


def _whole_forward_ms(graph: OpGraph, x: torch.Tensor) -> float:
    """One warm forward pass, timed: a cheap check that a cached profile still describes this device."""
    with torch.inference_mode():
        graph.gm(x)
        synchronize(x.device)
        t0 = time.perf_counter()
        graph.gm(x)
        synchronize(x.device)
    return (time.perf_counter() - t0) * 1e3


def _codec_costs(graph: OpGraph, env: dict[str, torch.Tensor]):
    """ms per raw MB to encode and decode with each encoding (median of 3 after a warm-up: a single cold call
    priced u8 at 15x what the robot then spends), u8 on the network input, the only value sent as u8."""
    big = max((env[op.name] for op in graph.ops if op.row_axis is not None), key=lambda t: t.numel())
    enc_ms, dec_ms = {}, {}
    for e in ("raw", "fp16", "u8", "lz4", "zstd"):
        t = env[graph.input_name] if e == "u8" else big
        mb = t.numel() * 4 / 1e6
        te, td = [], []
        for _ in range(4):
            t0 = time.perf_counter()
            payload, dtype = encode(t, e)
            t1 = time.perf_counter()
            decode(payload, e, dtype, tuple(t.shape))
            te.append(t1 - t0)
            td.append(time.perf_counter() - t1)
        enc_ms[e], dec_ms[e] = statistics.median(te[1:]) * 1e3 / mb, statistics.median(td[1:]) * 1e3 / mb
    ratio = {"raw": [1.0] * len(graph.ops), "fp16": [0.5] * len(graph.ops)}
    for e in ("lz4", "zstd"):
        r = []
        for op in graph.ops:
            t = env[op.name]
            if t.numel() * 4 > 4096:
                # compress a slice: representative (same activation statistics) and cheap
                s = t.flatten()[: 1 << 18]
                r.append(len(encode(s, e)[0]) / (s.numel() * 4))
            else:
                r.append(1.0)
        ratio[e] = r
    return enc_ms, dec_ms, ratio


def default_cache_dir() -> Path:
    return Path(os.environ.get("INTRADP_CACHE", Path.home() / ".cache" / "intradp_ros")) / "profiles"


def load_or_profile(graph: OpGraph, x: torch.Tensor, cache_dir: Path | None = None,
                    output_fn: Callable | None = None, log: Callable[[str], None] = print) -> DeviceProfile:
    """The cached profile for (graph, x's device, threads), measuring and caching it on a miss."""
    device = str(x.device)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / f"{graph.key}-{device.replace(':', '')}-t{torch.get_num_threads()}.json"
    if path.exists():
        try:
            prof = DeviceProfile.from_json(path.read_text())
            now_ms = _whole_forward_ms(graph, x)
            cached_ms = sum(prof.op_ms)
            if 0.5 <= now_ms / cached_ms <= 2.0:
                log(f"profile cache hit: {path} (whole model {cached_ms:.1f} ms cached, {now_ms:.1f} ms now)")
                return prof
            log(f"stale profile {path}: whole model {cached_ms:.1f} ms cached but {now_ms:.1f} ms now (another "
                "load or clock than when it was measured); profiling again")
        except (ValueError, TypeError, KeyError, ZeroDivisionError) as e:
            log(f"ignoring unreadable profile {path}: {e}")
    t0 = time.perf_counter()
    prof = profile_graph(graph, x, output_fn=output_fn)
    log(f"profiled {len(graph.ops)} ops on {device} in {time.perf_counter() - t0:.1f} s "
        f"(whole model {sum(prof.op_ms):.1f} ms); cached at {path}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(prof.to_json())
        tmp.replace(path)
    except OSError as e:
        log(f"could not write the profile cache {path}: {e}")
    return prof
