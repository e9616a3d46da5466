"""ROS-free runtimes behind the three nodes: parameters (a config dataclass) in, engine calls out.

- :class:`ModelRuntime`: the model, its traced graph at the input size, pre-processing and the task (how
  outputs become detections or a classification). Shared by all sides.
- :class:`RobotRuntime`: own profile, the edge's profile, the planner, and the robot's share of each frame.
- :class:`EdgeRuntime`: the edge's share as packets arrive.
- :class:`AggregatorRuntime`: reassembly and the task's final step (NMS / top-k).

Each node is a thin adapter around one of these, so the whole pipeline is testable without ROS.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .engine.executor import Assembler, EdgeWorker, FrameOutputs, Packet, RobotWorker
from .engine.graph import OpGraph, capture
from .engine.guard import PlanGuard
from .engine.link import BandwidthEstimate
from .engine.plan import Plan, PlanError, compile_plan
from .engine.planner import (Decision, LinkModel, Prediction, choose, edge_compute_ms, family, predict,
                             robot_compute_ms, with_split_extra)
from .engine.profiler import DeviceProfile, load_or_profile
from .models import build_model, get_spec
from .tasks import Task, make_task
from .vision.preprocess import letterbox
from .vision.samples import load_sample

__all__ = ["ModelConfig", "ModelRuntime", "RobotConfig", "RobotRuntime", "EdgeRuntime", "AggregatorRuntime",
           "parse_plan_choice"]

Log = Callable[[str], None]
DEFAULT_MSG_CPU_MS = 1.0           # sender CPU per message until measured (rclpy + Fast DDS, a few-kB message)
DEFAULT_SEND_CPU_MS_PER_MB = 1.0   # sender CPU per MB until measured (serialisation, UDP fragments)


@dataclasses.dataclass
class ModelConfig:
    model: str = "yolov3_tiny"
    weights: str = "auto"          # detector weights: "auto" (installed package) or a path; "" = random init
    input_size: int = 0            # 0 = the model's default; else a multiple of its size_multiple
    device: str = "cpu"
    threads: int = 0               # torch intra-op threads, 0 = leave torch's default


def resolve_device(device: str) -> str:
    if device in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class ModelRuntime:
    """A model traced at its input size, with its pre-processing and output task."""

    def __init__(self, cfg: ModelConfig, load_weights: bool = True):
        spec = get_spec(cfg.model)
        size = cfg.input_size or spec.input_size
        if size <= 0 or size % spec.size_multiple:
            raise ValueError(f"input_size {size} must be a positive multiple of {spec.size_multiple} for {spec.name}")
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.spec, self.size = cfg, spec, size
        self.device = resolve_device(cfg.device)
        if self.device.startswith("cuda"):
            # full fp32 on the GPU: with TF32 (PyTorch's default for cuDNN convolutions) a row tile and the whole
            # tensor can take different kernels and differ by ~1e-3 relative, so split plans would not reproduce
            # the monolithic result; networks this size gain nothing from TF32 anyway (launch-bound)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        kwargs = {}
        if spec.task == "detection":
            kwargs["weights"] = (cfg.weights or None) if load_weights else None
        self.module = build_model(spec.name, **kwargs)
        self.example = torch.zeros(1, 3, size, size)
        self.graph: OpGraph = capture(self.module, self.example)
        self.graph.gm.to(self.device)
        self.task: Task = make_task(spec, self.module, size)
        if hasattr(self.task, "bind"):
            self.task.bind(self.graph.outputs)

    def profile_input(self) -> torch.Tensor:
        """A representative frame for profiling: compressed sizes and detector outputs depend on content,
        so a sample photo when one is installed, else a smooth synthetic scene with noise (never zeros)."""
        bgr = load_sample("dog.jpg")
        if bgr is None:
            rng = np.random.default_rng(0)
            yy, xx = np.mgrid[0:480, 0:640]
            base = np.stack([xx * 0.3, yy * 0.4, (xx + yy) * 0.2], -1) % 255
            bgr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        return self.preprocess(bgr[:, :, ::-1].copy())[0].to(self.device)

    def preprocess(self, rgb8: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """HxWx3 uint8 RGB camera image -> (1,3,S,S) float input in 0..1, exactly uint8/255."""
        boxed = letterbox(rgb8, self.size)
        return torch.from_numpy(boxed.to_input()), boxed.image

    def reference(self, rgb8: np.ndarray):
        """Single-process inference, the result collaborative inference must equal."""
        x, _ = self.preprocess(rgb8)
        with torch.inference_mode():
            outs = self.graph.run(x.to(self.device))
        parts = {}
        for name, t in outs.items():
            fn = self.task.output_fn
            parts[name] = [(0, fn(name, t.cpu(), 0) if fn else t.cpu())]
        fo = FrameOutputs(0, "reference", parts)
        return self.task.finalize(fo, rgb8.shape[1], rgb8.shape[0])


def parse_plan_choice(choice: str, graph: OpGraph, model: str) -> Plan | None:
    """'auto' -> None (planner decides); 'local' | 'offload' | 'cut:<k>' | a plan text -> that plan."""
    c = (choice or "auto").strip()
    if c == "auto":
        return None
    if c == "local":
        return Plan.local(graph, model)
    if c == "offload":
        return Plan.offload(graph, model)
    if c.startswith("cut:"):
        return Plan.cut(graph, model, int(c[4:]))
    return Plan.parse(c)


@dataclasses.dataclass
class RobotConfig(ModelConfig):
    plan: str = "auto"
    bandwidth_mbps: float = 100.0      # the planner's link bandwidth until (or instead of) a measured one
    bandwidth_source: str = "measured"  # "measured": from the edge's LinkEstimate; "parameter": bandwidth_mbps
    link_latency_ms: float = 1.0
    encodings: str = "raw,lz4"
    min_split_gain: float = 0.05       # a split plan must be predicted this much faster than the best baseline
                                       # (after split_extra_ms, the model error learned on this link)
    explore_margin: float = 0.1        # on each link, run the best split plan of each of the best few segments for a
                                       # few frames when it is priced within this fraction of the choice: measurements
                                       # then decide (the model's error differs from plan to plan); 0 = never
    profile_cache_dir: str = ""


class RobotRuntime:
    """The robot's side: profiles, planning, and the robot's share of every frame."""

    def __init__(self, cfg: RobotConfig, log: Log = print):
        self.cfg, self.log = cfg, log
        self.m = ModelRuntime(cfg)
        g = self.m.graph
        self.profile = load_or_profile(g, self.m.profile_input(), Path(cfg.profile_cache_dir)
                                       if cfg.profile_cache_dir else None, self.m.task.output_fn, log)
        self.worker = RobotWorker(g, self.m.task.output_fn)
        self.edge_profile: DeviceProfile | None = None
        self.measured = BandwidthEstimate()
        self.guard = PlanGuard()
        self.sends: collections.deque = collections.deque(maxlen=128)   # (MB, sender CPU ms) per sent message
        self.packing: collections.deque = collections.deque(maxlen=64)   # per packet for the edge: ms to build it
                                                                          # beyond the profile's encoding cost
        self.planned_msg_ms: float | None = None
        self.process_send_cpu: tuple[float, float] | None = None   # (CPU ms per message, per MB): start-up burst
        self.overheads: collections.deque = collections.deque(maxlen=16)   # per-frame ms outside the plan
        self._intake: collections.OrderedDict[int, float] = collections.OrderedDict()   # seq -> intake ms
        self.reported_frame_ms: float | None = None   # frame_ms in the predictions last reported
        # measured / predicted compute, for re-calibrating the profiles; the factors the plan in force used
        self.compute_ratios: collections.deque = collections.deque(maxlen=24)   # robot, whole-tensor ops
        self.tile_ratios: collections.deque = collections.deque(maxlen=24)      # robot, row tiles
        self.edge_ratios: collections.deque = collections.deque(maxlen=24)      # edge (from FrameTiming)
        # the same per plan: ops differ in how far they stray from the start-up profile (the early high-resolution
        # layers vs the deep ones), so a plan's own frames price it better than a blend of all plans' frames
        self.plan_ratios: dict[tuple[str, str], collections.deque] = {}   # ("whole"|"tiles"|"edge", plan text)
        self._priced_with: dict[str, tuple[float, float, float]] = {}   # candidate -> the factors that priced it
        # measured - predicted latency of split-plan frames, prediction taken without split_extra_ms: what the
        # model misses for split plans (extra messages through the middleware, the edge's per-chunk handling)
        self.split_residuals: collections.deque = collections.deque(maxlen=24)
        self.split_extra_used = 0.0      # split_extra_ms() when the candidates in force were priced
        self.family_extra_used: dict[tuple, float] = {}   # the same per family of measured split plans
        # latency of recent undisturbed frames per plan text on this link, whoever chose the plan: the planner
        # compares a plan by what it measured once it has (see planner.choose's ``measured``)
        self.latencies: dict[str, collections.deque] = {}
        self.measured_used: dict[str, float] = {}   # measured_ms() when the candidates in force were priced
        self.explored: set[str] = set()   # split plans tried on this link, to be measured (see _explore)
        self.exploring: str | None = None   # the plan in force is such a trial
        self.planned_scale: float | None = None
        self.planned_tile_scale: float | None = None
        self.planned_edge_scale: float | None = None
        self._expected: dict[tuple[str, str], object] = {}   # (side, plan text) -> compute the start-up profile
                                                             # predicts for it; per frame, so computed once per plan
        self._planning = 0                          # re-plans running (they share the robot's CPU with frames)
        self._disturbed: collections.deque = collections.deque(maxlen=64)   # seqs the guard must not judge by
        self._frames_since_priced = 0               # frames measured since the candidates were last priced
        self._last_frame_plan = ""
        self.predicted: dict[str, float] = {}     # plan text -> predicted ms, for the candidates of the decision
        self.planned_mbps: float | None = None   # bandwidth the plan in force was chosen for
        self.decision: Decision | None = None
        self._auto: Decision | None = None         # the last decision for plan auto (its shortlist is re-priced)
        self._searched: dict | None = None         # inputs of the last full search
        self.last_replan = ""                       # "search" | "re-price" | "baselines": what the last re-plan did
        self._lock = threading.Lock()
        fixed = parse_plan_choice(cfg.plan, g, self.m.spec.name)
        self.plan: Plan = fixed or Plan.local(g, self.m.spec.name)
        self._fixed_in_force = fixed is not None   # the plan in force was set by the user (plan != auto)
        compile_plan(g, self.plan)   # fail early on a bad plan parameter

    @property
    def needs_edge(self) -> bool:
        return self.plan.kind(len(self.m.graph.ops)) != "local"

    def set_edge_profile(self, prof: DeviceProfile, replan: bool = True) -> None:
        """Take the edge's profile (ValueError if it is for another model or weights); re-plan unless told not to
        (robot_node re-plans on its own thread, off the executor)."""
        if prof.key != self.m.graph.key:
            raise ValueError(f"the edge runs a different model or weights (hash {prof.key}, ours "
                             f"{self.m.graph.key}); start both with the same model, weights and input_size")
        if prof != self.edge_profile:
            self.edge_ratios.clear()          # measured against the previous profile
            self._expected.clear()
        self.edge_profile = prof
        if replan:
            self.replan()

    def bandwidth(self) -> float:
        """The bandwidth to plan for: the measured one when asked for and available, else the parameter."""
        if self.cfg.bandwidth_source == "measured" and self.measured.mbps is not None:
            return self.measured.mbps
        return self.cfg.bandwidth_mbps

    def send_cost(self) -> tuple[float, float]:
        """Robot wall time per sent message and per MB: the sender's measured CPU (a least-squares line over
        recent messages of different sizes), or the whole process's CPU per message measured by robot_node's
        start-up burst where that is more (middleware threads acknowledge, fragment and resend for every sample,
        which the sending thread's CPU does not see), divided by the CPU share this process gets."""
        per_msg, per_mb = DEFAULT_MSG_CPU_MS, DEFAULT_SEND_CPU_MS_PER_MB
        if len(self.sends) >= 8:
            mb = np.array([s[0] for s in self.sends])
            cpu = np.array([s[1] for s in self.sends])
            if mb.max() - mb.min() > 0.05:
                per_mb, per_msg = np.polyfit(mb, cpu, 1)
            else:
                per_msg = float(np.median(cpu - per_mb * mb))
        if self.process_send_cpu is not None:
            per_msg, per_mb = max(per_msg, self.process_send_cpu[0]), max(per_mb, self.process_send_cpu[1])
        share = min(1.0, max(self.profile.cpu_share, 0.05))
        return max(float(per_msg), 0.0) / share, max(float(per_mb), 0.0) / share

    def set_process_send_cpu(self, small: tuple[int, int, float], large: tuple[int, int, float]) -> tuple[float, float]:
        """Take two start-up bursts, each (messages, bytes per message, process CPU ms beyond idle): the line
        through them is the process's CPU per message and per MB. Returns (ms per message, ms per MB)."""
        (n1, b1, c1), (n2, b2, c2) = small, large
        per_msg_small, per_msg_large = c1 / max(n1, 1), c2 / max(n2, 1)
        per_mb = max((per_msg_large - per_msg_small) / max((b2 - b1) / 1e6, 1e-9), 0.0)
        per_msg = max(per_msg_small - per_mb * b1 / 1e6, 0.0)
        self.process_send_cpu = (per_msg, per_mb)
        return per_msg, per_mb

    def pack_ms(self) -> float:
        """Robot wall time to build one packet for the edge beyond its priced encoding (slicing, the codec call,
        the packet: fixed per message, so it is what many small chunks pay): the median over recent packets, as
        measured by the frame thread under whatever CPU cap the robot has; 0 until 8 are measured."""
        return max(float(np.median(self.packing)), 0.0) if len(self.packing) >= 8 else 0.0

    def msg_ms(self) -> float:
        """Robot wall time per message: sending (:meth:`send_cost`) plus building it (:meth:`pack_ms`)."""
        return self.send_cost()[0] + self.pack_ms()

    def compute_scale(self) -> float:
        """Measured robot compute of whole-tensor ops over the profile's prediction (median of recent frames; 1
        until 3 are measured). Under a CPU quota the robot's other threads and processes (DDS, the aggregator, the
        camera driver) eat into the same budget while it computes, so frames run slower than the start-up profile."""
        return float(np.median(self.compute_ratios)) if len(self.compute_ratios) >= 3 else 1.0

    def tile_scale(self) -> float:
        """The same for row tiles, measured apart: their error differs from whole ops' (plans mixing the two made
        one shared factor swing 0.8-1.6x and re-plan over and over)."""
        return float(np.median(self.tile_ratios)) if len(self.tile_ratios) >= 3 else 1.0

    def robot_profile(self, whole: float | None = None, tiles: float | None = None) -> DeviceProfile:
        """The robot profile the planner uses: the start-up profile re-calibrated by measured frames (or by the
        given factors)."""
        whole = self.compute_scale() if whole is None else whole
        tiles = self.tile_scale() if tiles is None else tiles
        return dataclasses.replace(self.profile, scale=self.profile.scale * whole,
                                   tile_scale=self.profile.tile_scale * tiles / whole)

    def edge_scale(self) -> float:
        """Edge compute reported by FrameTiming over the edge profile's prediction (median of recent frames; 1
        until 3 are measured): the edge's load and contention at run time, which its start-up profile misses."""
        return float(np.median(self.edge_ratios)) if len(self.edge_ratios) >= 3 else 1.0

    def _expected_compute(self, side: str, spec: str):
        """The start-up profiles' compute prediction for plan ``spec``: robot (whole ops, row tiles) or edge ms."""
        key = (side, spec)
        if key not in self._expected:
            g, plan = self.m.graph, Plan.parse(spec)
            if len(self._expected) >= 256:
                self._expected.clear()
            self._expected[key] = (robot_compute_ms(g, plan, self.profile) if side == "robot"
                                   else edge_compute_ms(g, plan, self.edge_profile))
        return self._expected[key]

    def observe_edge_compute(self, spec: str, edge_ms: float) -> None:
        if self.edge_profile is None or edge_ms <= 0.0:
            return
        try:
            expected = self._expected_compute("edge", spec)
        except PlanError:
            return
        if expected > 5.0:
            self.edge_ratios.append(edge_ms / expected)
            self._note_ratio("edge", spec, edge_ms / expected)

    def _note_ratio(self, kind: str, spec: str, ratio: float) -> None:
        d = self.plan_ratios.get((kind, spec))
        if d is None:
            if len(self.plan_ratios) >= 256:
                self.plan_ratios.clear()
            d = self.plan_ratios[(kind, spec)] = collections.deque(maxlen=12)
        d.append(ratio)

    def own_scale(self, kind: str, spec: str, default: float) -> float:
        """Plan ``spec``'s own measured/predicted compute ratio (median of its recent frames), else ``default``."""
        d = self.plan_ratios.get((kind, spec))
        return float(np.median(d)) if d is not None and len(d) >= 3 else default

    def _priced_on_its_own(self, p: Prediction, link: LinkModel) -> Prediction:
        """``p`` re-predicted with the plan's own calibration where its frames measured one: a candidate's
        reported prediction (and the guard's score for it) then follow what that plan measured, not the blend of
        whatever plans ran lately (plans that take turns would otherwise be priced by each other's frames)."""
        spec = p.plan.spec()
        whole, tiles, edge = self.planned_scale, self.planned_tile_scale, self.planned_edge_scale
        own = (self.own_scale("whole", spec, whole), self.own_scale("tiles", spec, tiles),
               self.own_scale("edge", spec, edge))
        self._priced_with[spec] = own
        if own == (whole, tiles, edge):
            return p
        q = predict(self.m.graph, p.plan, self.robot_profile(own[0], own[1]), self.edge_profile.scaled(own[2]), link)
        extra = self._extra_for(p.plan)
        return dataclasses.replace(q, name=p.name, latency_ms=q.latency_ms + extra)

    def _extra_for(self, plan: Plan) -> float:
        """What was added to ``plan``'s prediction when the candidates in force were priced: its family's measured
        excess where one of its plans was measured on this link, else split_extra_ms (0 for a baseline)."""
        return self.family_extra_used.get(family(plan), self.split_extra_used) if plan.is_split else 0.0

    def _family_extra(self, measured: dict[str, float], robot: DeviceProfile, edge: DeviceProfile,
                      link: LinkModel) -> dict[tuple, float]:
        """Per family of split plans (planner.family) with measured plans: median measured - predicted."""
        out: dict[tuple, list[float]] = {}
        for plan in self._split_plans(measured):
            try:
                q = predict(self.m.graph, plan, robot, edge, link).latency_ms
            except PlanError:
                continue
            out.setdefault(family(plan), []).append(measured[plan.spec()] - q)
        return {k: float(np.median(v)) for k, v in out.items()}

    def compute_drifted(self, rel_change: float = 0.2) -> bool:
        """True when the measured robot or edge compute scale moved enough from the planned one to re-plan."""
        def moved(now: float, planned: float | None, n: int) -> bool:
            return planned is not None and n >= 3 and abs(now - planned) > rel_change * planned
        return (moved(self.compute_scale(), self.planned_scale, len(self.compute_ratios))
                or moved(self.tile_scale(), self.planned_tile_scale, len(self.tile_ratios))
                or moved(self.edge_scale(), self.planned_edge_scale, len(self.edge_ratios)))

    def split_extra_ms(self) -> float:
        """What split plans measured beyond their predictions (median of recent split-plan frames; 0 until 5 are
        measured): added to every split plan's prediction, so the planner compares a split with the baselines as it
        will measure. Frame overhead and compute are calibrated separately, so this is what remains: on the
        quarter-core bench, +17..37 ms for plans streaming the input in 4-8 chunks."""
        # never below 0: a plan not yet measured is not trusted to beat its own prediction (its family's measured
        # excess, which may be negative, prices it once one of the family ran: see _family_extra)
        return max(float(np.median(self.split_residuals)), 0.0) if len(self.split_residuals) >= 5 else 0.0

    MEASURED_MIN_FRAMES = 5
    TRIAL_MIN_FRAMES = 3     # a trial whose every frame is slower than a plan measured in full is done this early

    def _measured_one(self, spec: str) -> float | None:
        d = self.latencies.get(spec)
        if d is None or len(d) < self.TRIAL_MIN_FRAMES:
            return None
        if len(d) < self.MEASURED_MIN_FRAMES:
            # most trials lose: one whose every frame is slower than the median of a plan measured in full has
            # lost (a plan as fast as that one does so 1 time in 8), so it stops early instead of running on
            if spec not in self.explored:
                return None
            fastest = min(d)
            if not any(k != spec and len(v) >= self.MEASURED_MIN_FRAMES and np.median(v) < fastest
                       for k, v in self.latencies.items()):
                return None
        return float(np.median(d)) - self.frame_ms()

    def measured_ms(self) -> dict[str, float]:
        """Plan text -> median latency of its recent undisturbed frames on this link, less frame_ms (so in the
        planner's terms), for plans with MEASURED_MIN_FRAMES or more (TRIAL_MIN_FRAMES for a trial that lost)."""
        return {spec: ms for spec in self.latencies if (ms := self._measured_one(spec)) is not None}

    def _split_plans(self, specs) -> list[Plan]:
        """The split plans of this model among plan texts (measured ones may come from any message: bad ones
        are skipped)."""
        out = []
        for spec in specs:
            try:
                plan = Plan.parse(spec)
            except PlanError:
                continue
            if plan.is_split and plan.model == self.m.spec.name:
                out.append(plan)
        return out

    REPRICE_MIN_FRAMES = 10   # a re-price for drift waits for this many frames since the last pricing

    def own_drifted(self, rel_change: float = 0.15) -> str:
        """Why the candidates should be re-priced (cheap: see :meth:`_needs_search`), or "": the plan in force was
        first measured (at once: that settles a choice or ends a trial), or, once REPRICE_MIN_FRAMES frames ran
        since the last pricing, its measured latency moved by 10 %, its own measured compute by ``rel_change``, or
        the learned split_extra_ms by 10 ms. The wait matters on a CPU-capped robot: medians of overlapping windows
        move 10 % by noise alone, and every re-price takes CPU its frames need (on the quarter-core bench, re-prices
        every few frames made plan auto a few % slower than the same plan fixed). Runs every frame: looks at the
        plan in force only."""
        spec = self.plan.spec()
        now, used = self._measured_one(spec), self.measured_used.get(spec)
        auto = self.cfg.plan == "auto"
        if auto and now is not None and used is None:
            return f"the plan in force measures {now:.1f} ms (priced with its prediction)"
        if self._frames_since_priced < self.REPRICE_MIN_FRAMES:
            return ""
        extra = self.split_extra_ms()
        if abs(extra - self.split_extra_used) > 10.0:
            return f"split plans measure {extra:.1f} ms beyond their predictions (priced with " \
                   f"{self.split_extra_used:.1f})"
        if auto and now is not None and abs(now - used) > 0.1 * max(used, 1.0):
            return f"the plan in force measures {now:.1f} ms (priced with {used:.1f})"
        priced = self._priced_with.get(spec)
        if priced is None:
            return ""
        scales = (self.own_scale("whole", spec, priced[0]), self.own_scale("tiles", spec, priced[1]),
                  self.own_scale("edge", spec, priced[2]))
        if any(abs(a - b) > rel_change * b for a, b in zip(scales, priced)):
            return f"the plan in force measures >{rel_change:.0%} off the compute that priced it"
        return ""

    def settled(self) -> bool:
        """True when the plan in force is what the robot will keep running on this link: a plan the user fixed, or
        plan auto's choice once priced by its own measured latency, with no trial running. Until then frames are
        the planner measuring its candidates (a benchmark or a monitor can wait for this: PlanStatus.settled)."""
        with self._lock:
            if self.cfg.plan != "auto":
                return True
            spec = self.plan.spec()
            return self.decision is not None and spec != self.exploring and spec in self.measured_used

    def frame_ms(self) -> float:
        """Measured per-frame time no plan changes (median of recent frames; 0 until 3 are measured): camera
        stamp -> robot compute start (transport, conversion, waiting, pre-processing) plus the aggregator's
        last output -> result. On a CPU-capped robot this is tens of ms. It is the same for every plan, so it
        never changes the planner's choice and is not part of the search: it is added to each plan's predicted
        latency when that is reported or compared with measured latency (by the guard)."""
        return float(np.median(self.overheads)) if len(self.overheads) >= 3 else 0.0

    def link(self) -> LinkModel:
        per_mb = self.send_cost()[1]
        return LinkModel(self.bandwidth(), self.cfg.link_latency_ms, send_ms_per_mb=per_mb, msg_ms=self.msg_ms())

    def predicted_ms(self, spec: str) -> float | None:
        """End-to-end prediction of a candidate plan: the planner's (robot memory -> aggregator) + frame_ms."""
        p = self.predicted.get(spec)
        return None if p is None else p + self.frame_ms()

    def observe_overhead(self, seq: int, aggregator_ms: float) -> bool:
        """Add frame ``seq``'s aggregator time to its intake time; True when the per-frame overhead moved enough
        since the predictions were last reported to report them again."""
        intake = self._intake.pop(seq, None)
        if intake is None or not (0.0 <= aggregator_ms < 60e3):
            return False
        self.overheads.append(intake + aggregator_ms)
        with self._lock:
            self.guard.offset = self.frame_ms()
        if len(self.overheads) < 3:
            return False
        now, then = self.frame_ms(), self.reported_frame_ms
        return then is None or abs(now - then) > max(10.0, 0.15 * then)

    def observe_send(self, nbytes: int, cpu_ms: float) -> bool:
        """Add one sent message's sender CPU; True when the per-message cost moved enough to re-plan."""
        self.sends.append((nbytes / 1e6, cpu_ms))
        if self.planned_msg_ms is None or len(self.sends) < 8 or len(self.sends) % 8:
            return False
        now = self.msg_ms()
        if abs(now - self.planned_msg_ms) <= max(0.5, 0.5 * self.planned_msg_ms):
            return False
        # a re-plan costs the robot CPU its frames need: only when the plan in force is priced differently
        with self._lock:
            plan, planned = self.plan, self.predicted.get(self.plan.spec())
        if planned is None or self.edge_profile is None:
            return True
        new = predict(self.m.graph, plan, self.robot_profile(), self.edge_profile.scaled(self.edge_scale()),
                      self.link()).latency_ms
        return abs(new - planned) > 0.1 * planned

    def observe_bandwidth(self, mbps: float, rel_change: float = 0.25) -> bool:
        """Add a measured sample; True when the estimate moved enough from the planned one to re-plan."""
        self.measured.add(mbps)
        if self.cfg.bandwidth_source != "measured" or self.planned_mbps is None:
            return False
        return abs(self.bandwidth() - self.planned_mbps) > rel_change * self.planned_mbps

    def replan(self) -> Decision | None:
        """Re-run the planner (plan == auto) for the current profiles and bandwidth."""
        with self._lock:
            self._planning += 1
        try:
            return self._replan()
        finally:
            with self._lock:
                self._planning -= 1

    def _needs_search(self, encs: list[str], robot: DeviceProfile, edge: DeviceProfile) -> bool:
        """A full plan search, or only re-pricing the last search's shortlist (~30x cheaper: on a quarter-core
        robot a search takes seconds of wall time its frames need)? Search when the link or a planner setting
        changed, or a cost estimate halved or doubled since the last search (the best plans may then lie outside
        the shortlist); re-price when calibration moved less (compute_drifted fires at 20 %)."""
        last = self._searched
        if last is None or self._auto is None or not self._auto.shortlist:
            return True
        if (last["encodings"] != encs or last["min_split_gain"] != self.cfg.min_split_gain
                or last["link_latency_ms"] != self.cfg.link_latency_ms
                or abs(self.planned_mbps - last["mbps"]) > 0.1 * last["mbps"]):
            return True
        now = {"robot": robot.scale, "tiles": robot.tile_scale, "edge": edge.scale, "msg": self.planned_msg_ms}
        return any(not (0.5 <= (now[k] + 1e-9) / (last[k] + 1e-9) <= 2.0) for k in now)

    def _replan(self) -> Decision | None:
        g, name = self.m.graph, self.m.spec.name
        fixed = parse_plan_choice(self.cfg.plan, g, name)
        if self.edge_profile is None:
            with self._lock:
                self.plan = fixed or Plan.local(g, name)
            return None
        encs = [e.strip() for e in self.cfg.encodings.split(",") if e.strip()] or ["raw"]
        prev_mbps = self.planned_mbps
        self.planned_mbps, self.planned_msg_ms = self.bandwidth(), self.msg_ms()
        self.planned_scale, self.planned_edge_scale = self.compute_scale(), self.edge_scale()
        self.planned_tile_scale = self.tile_scale()
        robot, edge = self.robot_profile(), self.edge_profile.scaled(self.planned_edge_scale)
        same_link = prev_mbps is not None and abs(self.planned_mbps - prev_mbps) <= 0.1 * prev_mbps
        if not same_link:
            self.split_residuals.clear()     # what split plans miss grows with the rate: learned per link
            self.latencies.clear()
            self.explored.clear()
        link = self.link()
        extra = self.split_extra_ms()
        measured = self.measured_ms()
        fam = self._family_extra(measured, robot, edge, link)
        if fixed is not None:
            decision = choose(g, name, robot, edge, link, encs, search=False)
            decision.chosen = predict(g, fixed, robot, edge, link)
            if fixed.is_split:
                decision.chosen = with_split_extra(decision.chosen, extra, fam)
            self.last_replan = "baselines"
        elif self._needs_search(encs, robot, edge):
            decision = choose(g, name, robot, edge, link, encs, min_split_gain=self.cfg.min_split_gain,
                              split_extra_ms=extra, measured=measured, family_extra_ms=fam)
            self._searched = {"encodings": encs, "min_split_gain": self.cfg.min_split_gain,
                              "link_latency_ms": self.cfg.link_latency_ms, "mbps": self.planned_mbps,
                              "robot": robot.scale, "tiles": robot.tile_scale, "edge": edge.scale,
                              "msg": self.planned_msg_ms}
            self.last_replan = "search"
        else:
            decision = choose(g, name, robot, edge, link, encs, min_split_gain=self.cfg.min_split_gain,
                              shortlist=self._auto.shortlist, split_extra_ms=extra, measured=measured,
                              family_extra_ms=fam)
            self.last_replan = "re-price"
        self._priced_with.clear()
        self.split_extra_used, self.measured_used, self.family_extra_used = extra, measured, fam
        self._frames_since_priced = 0
        decision.chosen = self._priced_on_its_own(decision.chosen, link)
        decision.baselines = {k: self._priced_on_its_own(v, link) for k, v in decision.baselines.items()}
        candidates = [decision.chosen, *decision.baselines.values()]
        trial = self._explore(decision, measured, lambda plan: with_split_extra(
            predict(g, plan, robot, edge, link), extra, fam)) if fixed is None else None
        if trial is not None:
            candidates.append(self._priced_on_its_own(trial, link))
        with self._lock:
            prev = self.plan.spec()
            self.decision = decision
            self.predicted = {p.plan.spec(): p.latency_ms for p in candidates}
            if fixed is not None:
                # a plan the user fixed is run as given; the guard keeps auto's candidates and what it measured
                # of them, for when plan goes back to auto on this link
                self.plan = decision.chosen.plan
                self._fixed_in_force = True
                return decision
            self._auto = decision
            # latencies measured on this link stay valid when only a cost estimate moved, and then the guard,
            # not the planner alone, decides: a plan already measured worse than another is not chosen again
            self.guard.reset(self.predicted, keep=same_link)
            # the plan in force carries on only if the planner (not the user) put it there, and the planner's
            # choice is a prediction: a choice made on measured latency replaces it
            carry_on = (same_link and prev in self.predicted and not self._fixed_in_force
                        and decision.chosen.plan.spec() not in measured)
            start = trial.plan.spec() if trial is not None else prev if carry_on else decision.chosen.plan.spec()
            self.exploring = start if trial is not None else None
            self.plan = Plan.parse(self.guard.pick(start))
            self._fixed_in_force = False
        return decision

    EXPLORE_SEGMENTS = 3     # segments (k1, k2) of the shortlist whose best plan may be tried on each link

    def _explore(self, decision: Decision, measured: dict[str, float],
                 price: Callable[[Plan], Prediction]) -> Prediction | None:
        """A split plan to run until measured, or None. The model's error differs from plan to plan by more than
        the gaps between the best plans (on the quarter-core bench all-offload measures 5-15 ms above its
        prediction, splits streaming the input 20-50 ms, splits computing rows on the robot up to 100+ ms), so
        near the top only measurements tell which is faster. Candidates: the best plan of each of the shortlist's
        first EXPLORE_SEGMENTS segments where the edge computes some rows, worth ``explore_margin`` of the choice's
        latency or more, priced (prediction + split_extra_ms) within ``explore_margin`` of the choice (its measured
        latency once it has one); each is tried once per link, one at a time, and the choice then uses what it
        measured (:meth:`measured_ms`; a trial that clearly loses is measured in TRIAL_MIN_FRAMES)."""
        if self.cfg.explore_margin <= 0.0 or not decision.shortlist:
            return None
        if self.exploring in self.explored and self.exploring not in measured:
            return price(Plan.parse(self.exploring))     # a re-plan before the trial was measured: carry on
        if len(self.explored) >= self.EXPLORE_SEGMENTS:
            return None
        chosen = decision.chosen.plan.spec()
        reference = measured.get(chosen, decision.chosen.latency_ms)
        limit = (1.0 + self.cfg.explore_margin) * reference
        # a segment is known once any of its plans was measured or tried on this link (variants of one segment,
        # other tiles or encodings, measure alike next to the differences between segments)
        known = {(p.k1, p.k2) for p in self._split_plans([*self.explored, *measured, chosen])}
        seen: set[tuple[int, int]] = set()
        segments = 0
        for plan in decision.shortlist:            # best first
            seg = (plan.k1, plan.k2)
            if seg in seen:
                continue
            seen.add(seg)
            try:
                if not compile_plan(self.m.graph, plan).edge_work:
                    continue      # the robot computes every row: a layer-wise cut in tiles, which baselines cover
            except PlanError:
                continue
            spec = plan.spec()
            if spec == chosen and spec not in measured:
                return None                        # the choice itself is still to be measured
            p = None if seg in known else price(plan)
            if p is not None and p.edge_ms < self.cfg.explore_margin * reference:
                # the edge's share of such a frame is worth less than the margin: the rest is the choice's own
                # work, so what a trial could reveal is too small to pay for its frames
                continue
            segments += 1
            if segments > self.EXPLORE_SEGMENTS:
                return None
            if p is not None and p.latency_ms < limit:
                self.explored.add(spec)
                return p
        return None

    def observe_latency(self, spec: str, latency_ms: float, seq: int | None = None) -> Plan | None:
        """A frame's measured latency under plan ``spec``; returns a new plan when the guard switches. Frames
        computed while the planner ran, or the first after a plan switch, say little about the plan: skipped."""
        with self._lock:
            self._frames_since_priced += 1
            undisturbed = seq is None or seq not in self._disturbed
            predicted = self.predicted_ms(spec) if undisturbed else None
            if undisturbed:
                if spec not in self.latencies and len(self.latencies) >= 256:
                    self.latencies.clear()
                self.latencies.setdefault(spec, collections.deque(maxlen=10)).append(latency_ms)
            plan = Plan.parse(spec) if predicted is not None else None
            if plan is not None and plan.is_split:
                self.split_residuals.append(latency_ms - (predicted - self._extra_for(plan)))
            if self.cfg.plan != "auto":
                return None       # a plan the user fixed is run as given (the guard's candidates may be stale)
            if undisturbed:
                self.guard.observe(spec, latency_ms)
            current = self.plan.spec()
            nxt = self.guard.pick(current)
            if nxt == current:
                return None
            self.plan = Plan.parse(nxt)
            return self.plan

    def set_plan(self, plan: Plan) -> None:
        """Run ``plan`` from the next frame, as the user's choice (robot_node's ``plan`` parameter)."""
        compile_plan(self.m.graph, plan)
        with self._lock:
            self.plan = plan
            self._fixed_in_force = True

    def run_frame(self, seq: int, rgb8: np.ndarray, emit: Callable[[Packet], None], age_ms: float = 0.0) -> float:
        """Pre-process and compute the robot's share of one frame; returns robot compute ms.

        ``age_ms``: how old the frame already is (camera stamp -> now); with the pre-processing time it is the
        frame's intake time, paired with the aggregator's time by :meth:`observe_overhead`."""
        with self._lock:
            plan = self.plan
        spec, planning = plan.spec(), bool(self._planning)
        if planning or spec != self._last_frame_plan:
            self._disturbed.append(seq)
        self._last_frame_plan = spec
        t0 = time.perf_counter()
        x = self.m.preprocess(rgb8)[0].to(self.m.device)
        self._intake[seq] = max(age_ms, 0.0) + (time.perf_counter() - t0) * 1e3
        while len(self._intake) > 64:
            self._intake.popitem(last=False)
        busy = self.worker.run_frame(seq, plan, x, emit, input_is_u8=True)
        if self._planning and not planning:
            self._disturbed.append(seq)
            planning = True
        if not planning:
            scale = self.profile.scale * self.compute_scale()
            for mb, enc, ms in self.worker.last_packed:
                self.packing.append(ms - scale * self.profile.encode_ms_per_mb.get(enc, 0.0) * mb)
            # a plan part the robot did not compute (or barely) says nothing
            whole, tiles = self._expected_compute("robot", spec)
            if whole > 5.0:
                self.compute_ratios.append(self.worker.last_whole_ms / whole)
                self._note_ratio("whole", spec, self.worker.last_whole_ms / whole)
            if tiles > 5.0:
                self.tile_ratios.append(self.worker.last_tiles_ms / tiles)
                self._note_ratio("tiles", spec, self.worker.last_tiles_ms / tiles)
        return busy


class EdgeRuntime:
    """The edge's side: its profile, and the edge's share of frames as packets arrive."""

    def __init__(self, cfg: ModelConfig, profile_cache_dir: str = "", log: Log = print):
        self.m = ModelRuntime(cfg)
        g = self.m.graph
        self.profile = load_or_profile(g, self.m.profile_input(),
                                       Path(profile_cache_dir) if profile_cache_dir else None,
                                       self.m.task.output_fn, log)
        self.worker = EdgeWorker(g, self.m.task.output_fn, device=self.m.device)

    def on_packet(self, pkt: Packet) -> list[Packet]:
        plan = Plan.parse(pkt.plan_spec)
        if plan.model != self.m.spec.name:
            raise PlanError(f"tile is for model {plan.model!r}, this edge serves {self.m.spec.name!r}")
        return self.worker.on_packet(pkt)

    def drop_frame(self, seq: int) -> None:
        self.worker.frames.pop(seq, None)


class AggregatorRuntime:
    """Reassembles each frame's outputs and turns them into the task's result."""

    def __init__(self, cfg: ModelConfig):
        self.m = ModelRuntime(cfg, load_weights=False)   # shapes and output decoding only
        self.assembler = Assembler(self.m.graph)

    def add(self, pkt: Packet) -> FrameOutputs | None:
        plan = Plan.parse(pkt.plan_spec)
        if plan.model != self.m.spec.name:
            raise PlanError(f"output is for model {plan.model!r}, this aggregator serves {self.m.spec.name!r}")
        return self.assembler.add(pkt)

    def finalize(self, fo: FrameOutputs, image_w: int, image_h: int):
        return self.m.task.finalize(fo, image_w, image_h)
