"""What a model's outputs mean: per-tile reduction where they are produced, and the final step.

Detection heads are decoded where each row tile is computed (decoding is per grid cell, i.e. local), so
only box candidates travel to the aggregator, which runs the one non-local step: NMS. Classifier logits are
small and travel as they are; the aggregator takes the top-k.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn

from .engine.assembly import FrameOutputs
from .engine.executor import OutputFn
from .models import ModelSpec

__all__ = ["Task", "DetectionTask", "ClassificationTask", "DenseTask", "ClassScore", "make_task"]


class Task(Protocol):
    kind: str
    output_fn: OutputFn | None

    def finalize(self, fo: FrameOutputs, image_w: int, image_h: int) -> list: ...


@dataclasses.dataclass
class ClassScore:
    class_id: int
    class_name: str
    score: float


class ClassificationTask:
    kind = "classification"
    output_fn = None

    def __init__(self, top_k: int = 5, class_names: list[str] | None = None):
        self.top_k, self.class_names = top_k, class_names

    def finalize(self, fo: FrameOutputs, image_w: int, image_h: int) -> list[ClassScore]:
        (name,) = fo.parts
        logits = fo.parts[name][0][1].reshape(-1)
        p = torch.softmax(logits, 0)
        scores, ids = torch.topk(p, min(self.top_k, p.numel()))
        names = self.class_names or []
        return [ClassScore(int(i), names[i] if i < len(names) else f"class_{int(i)}", float(s))
                for s, i in zip(scores.tolist(), ids.tolist())]


class DetectionTask:
    kind = "detection"

    def __init__(self, model: nn.Module, input_size: int, conf_threshold: float = 0.25, nms_threshold: float = 0.45,
                 floor: float = 0.005):
        from .vision import detection
        self._det = detection
        self.heads = list(model.heads)          # per output, in the model's output order
        self.input_size = input_size
        self.conf_threshold, self.nms_threshold, self.floor = conf_threshold, nms_threshold, floor
        self._names: list[str] = []

    def bind(self, output_names: tuple[str, ...]) -> None:
        """Map graph output names to heads (both in the model's output order)."""
        if len(output_names) != len(self.heads):
            raise ValueError(f"model has {len(self.heads)} heads but {len(output_names)} outputs")
        self._names = list(output_names)

    def output_fn(self, name: str, rows: torch.Tensor, row_start: int) -> torch.Tensor:
        head = self.heads[self._names.index(name)]
        cand = self._det.decode_rows(rows.numpy(), row_start, head, self.input_size, floor=self.floor)
        return torch.from_numpy(np.ascontiguousarray(cand, dtype=np.float32))

    def finalize(self, fo: FrameOutputs, image_w: int, image_h: int):
        cands = [t.numpy() for name in fo.parts for _, t in fo.parts[name]]
        cand = np.concatenate(cands, 0) if cands else np.zeros((0, 7), np.float32)
        from .vision.preprocess import letterbox_geometry
        geom = letterbox_geometry(image_w, image_h, self.input_size)
        return self._det.finalize(cand, geom, self.conf_threshold, self.nms_threshold)


class DenseTask:
    """Per-pixel classes (segmentation): each row tile's scores reduce to class ids where they are computed (the
    argmax over channels is local), so only a uint8 mask travels; the aggregator maps the letterboxed mask back
    onto the camera image."""
    kind = "dense"

    def __init__(self, input_size: int):
        self.input_size = input_size

    def output_fn(self, name: str, rows: torch.Tensor, row_start: int) -> torch.Tensor:
        if rows.dim() != 4 or rows.shape[1] > 256:
            raise ValueError(f"a dense output is (N, classes <= 256, H, W), got {tuple(rows.shape)}")
        return rows.argmax(1).to(torch.uint8)                 # (N, rows, W): class ids

    def finalize(self, fo: FrameOutputs, image_w: int, image_h: int) -> np.ndarray:
        """The (image_h, image_w) uint8 class-id mask: rows reassembled, scaled to the network input (nearest),
        the letterbox border cut off and the rest scaled to the image (nearest)."""
        (name,) = fo.parts
        ids = fo.tensor(name, axis=1)[0]                       # (H', W') at the output's resolution
        if ids.is_floating_point():                            # as it travelled: u8-encoded, ids / 255
            ids = torch.round(ids * 255.0)
        mask = ids.to(torch.uint8).numpy()
        from .vision.preprocess import letterbox_geometry
        g = letterbox_geometry(image_w, image_h, self.input_size)
        ys = (np.arange(g.new_h) + g.pad_y) * mask.shape[0] // g.input_h
        xs = (np.arange(g.new_w) + g.pad_x) * mask.shape[1] // g.input_w
        boxed = mask[ys][:, xs]                               # the image's part of the input, at its new size
        yi = np.arange(image_h) * g.new_h // image_h
        xi = np.arange(image_w) * g.new_w // image_w
        return np.ascontiguousarray(boxed[yi][:, xi])


def make_task(spec: ModelSpec, model: nn.Module, input_size: int) -> Task:
    if spec.task == "detection":
        return DetectionTask(model, input_size)
    if spec.task == "dense":
        return DenseTask(input_size)
    return ClassificationTask()
