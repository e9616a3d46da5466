"""Results of `./intradp bench`: per-frame rows with the energy estimate, the Markdown summary, the PNG plots.

ROS-free (numpy, matplotlib with the Agg backend, and the engine for the physical limit), so a finished run can be
re-reported anywhere: ``./intradp bench --report-only bench_results/<run>``.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

from intradp_ros.engine.plan import Plan, PlanError
from intradp_ros.tools.bench_client import turns
from intradp_ros.tools.bench_plots import plots

__all__ = ["STRATEGIES", "LABELS", "PowerModel", "frame_row", "summarize", "report", "plan_kind"]

STRATEGIES = ("local", "offload", "best-cut", "intra-dp")
LABELS = {"local": "all-local", "offload": "all-offload", "best-cut": "best layer-wise cut", "intra-dp": "Intra-DP"}
BASELINES = ("local", "offload", "best-cut")
TOLERANCE = 0.20          # measured p50 within 20 % of predicted
CI_RESAMPLES = 2000       # bootstrap resamples for the 95 % interval of Intra-DP's p50 / the best baseline's p50
CSV_NUMERIC = ("latency_ms", "cpu_robot_s", "cpu_client_s", "busy_core_s", "tx_bytes", "rx_bytes", "energy_j",
               "energy_idle_j", "energy_compute_j", "energy_radio_j", "predicted_ms", "robot_compute_ms",
               "edge_compute_ms", "agg_latency_ms")


@dataclasses.dataclass(frozen=True)
class PowerModel:
    """Robot energy estimate, see config/bench.yaml (power:) for the formula and the assumptions."""
    idle_w: float
    compute_w_per_core: float
    radio_tx_w: float
    radio_rx_w: float
    cpu_scale: float          # host CPU s -> robot-core busy s

    @classmethod
    def from_config(cls, p: dict, cpu_fraction: float) -> "PowerModel":
        scale = 1.0 / cpu_fraction if p.get("scale_cpu_by_cap", True) and cpu_fraction > 0 else 1.0
        return cls(float(p["idle_w"]), float(p["compute_w_per_core"]), float(p["radio_tx_w"]),
                   float(p.get("radio_rx_w", 0.0)), scale)

    def energy(self, latency_s: float, cpu_s: float, tx_bytes: int, rx_bytes: int, mbps: float) -> dict[str, float]:
        busy = cpu_s * self.cpu_scale
        bps = mbps * 1e6
        parts = {"energy_idle_j": self.idle_w * latency_s, "energy_compute_j": self.compute_w_per_core * busy,
                 "energy_radio_j": (self.radio_tx_w * tx_bytes + self.radio_rx_w * rx_bytes) * 8 / bps}
        return {"busy_core_s": busy, "energy_j": sum(parts.values()), **parts}


def plan_kind(spec: str, n_ops: int | None) -> str:
    try:
        p = Plan.parse(spec)
    except PlanError:
        return ""
    if p.is_split:
        return "intra-dp"
    if p.seg_start == 0:
        return "offload"
    if n_ops is not None and p.seg_start >= n_ops:
        return "local"
    return "cut" if n_ops is not None else "cut/local"


def frame_row(model: str, ev: dict, power: PowerModel, n_ops: int | None) -> dict:
    """A CSV row from the client's frame event."""
    row = {k: ev.get(k) for k in ("strategy", "round", "phase", "index", "image", "plan_spec", "frame_plan",
                                  "plan_settled", "latency_ms", "agg_latency_ms", "predicted_ms", "robot_compute_ms",
                                  "edge_compute_ms", "cpu_client_s", "tx_bytes", "rx_bytes", "wall_s", "n_results",
                                  "top")}
    row.update(model=model, bandwidth_mbps=ev["mbps"], ok=int(bool(ev["ok"])), cpu_robot_s=ev["cpu_nodes_s"],
               wire_bytes=ev["tx_bytes"] + ev["rx_bytes"],
               plan_kind=plan_kind(ev["frame_plan"] or ev["plan_spec"], n_ops))
    lat = ev["latency_ms"] if ev["latency_ms"] is not None else ev["wall_s"] * 1e3
    row.update(power.energy(lat / 1e3, ev["cpu_nodes_s"], ev["tx_bytes"], ev["rx_bytes"], ev["mbps"]))
    return row


