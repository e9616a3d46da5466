"""How plan auto converges and stays put on a fixed link, from a bench run's frames.csv.

For each (bandwidth, strategy) block of consecutive frames: the frames until PlanStatus first said settled, and
the plan changes after that (the plan each frame ran, from its FrameTiming), per minute of the block's wall time
(closed loop: frames run back to back, so wall time is the sum of their wall_s). A soak on one link:

    ./intradp bench --strategies intra-dp --bandwidths 25 --rounds 1 --warmup 0 --settle-max 0 --frames 300 \\
        --bandwidth-source measured --out bench_results/soak
    python -m intradp_ros.tools.stability bench_results/soak
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
from pathlib import Path

__all__ = ["Stability", "stability", "main"]


@dataclasses.dataclass(frozen=True)
class Stability:
    mbps: str
    strategy: str
    frames: int
    settled_at: int | None          # index of the first frame with plan_settled (0-based), None if never
    settled_s: float | None         # wall time until then
    changes_after: list[tuple[float, str, str]]   # (s since settled, from plan, to plan)
    minutes_after: float
    plans: int                      # distinct plans run

    def line(self) -> str:
        if self.settled_at is None:
            return (f"{self.mbps} Mbit/s {self.strategy}: never settled in {self.frames} frames "
                    f"({self.plans} plans)")
        per_min = len(self.changes_after) / self.minutes_after if self.minutes_after > 0 else 0.0
        return (f"{self.mbps} Mbit/s {self.strategy}: settled at frame {self.settled_at + 1} "
                f"({self.settled_s:.1f} s), then {len(self.changes_after)} plan change(s) in "
                f"{self.minutes_after:.1f} min ({per_min:.2f}/min) over {self.frames - self.settled_at} frames; "
                f"{self.plans} plans in all")


def stability(rows: list[dict]) -> list[Stability]:
    out = []
    for (mbps, strategy), block in itertools.groupby(rows, key=lambda r: (r["bandwidth_mbps"], r["strategy"])):
        block = [r for r in block if r.get("ok") == "1"]
        if not block:
            continue
        t, times = 0.0, []
        for r in block:
            t += float(r["wall_s"] or 0.0)
            times.append(t)
        settled = next((i for i, r in enumerate(block) if r["plan_settled"] == "1"), None)
        changes = []
        if settled is not None:
            for i in range(settled + 1, len(block)):
                a, b = block[i - 1]["frame_plan"], block[i]["frame_plan"]
                if a and b and a != b:
                    changes.append((times[i] - times[settled], a, b))
        out.append(Stability(mbps, strategy, len(block), settled, times[settled] if settled is not None else None,
                             changes, (times[-1] - times[settled]) / 60.0 if settled is not None else 0.0,
                             len({r["frame_plan"] for r in block if r["frame_plan"]})))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a bench output folder (its frames.csv)")
    ap.add_argument("--strategy", default="intra-dp", help="only this strategy ('' = all)")
    a = ap.parse_args(argv)
    with open(a.run / "frames.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if not a.strategy or r["strategy"] == a.strategy]
    for s in stability(rows):
        print(s.line())
        for at, old, new in s.changes_after:
            print(f"  +{at:6.1f} s  {old.split('|', 1)[-1]} -> {new.split('|', 1)[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
