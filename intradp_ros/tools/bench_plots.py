"""The plots of a bench run: latency against bandwidth (measured, predicted and the physical limit), where each
strategy's time goes, and the energy estimate."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plots"]

COLORS = {"local": "tab:gray", "offload": "tab:blue", "best-cut": "tab:orange", "intra-dp": "tab:green"}


def plots(out: Path, stats, cfg, strategies_order, names, limit: dict | None = None) -> list[Path]:
    """Write the PNGs into ``out``; ``limit``: bandwidth -> the physical limit's ms (bench_limit), drawn as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = COLORS
    strategies = [st for st in strategies_order if any(k[1] == st and s.get("n") for k, s in stats.items())]
    paths = []
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for st in strategies:
        cells = sorted((bw, s) for (bw, s2), s in stats.items() if s2 == st and s.get("n"))
        x = [bw for bw, _ in cells]
        p50 = np.array([s["p50"] for _, s in cells])
        err = np.array([[s["p50"] - s["p5"] for _, s in cells], [s["p95"] - s["p50"] for _, s in cells]])
        ax.errorbar(x, p50, yerr=err, marker="o", capsize=3, color=colors[st], label=f"{names[st]} (p50, p5-p95)")
        ax.plot(x, [s["predicted"] for _, s in cells], ls="--", color=colors[st], alpha=0.6)
    if limit:
        xs = sorted(limit)
        ax.plot(xs, [limit[x] for x in xs], color="black", lw=1.5, ls=":", label="limit (no overheads)")
    ax.set_xscale("log")
    ax.set_xticks(sorted({k[0] for k in stats}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("link bandwidth, Mbit/s (tbf, each way)")
    ax.set_ylabel("end-to-end latency per frame, ms")
    ax.set_title(f"{cfg['model']}: measured (solid) vs predicted (dashed)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "latency_vs_bandwidth.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(strategies), figsize=(3.6 * len(strategies), 4.2), sharey=True, squeeze=False)
    for ax, st in zip(axes[0], strategies):
        cells = sorted((bw, s) for (bw, s2), s in stats.items() if s2 == st and s.get("n"))
        labels = [f"{bw:g}" for bw, _ in cells]
        robot = np.array([s["busy_s"] * 1e3 for _, s in cells])
        edge = np.array([s["edge_ms"] for _, s in cells])
        p50 = np.array([s["p50"] for _, s in cells])
        rest = np.maximum(p50 - robot - edge, 0)
        ax.bar(labels, robot, color="tab:red", label="robot busy (CPU s / cap)")
        ax.bar(labels, edge, bottom=robot, color="tab:purple", label="edge compute")
        ax.bar(labels, rest, bottom=robot + edge, color="tab:cyan", label="transfer + other")
        ax.plot(labels, p50, "k_", markersize=18, label="p50 latency")
        ax.set_title(names[st])
        ax.set_xlabel("Mbit/s")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("ms per frame (robot: mean busy; edge: median compute)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{cfg['model']}: where the time goes (robot and edge overlap under Intra-DP: the parts can exceed "
                 "the latency)", fontsize=10)
    fig.tight_layout()
    paths.append(out / "breakdown.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    width = 0.8 / max(1, len(strategies))
    bws = sorted({k[0] for k in stats})
    for i, st in enumerate(strategies):
        xs = np.arange(len(bws)) + i * width
        vals = [stats.get((bw, st), {}) for bw in bws]
        parts = [np.array([v.get(p, 0.0) for v in vals]) for p in ("e_idle", "e_compute", "e_radio")]
        ax.bar(xs, parts[0], width, color=colors[st], alpha=0.35)
        ax.bar(xs, parts[1], width, bottom=parts[0], color=colors[st], alpha=0.75)
        ax.bar(xs, parts[2], width, bottom=parts[0] + parts[1], color=colors[st], hatch="//", label=names[st])
    ax.set_xticks(np.arange(len(bws)) + width * (len(strategies) - 1) / 2, [f"{b:g}" for b in bws])
    ax.set_xlabel("Mbit/s")
    ax.set_ylabel("robot energy per frame, J (estimate)")
    ax.set_title("energy estimate: idle (light) + compute (dark) + radio (hatched)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(out / "energy.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