def number(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def load_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def summarize(rows: list[dict]) -> dict[tuple[float, str], dict]:
    """(bandwidth, strategy) -> statistics of the measured frames."""
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in rows:
        if r["phase"] == "measure":
            groups.setdefault((number(r["bandwidth_mbps"]), r["strategy"]), []).append(r)
    means = {"cpu_s": "cpu_robot_s", "cpu_client_s": "cpu_client_s", "busy_s": "busy_core_s", "tx": "tx_bytes",
             "rx": "rx_bytes", "energy": "energy_j", "e_idle": "energy_idle_j", "e_compute": "energy_compute_j",
             "e_radio": "energy_radio_j"}
    medians = {"predicted": "predicted_ms", "robot_ms": "robot_compute_ms", "edge_ms": "edge_compute_ms",
               "agg_p50": "agg_latency_ms"}
    out = {}
    for key, rs in sorted(groups.items(), key=lambda kv: (kv[0][0], STRATEGIES.index(kv[0][1]))):
        ok = [r for r in rs if r["ok"] == "1" and not math.isnan(number(r["latency_ms"]))]
        cols = {name: np.array([number(r[name]) for r in ok], dtype=float) for name in CSV_NUMERIC}
        lat = cols["latency_ms"]
        used = collections.Counter((r["frame_plan"] or r["plan_spec"], r["plan_kind"]) for r in ok)
        (spec, kind), _ = used.most_common(1)[0] if used else ((rs[-1]["plan_spec"], rs[-1]["plan_kind"]), 0)
        s = {"n": len(ok), "lost": len(rs) - len(ok), "plan_spec": spec, "kind": kind,
             "plans": kind if len(used) < 2 else "; ".join(
                 f"{n} x {k} `{p.split('|', 1)[1]}`" for (p, k), n in used.most_common())}
        if ok:
            s.update({k: float(np.percentile(lat, q)) for k, q in (("p5", 5), ("p50", 50), ("p95", 95))})
            s.update({k: float(cols[c].mean()) for k, c in means.items()})
            s.update({k: float(np.median(cols[c])) for k, c in medians.items()})
            s["mean"] = float(lat.mean())
            s["latencies"] = lat
            s["ratio"] = s["p50"] / s["predicted"] if s["predicted"] > 0 else math.nan
        out[key] = s
    return out


def _kb(x: float) -> str:
    return f"{x / 1e3:,.0f} kB" if x >= 1e3 else f"{x:.0f} B"


def _header(cfg: dict, meta: dict) -> list[str]:
    rounds = turns(cfg["strategies"], int(cfg["frames"]), int(cfg.get("rounds", 1)), 0, 0)[-1][0] + 1
    m, tb, r, e, link, pw = (meta.get("machine", {}), meta.get("testbed", {}), cfg["robot"], cfg["edge"], cfg["link"],
                             cfg["power"])
    return [
        f"# Intra-DP benchmark: {cfg['model']} on an emulated robot-edge link", "",
        f"- command: `{meta.get('command', '')}`; {meta.get('started', '')} .. {meta.get('finished', '')}",
        f"- machine: {m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, kernel {m.get('kernel', '?')}; load "
        f"average at start {' '.join(m.get('loadavg', []))}, at end {' '.join(meta.get('loadavg_end', []))}",
        f"- robot: robot_node + aggregator_node + bench client in netns `{tb.get('netns', {}).get('robot', '?')}`, "
        f"cgroup v1 CPU quota {r['cpu_quota_us']}/{r['cpu_period_us']} us (= {tb.get('cpu_fraction', 0):.2f} core), "
        f"torch threads {r['threads']}; edge: edge_node, no CPU cap, torch threads {e['threads'] or 'default'}, "
        f"device {e['device']}; rclpy executor of the nodes: {cfg.get('executor', 'multi')}",
        f"- link: veth, tbf both ways at each rate (burst {link['burst_ms']} ms of line rate, >= "
        f"{link['min_burst_bytes']} B; queue {link['queue_bytes'] >> 20} MiB), MTU {link['mtu']}; "
        "Fast DDS: edge UDPv4 only (config/fastdds_udp.xml), robot processes shared memory among themselves + "
        "UDPv4 to the edge (config/fastdds_robot_shm.xml)",
        f"- {cfg['warmup']} warm-up + {cfg['frames']} measured frames per cell, closed loop, "
        + (f"and after each warm-up up to {cfg['settle_max']} more while robot_node's plan is not settled "
           "(PlanStatus.settled; fixed plans are), "
           if cfg.get("settle_max") else "")
        + (f"in {rounds} rounds per bandwidth (the strategies take turns, {cfg['frames'] // rounds}-"
           f"{-(-cfg['frames'] // rounds)} measured frames each after {cfg.get('round_warmup', 0)} warm-up frames, the "
           "order changed every round so that each follows every other equally often); " if rounds > 1
           else "each cell in one block; ")
        + "latency = camera stamp -> "
        "result received by the client in the robot namespace; predicted = PlanStatus.predicted_ms of the plan in "
        "force",
        "- the planner's bandwidth: " + ("the shaped rate, told to robot_node (`bandwidth_source: parameter`): an "
                                         "ORACLE, not how the product runs" if cfg.get("bandwidth_source") ==
                                         "parameter" else "what robot_node measures (`bandwidth_source: measured`),"
                                         " as deployed"),
        f"- energy: an ESTIMATE, power model of config/bench.yaml: idle {pw['idle_w']} W x latency + "
        f"{pw['compute_w_per_core']} W x robot-core busy s (CPU s / cap) + radio {pw['radio_tx_w']} W x uplink airtime",
        ""]


def _cell_line(bw: float, st: str, s: dict) -> str:
    if not s["n"]:
        return f"| {bw:g} | {LABELS[st]} | {s['kind']} | 0 ({s['lost']}) | - | - | - | - | - | - | - |"
    return (f"| {bw:g} | {LABELS[st]} | {s['plans']} | {s['n']} ({s['lost']}) | {s['p50']:.1f} | {s['p95']:.1f} | "
            f"{s['predicted']:.1f} | {s['ratio']:.2f} | {s['cpu_s']:.3f} | {_kb(s['tx'])} / {_kb(s['rx'])} | "
            f"{s['energy']:.2f} |")


def report(out: Path, cfg: dict, meta: dict) -> str:
    """Write summary.md and the plots into ``out``; return the text printed at the end of a run."""
    rows = load_rows(out / "frames.csv")
    stats = summarize(rows)
    table = ["| Mbit/s | strategy | plan | frames (lost) | p50 ms | p95 ms | predicted ms | measured/predicted | "
             "robot CPU s/frame | bytes/frame up / down | energy J/frame |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    table += [_cell_line(bw, st, s) for (bw, st), s in stats.items()]
    lim, why = _limits(out, cfg)
    verdict = ["", "| Mbit/s | best baseline (p50 ms) | Intra-DP p50 ms | Intra-DP / best (95% CI) | "
               "Intra-DP <= best | Intra-DP / best cut | limit ms | Intra-DP / limit | Intra-DP plan | "
               "energy J/frame Intra-DP vs all-local |",
               "|---:|---|---:|---:|---|---:|---:|---:|---|---|"]
    per_bw, cut_ratios, energy = [], [], []
    for bw in sorted({k[0] for k in stats}):
        base = {st: stats[(bw, st)] for st in BASELINES if stats.get((bw, st), {}).get("n")}
        intra = stats.get((bw, "intra-dp"), {})
        if not base or not intra.get("n"):
            continue
        best_name = min(base, key=lambda k, b=base: b[k]["p50"])
        best = base[best_name]["p50"]
        ok, ci = intra["p50"] <= best, ratio_interval(intra["latencies"], base[best_name]["latencies"])
        per_bw.append((bw, ok, intra["p50"] / best, best_name, ci))
        cut, local = base.get("best-cut"), base.get("local")
        cut_txt = f"{intra['p50'] / cut['p50']:.2f}" if cut else "-"
        if cut:
            cut_ratios.append((intra["p50"] / cut["p50"], bw))
        e_txt = "-"
        if local:
            e_txt = f"{intra['energy']:.2f} vs {local['energy']:.2f} ({intra['energy'] / local['energy']:.2f}x)"
            energy.append(f"{bw:g} Mbit/s {e_txt}")
        verdict.append(f"| {bw:g} | {LABELS[best_name]} ({best:.1f}) | {intra['p50']:.1f} | "
                       f"{intra['p50'] / best:.2f} ({ci[0]:.2f}-{ci[1]:.2f}) | {verdict_text(ok, ci)} | "
                       f"{cut_txt} | "
                       + (f"{lim[bw].latency_ms:.1f} | {intra['p50'] / lim[bw].latency_ms:.2f} | " if bw in lim
                          else "- | - | ")
                       + f"{intra['kind']} `{intra['plan_spec']}` | {e_txt} |")
    final = []
    if per_bw:
        final.append("Intra-DP p50 <= best baseline p50: " + "; ".join(
            f"{bw:g} Mbit/s {verdict_text(ok, ci)} ({r:.2f}x {LABELS[n]})" for bw, ok, r, n, ci in per_bw))
    if cut_ratios:
        r, bw = min(cut_ratios)
        final.append(f"best ratio Intra-DP / best layer-wise cut (p50): {r:.2f} at {bw:g} Mbit/s")
    off = [(bw, st, s["ratio"]) for (bw, st), s in stats.items() if s.get("n") and abs(s["ratio"] - 1) > TOLERANCE]
    n_cells = sum(1 for s in stats.values() if s.get("n"))
    text = f"{n_cells - len(off)}/{n_cells} cells within"
    if off:
        text += "; off: " + ", ".join(f"{LABELS[st]} @ {bw:g} = {r:.2f}x" for bw, st, r in off)
    final.append(f"measured p50 within {TOLERANCE:.0%} of predicted for every strategy: {'NO' if off else 'yes'} "
                 f"({text})")
    if energy:
        final.append("robot energy per frame (estimate, J), Intra-DP vs all-local: " + "; ".join(energy))
    veth = _veth_check(stats, cfg)
    if veth:
        final.append(veth)
    other = collections.Counter(r["strategy"] for r in rows if r["phase"] == "measure" and r["ok"] == "1"
                                and r["frame_plan"] != r["plan_spec"])
    if other:
        final.append("measured frames computed under another plan than the one set (robot_node re-planned or its "
                     "measured-latency guard switched during the run): "
                     + ", ".join(f"{LABELS[k]} {n}" for k, n in other.items()))
    settling = _settling(rows)
    if settling:
        final.append("frames beyond the warm-up until robot_node's plan was settled (PlanStatus.settled: plan auto "
                     "measuring its candidates on the link; not in the table): " + "; ".join(settling))
    lost = sum(s["lost"] for s in stats.values())
    if lost:
        final.append(f"frames lost (no result within {cfg['frame_timeout_s']:.0f} s): {lost}")
    drops = _tbf_drops(meta.get("tbf", []))
    final.append("tbf drops: " + (", ".join(f"{LABELS[st]} @ {bw:g}: {n}" for (bw, st), n in drops.items())
                                  if drops else "none (the queue paced every burst)"))
    if lim:
        final.append("physical limit (bench_limit: the best plan priced with no per-message, per-call, per-frame, "
                     "serialisation or codec cost, from this run's profiles and the shaped rate), measured p50 / "
                     "limit: " + "; ".join(
                         f"{bw:g} Mbit/s {lim[bw].latency_ms:.1f} ms ({lim[bw].kind}): " + ", ".join(
                             f"{LABELS[st]} {stats[(bw, st)]['p50'] / lim[bw].latency_ms:.2f}"
                             for st in STRATEGIES if stats.get((bw, st), {}).get("n"))
                         for bw in sorted(lim) if any(k[0] == bw for k in stats)))
    else:
        final.append(f"physical limit: not computed ({why})")
    pngs = plots(out, stats, cfg, STRATEGIES, LABELS, {bw: x.latency_ms for bw, x in lim.items()})
    md = _header(cfg, meta) + table + verdict + [""] + [f"- {f}" for f in final] + [""]
    md += [f"![{p.stem}]({p.name})" for p in pngs]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    return "\n".join(table + verdict + [""] + final)


def _limits(out: Path, cfg: dict):
    """(bandwidth -> Limit, "") or ({}, why not)."""
    try:
        from intradp_ros.tools.bench_limit import limits
        return limits(out, cfg), ""
    except (OSError, ValueError) as e:
        return {}, str(e)


def _settling(rows: list[dict]) -> list[str]:
    """Per (bandwidth, strategy) with settle frames: how many, their p50, the plans they ran."""
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in rows:
        if r["phase"] == "settle":
            groups.setdefault((number(r["bandwidth_mbps"]), r["strategy"]), []).append(r)
    out = []
    for (bw, st), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], STRATEGIES.index(kv[0][1]))):
        lat = [number(r["latency_ms"]) for r in rs if r["ok"] == "1"]
        plans = len({r["frame_plan"] for r in rs})
        out.append(f"{LABELS[st]} @ {bw:g} Mbit/s {len(rs)} frames"
                   + (f" (p50 {np.median(lat):.1f} ms, {plans} plan{'s' if plans > 1 else ''})" if lat else ""))
    return out


