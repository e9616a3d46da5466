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

from .engine.executor import FrameOutputs, OutputFn
from .models import ModelSpec

__all__ = ["Task", "DetectionTask", "ClassificationTask", "ClassScore", "make_task"]


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


def make_task(spec: ModelSpec, model: nn.Module, input_size: int) -> Task:
    if spec.task == "detection":
        return DetectionTask(model, input_size)
    return ClassificationTask()
