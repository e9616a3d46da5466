"""ROS-free runtimes behind the three nodes: parameters (a config dataclass) in, engine calls out.

- :class:`ModelRuntime`: the model, its traced graph at the input size, pre-processing and the task (how
  outputs become detections or a classification). Shared by all sides.
- :class:`RobotConfig`: the robot's settings (its runtime and controller live in :mod:`intradp_ros.robot`).
- :class:`EdgeRuntime`: the edge's share as packets arrive.
- :class:`AggregatorRuntime`: reassembly and the task's final step (NMS / top-k).

Each node is a thin adapter around one of these, so the whole pipeline is testable without ROS.
"""
from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from .engine.assembly import Assembler, FrameOutputs
from .engine.executor import EdgeWorker
from .engine.graph import OpGraph, capture
from .engine.packet import Packet
from .engine.plan import Plan, PlanError
from .engine.profiler import load_or_profile
from .engine.verify import verify_tiles
from .models import build_model, get_spec
from .tasks import Task, make_task
from .vision.preprocess import letterbox
from .vision.samples import load_sample

__all__ = ["ModelConfig", "ModelRuntime", "RobotConfig", "EdgeRuntime", "AggregatorRuntime", "LateOutput"]

Log = Callable[[str], None]


@dataclasses.dataclass
class ModelConfig:
    model: str = "yolov3_tiny"
    weights: str = "auto"          # detector weights: "auto" (installed package) or a path; "" = random init
    input_size: int = 0            # 0 = the model's default; else a multiple of its size_multiple
    device: str = "cpu"
    threads: int = 0               # torch intra-op threads, 0 = leave torch's default


def resolve_device(device: str) -> str:
    """``device`` as torch names it ("auto": CUDA when present); ValueError, naming the choices, for one this
    machine does not have."""
    if device in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    choices = ", ".join(["cpu", "auto", *(["cuda"] if n else []), *(f"cuda:{i}" for i in range(n))])
    if device == "cpu" or (device == "cuda" and n) or (device.startswith("cuda:") and device[5:].isdigit()
                                                       and int(device[5:]) < n):
        return device
    why = (f"torch {torch.__version__} sees no CUDA device here" if device.startswith("cuda") and not n
           else "not a device this machine has")
    raise ValueError(f"device {device!r}: {why}; choose one of: {choices}")


class ModelRuntime:
    """A model traced at its input size, with its pre-processing and output task."""

    def __init__(self, cfg: ModelConfig, load_weights: bool = True):
        spec = get_spec(cfg.model)
        size = cfg.input_size or spec.input_size
        if size <= 0 or size % spec.size_multiple:
            raise ValueError(f"input_size {size} must be a positive multiple of {spec.size_multiple} for {spec.name}")
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
            cv2.setNumThreads(cfg.threads)    # the letterbox and colour conversion too: on a capped core a pool of
                                              # OpenCV threads only adds hand-offs
        self.cfg, self.spec, self.size = cfg, spec, size
        self.device = resolve_device(cfg.device)
        if self.device.startswith("cuda"):
            # full fp32 on the GPU: with TF32 (PyTorch's default for cuDNN convolutions) a row tile and the whole
            # tensor can take different kernels and differ by ~1e-3 relative, so split plans would not reproduce
            # the monolithic result; networks this size gain nothing from TF32 anyway (launch-bound)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        kwargs = {}
        if spec.task == "detection" and not spec.user:
            kwargs["weights"] = (cfg.weights or None) if load_weights else None
        self.module = build_model(spec.name, **kwargs)
        self.example = torch.zeros(1, 3, size, size)
        self.graph: OpGraph = capture(self.module, self.example)
        self.graph.gm.to(self.device)
        self.task: Task = make_task(spec, self.module, size)
        if hasattr(self.task, "bind"):
            self.task.bind(self.graph.outputs)

    def check_tiles(self) -> None:
        """Each local op's tiles against the op itself, on this device (engine.verify): for the sides that compute
        tiles (robot, edge), at start-up; a geometry the engine gets wrong is a GraphCaptureError naming the op."""
        x = torch.rand(self.example.shape, generator=torch.Generator().manual_seed(0))
        verify_tiles(self.graph, x.to(self.device))

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

    def preprocess(self, rgb8: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """HxWx3 uint8 RGB camera image -> the (1,3,S,S) float input in 0..1, exactly uint8/255, and the same
        (1,3,S,S) as uint8: what the input travels as (``u8``), without encoding the float back."""
        u8 = self.letterboxed(rgb8)
        return u8.to(torch.float32).div_(255.0), u8

    def letterboxed(self, rgb8: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB camera image -> the (1,3,S,S) uint8 network input (before scaling to 0..1)."""
        # planes split by OpenCV: 2.5x cheaper than a strided permute copy of the HxWx3 image
        return torch.from_numpy(np.stack(cv2.split(letterbox(rgb8, self.size).image)))[None]

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


class EdgeRuntime:
    """The edge's side: its profile, and the edge's share of frames as packets arrive."""

    def __init__(self, cfg: ModelConfig, profile_cache_dir: str = "", log: Log = print):
        self.m = ModelRuntime(cfg)
        self.m.check_tiles()
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

    def drop_frame(self, key: tuple[str, int]) -> None:
        """Forget frame ``key`` = (session, seq)."""
        self.worker.frames.pop(key, None)

    def in_progress(self, key: tuple[str, int]) -> bool:
        return key in self.worker.frames


class LateOutput(Exception):
    """An output for a frame already published, or being rescued by the robot: discarded, not an error."""


class AggregatorRuntime:
    """Reassembles each frame's outputs and turns them into the task's result.

    Exactly one result per frame: the first complete one. The robot's all-local rescue of a frame (its edge part
    was late) replaces the frame's partial parts; parts that come after a frame was published or rescued are
    :class:`LateOutput`."""

    DONE_WINDOW = 1024     # frames remembered as published

    def __init__(self, cfg: ModelConfig):
        self.m = ModelRuntime(cfg, load_weights=False)   # shapes and output decoding only
        self.assembler = Assembler(self.m.graph)
        self._done: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.replaced = 0          # partial frames replaced by the robot's rescue

    def is_done(self, seq: int) -> bool:
        return seq in self._done

    def reset(self) -> None:
        """A new session (the robot restarted and counts frames from 1 again): nothing of the old one holds."""
        self.assembler.frames.clear()
        self._done.clear()

    def add(self, pkt: Packet) -> FrameOutputs | None:
        plan = Plan.parse(pkt.plan_spec)
        if plan.model != self.m.spec.name:
            raise PlanError(f"output is for model {plan.model!r}, this aggregator serves {self.m.spec.name!r}")
        seq, n = pkt.frame_seq, len(self.m.graph.ops)
        if seq in self._done:
            raise LateOutput(f"frame {seq} was already published")
        fr = self.assembler.frames.get(seq)
        if fr is not None and fr["plan"] != pkt.plan_spec:
            if plan.kind(n) == "local":
                del self.assembler.frames[seq]        # the robot's rescue: it replaces the late plan's parts
                self.replaced += 1
            elif Plan.parse(fr["plan"]).kind(n) == "local":
                raise LateOutput(f"frame {seq} is being rescued by the robot")
        fo = self.assembler.add(pkt)
        if fo is not None:
            self._done[seq] = None
            while len(self._done) > self.DONE_WINDOW:
                self._done.popitem(last=False)
        return fo

    def finalize(self, fo: FrameOutputs, image_w: int, image_h: int):
        return self.m.task.finalize(fo, image_w, image_h)
