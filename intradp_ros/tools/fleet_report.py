"""The fleet benchmark's summary (fleet_summary.md) and plot (fleet_p50.png) from frames.csv and edge.csv of a
:mod:`intradp_ros.tools.fleet_bench` run: per bandwidth, fleet size and strategy the latency over all robots' measured
frames and each robot's own p50, the robots' CPU, and the edge's utilisation and frames/s; then Intra-DP against
the best baseline and against all-offload at each fleet size."""
from __future__ import annotations

import collections
import math
from pathlib import Path

import numpy as np

from intradp_ros.tools.bench_report import (BASELINES, LABELS, STRATEGIES, load_rows, number, ratio_interval,
                                            verdict_text)

__all__ = ["summarize", "report"]

OFFLOAD_TARGET = 0.8        # the bar: Intra-DP at the largest fleet at most 0.8x all-offload


def summarize(rows: list[dict], edge_rows: list[dict]) -> dict[tuple[float, int, str], dict]:
    """(bandwidth, fleet size, strategy) -> statistics of the measured frames of every robot, and the edge's load."""
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in rows:
        if r["phase"] == "measure":
            groups[(number(r["bandwidth_mbps"]), int(r["robots"]), r["strategy"])].append(r)
    edge: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in edge_rows:
        edge[(number(r["bandwidth_mbps"]), int(r["robots"]), r["strategy"])].append(r)
    out = {}
    for key in sorted(groups, key=lambda k: (k[0], k[1], STRATEGIES.index(k[2]))):
        rs = groups[key]
        ok = [r for r in rs if r["ok"] == "1" and not math.isnan(number(r["latency_ms"]))]
        lat = np.array([number(r["latency_ms"]) for r in ok])
        per_robot = collections.defaultdict(list)
        for r in ok:
            per_robot[int(r["robot"])].append(number(r["latency_ms"]))
        kinds = collections.Counter(r["plan_kind"] for r in ok)
        s = {"n": len(ok), "lost": len(rs) - len(ok), "latencies": lat,
             "robot_p50": {k: float(np.median(v)) for k, v in sorted(per_robot.items())},
             "kinds": ", ".join(f"{n} x {k}" for k, n in kinds.most_common())}
        if ok:
            s.update(p50=float(np.median(lat)), p95=float(np.percentile(lat, 95)),
                     cpu_s=float(np.mean([number(r["cpu_robot_s"]) for r in ok])))
        e = edge.get(key, [])
        spans = np.array([number(r["span_s"]) for r in e])
        if len(e) and spans.sum() > 0:
            s.update(busy=float(np.average([number(r["busy_fraction"]) for r in e], weights=spans)),
                     fps=float(np.average([number(r["frames_per_s"]) for r in e], weights=spans)))
        out[key] = s
    return out


def _header(cfg: dict, meta: dict) -> list[str]:
    m, r, e = meta.get("machine", {}), cfg["robot"], cfg["edge"]
    return [
        f"# Fleet benchmark: {cfg['model']}, robots {', '.join(map(str, meta.get('robots', [])))} on ONE edge_node", "",
        f"- command: `{meta.get('command', '')}`; {meta.get('started', '')} .. {meta.get('finished', '')}",
        f"- machine: {m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, kernel {m.get('kernel', '?')}",
        f"- each robot: its own netns, veth (tbf both ways at the rate) and CPU cap {r['cpu_quota_us']}/"
        f"{r['cpu_period_us']} us for its robot_node + aggregator_node + bench client (ROS namespace /robotK); "
        f"one edge_node, no CPU cap, torch threads {e['threads'] or 'default'}, device {e['device']}"
        + ("; the edge pinned to core 0, every robot to the other cores (`pin_cpus`)" if cfg.get("pin_cpus") else ""),
        f"- per fleet size N the first N robots run each strategy at once: {cfg['warmup']} warm-up + "
        f"{cfg['frames']} measured frames per robot and turn, closed loop, in {cfg.get('rounds', 1)} round(s); a "
        "robot done measuring goes on unmeasured until all N are, so every measured frame met the whole fleet; the "
        "baselines are the plans robot_node decided for an idle edge",
        "- the planner's bandwidth: " + ("the shaped rate (`bandwidth_source: parameter`): an ORACLE"
                                         if cfg.get("bandwidth_source") == "parameter" else
                                         "what robot_node measures (`bandwidth_source: measured`), as deployed"),
        "- edge utilisation = mean EdgeStatus.busy_fraction (its compute thread) over robot 1's measured frames; "
        "frames/s = EdgeStatus.frames_done over the same span", ""]