def ratio_interval(a: np.ndarray, b: np.ndarray, resamples: int = CI_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of median(a) / median(b), frames resampled with replacement in each cell: how far
    the ratio of two cells' p50s moves from sampling alone (frames of one plan spread by +-20 % on the bench)."""
    rng = np.random.default_rng(seed)
    ma = np.median(rng.choice(a, (resamples, len(a))), axis=1)
    mb = np.median(rng.choice(b, (resamples, len(b))), axis=1)
    lo, hi = np.percentile(ma / mb, [2.5, 97.5])
    return float(lo), float(hi)


def verdict_text(ok: bool, ci: tuple[float, float]) -> str:
    """yes/NO, strictly; a NO whose 95 % interval reaches 1 is marked as within sampling noise (then the frames
    cannot tell Intra-DP from the best baseline: typically it ran that baseline's own plan)."""
    return "yes" if ok else (f"NO (within noise: 95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci[0] <= 1.0 else "NO")


def _tbf_drops(marks: list[dict]) -> dict[tuple[float, str], int]:
    """(bandwidth, strategy) -> packets tbf dropped on either veth end during that strategy's turns."""
    start = {(t["mbps"], t["strategy"], t.get("round", 0)): t for t in marks if t.get("phase") == "start"}
    out: dict[tuple[float, str], int] = {}
    for t in marks:
        s = start.get((t["mbps"], t["strategy"], t.get("round", 0)))
        if t.get("phase") == "end" and s:
            n = sum(t.get(side, {}).get("drops", 0) - s.get(side, {}).get("drops", 0) for side in ("robot", "edge"))
            if n:
                out[(t["mbps"], t["strategy"])] = out.get((t["mbps"], t["strategy"]), 0) + n
    return out


def _veth_check(stats, cfg) -> str:
    """All-offload must move at least the u8 input tensor per frame over the robot's veth."""
    from intradp_ros.models import get_spec
    size = int(cfg.get("input_size") or 0) or get_spec(cfg["model"]).input_size
    need = 3 * size * size
    cells = [(bw, s["tx"]) for (bw, st), s in stats.items() if st == "offload" and s.get("n")]
    if not cells:
        return ""
    ok = all(tx >= need for _, tx in cells)
    local = [s["tx"] + s["rx"] for (bw, st), s in stats.items() if st == "local" and s.get("n")]
    lo, hi = min(tx for _, tx in cells) / 1e3, max(tx for _, tx in cells) / 1e3
    return (f"tiles crossed the shaped veth: {'yes' if ok else 'NO'} (all-offload: the robot's veth sent "
            f"{lo:,.0f}-{hi:,.0f} kB/frame, the u8 input tensor is {need / 1e3:,.0f} kB; all-local frames moved "
            f"{np.mean(local) / 1e3 if local else 0:,.1f} kB/frame: DDS heartbeats and acks)")
