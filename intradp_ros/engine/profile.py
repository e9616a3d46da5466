"""Per-operator latency profiles of one device: the data the cost model prices plans with.

A profile holds each op's whole-tensor latency on one device, the fixed cost of one operator call (what a
small tile pays regardless of its size), the codec costs, and each op output's compressed size, so the
planner can price any plan without running it. :mod:`intradp_ros.engine.profiler` measures them.
"""
from __future__ import annotations

import dataclasses
import json

__all__ = ["DeviceProfile", "PROFILE_VERSION"]

PROFILE_VERSION = 7     # of the JSON form: a cached profile of another version is measured again


@dataclasses.dataclass
class DeviceProfile:
    key: str                     # OpGraph.key
    device: str                  # "cpu", "cuda:0", ...
    threads: int
    op_ms: list[float]           # whole-tensor latency of each op, in graph order
    call_ms: float               # fixed cost of one operator call on a tile
    encode_ms_per_mb: dict[str, float]
    decode_ms_per_mb: dict[str, float]
    ratio: dict[str, list[float]]    # encoding -> per-op output bytes / raw bytes (lz4, zstd measured)
    output_bytes: dict[str, float]   # graph output -> payload bytes of the whole output after the output_fn
    scale: float = 1.0           # multiply compute times (emulating a slower device from a faster one)
    cpu_share: float = 1.0       # process CPU time / wall time while profiling: < 1 on a throttled CPU (cgroup
                                 # quota, a busy core), so host-side work (serialisation) costs cpu_ms / share
    op_fixed_ms: list[float] = dataclasses.field(default_factory=list)   # per-call cost of each op whatever its
                                 # rows (weights streamed, kernel launch): small tiles of deep layers pay it
    tile_scale: float = 1.0      # measured / modelled time of row tiles run as the executor runs them (buffers,
                                 # narrow/cat, small convolutions are less efficient): measured at start-up
    version: int = PROFILE_VERSION

    def compute_ms(self, k: int, rows: int, height: int) -> float:
        """Latency of computing ``rows`` of op k's ``height`` output rows in one call: a fixed part and a part
        proportional to the rows (the line through the op's measured whole and one-row-tile latencies)."""
        frac = rows / height if height else 1.0
        fixed = self.op_fixed_ms[k] if self.op_fixed_ms else 0.0
        return self.scale * self.tile_scale * (fixed + (self.op_ms[k] - fixed) * frac + self.call_ms)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "DeviceProfile":
        d = json.loads(text)
        if d.get("version") != PROFILE_VERSION:
            raise ValueError("profile written by another version")
        return cls(**d)

    def scaled(self, factor: float) -> "DeviceProfile":
        return dataclasses.replace(self, scale=self.scale * factor)