def report(out: Path, cfg: dict, meta: dict) -> str:
    """Write fleet_summary.md and fleet_p50.png into ``out``; return the summary's tables."""
    edge_path = out / "edge.csv"
    edge_rows = load_rows(edge_path) if edge_path.exists() else []
    stats = summarize(load_rows(out / "frames.csv"), edge_rows)
    cells = ["| Mbit/s | robots | strategy | plans | frames (lost) | p50 ms | p95 ms | each robot's p50 ms | "
             "robot CPU s/frame | edge utilisation | edge frames/s |",
             "|---:|---:|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for (bw, n, st), s in stats.items():
        if not s["n"]:
            cells.append(f"| {bw:g} | {n} | {LABELS[st]} | - | 0 ({s['lost']}) | - | - | - | - | - | - |")
            continue
        each = ", ".join(f"{v:.0f}" for v in s["robot_p50"].values())
        busy = f"{s['busy']:.2f}" if "busy" in s else "-"
        fps = f"{s['fps']:.2f}" if "fps" in s else "-"
        cells.append(f"| {bw:g} | {n} | {LABELS[st]} | {s['kinds']} | {s['n']} ({s['lost']}) | {s['p50']:.1f} | "
                     f"{s['p95']:.1f} | {each} | {s['cpu_s']:.3f} | {busy} | {fps} |")
    table = ["| Mbit/s | robots | best baseline (p50 ms) | Intra-DP p50 ms | Intra-DP / best (95% CI) | "
               "Intra-DP <= best | Intra-DP / all-offload (95% CI) | worst robot's Intra-DP p50 / best |",
               "|---:|---:|---|---:|---:|---|---:|---:|"]
    largest = max((k[1] for k in stats), default=0)
    for bw, n in sorted({(k[0], k[1]) for k in stats}):
        idp = stats.get((bw, n, "intra-dp"))
        base = [(stats[(bw, n, b)]["p50"], b) for b in BASELINES if stats.get((bw, n, b), {}).get("n")]
        if not idp or not idp.get("n") or not base:
            continue
        best_p50, best = min(base)
        ci = ratio_interval(idp["latencies"], stats[(bw, n, best)]["latencies"])
        r = idp["p50"] / best_p50
        off = stats.get((bw, n, "offload"), {})
        if off.get("n"):
            oci = ratio_interval(idp["latencies"], off["latencies"])
            ro = idp["p50"] / off["p50"]
            target = f" ({'meets' if ro <= OFFLOAD_TARGET else 'MISSES'} <= {OFFLOAD_TARGET})" if n == largest else ""
            off_text = f"{ro:.2f} ({oci[0]:.2f}-{oci[1]:.2f}){target}"
        else:
            off_text = "-"
        worst = max(idp["robot_p50"].values()) / best_p50
        table.append(f"| {bw:g} | {n} | {LABELS[best]} ({best_p50:.1f}) | {idp['p50']:.1f} | {r:.2f} "
                       f"({ci[0]:.2f}-{ci[1]:.2f}) | {verdict_text(r <= 1.0, ci)} | {off_text} | {worst:.2f} |")
    text = "\n".join([*cells, "", *table])
    plot = _plot(out, stats, cfg)
    (out / "fleet_summary.md").write_text("\n".join([*_header(cfg, meta), text, "",
                                                     f"![p50 against fleet size]({plot.name})" if plot else "", ""]))
    return text


def _plot(out: Path, stats, cfg) -> Path | None:
    """p50 against the number of robots, a line per strategy (a panel per bandwidth); bars: the robots' p50s."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from intradp_ros.tools.bench_plots import COLORS

    bws = sorted({k[0] for k, s in stats.items() if s.get("n")})
    if not bws:
        return None
    fig, axes = plt.subplots(1, len(bws), figsize=(6.5 * len(bws), 4.5), squeeze=False)
    for ax, bw in zip(axes[0], bws):
        for st in STRATEGIES:
            pts = sorted((n, s) for (b, n, s2), s in stats.items() if b == bw and s2 == st and s.get("n"))
            if not pts:
                continue
            xs, ys = [n for n, _ in pts], np.array([s["p50"] for _, s in pts])
            lo = ys - np.array([min(s["robot_p50"].values()) for _, s in pts])
            hi = np.array([max(s["robot_p50"].values()) for _, s in pts]) - ys
            ax.errorbar(xs, ys, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], marker="o", capsize=3,
                        color=COLORS[st], label=LABELS[st])
        ax.set_xticks(sorted({k[1] for k in stats}))
        ax.set_xlabel("robots sharing one edge_node")
        ax.set_ylabel("end-to-end latency per frame, p50 ms (bars: each robot's p50)")
        ax.set_title(f"{cfg['model']} @ {bw:g} Mbit/s per robot")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = out / "fleet_p50.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

