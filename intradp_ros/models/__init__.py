"""Model zoo: every network the engine can split, built by name.

Each entry is a :class:`ModelSpec`: how to build the ``nn.Module`` (eval mode, fx-traceable), its input size,
and what its outputs mean (``task``), so the nodes can serve any of them through one path.
Random initialisation is used where no trained weights ship (timing does not depend on weight values).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import torch.nn as nn

__all__ = ["ModelSpec", "MODELS", "build_model", "model_names", "get_spec"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: str                  # "module:function" returning an eval-mode nn.Module; kwargs from build_model
    input_size: int               # default square input side in pixels
    task: str = "classification"  # "detection" (boxes on /intradp/detections) or "classification" (top-k)
    size_multiple: int = 32       # input side must be a multiple of this
    description: str = ""

    def build(self, **kwargs) -> nn.Module:
        module_name, func_name = self.builder.split(":")
        func: Callable[..., nn.Module] = getattr(importlib.import_module(module_name), func_name)
        return func(**kwargs).eval()


_P = "intradp_ros.models."
MODELS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("yolov3_tiny", _P + "yolov3_tiny:yolov3_tiny", 416, "detection",
              description="YOLOv3-tiny, darknet COCO weights (80 classes)"),
    ModelSpec("vgg19_bn", _P + "vgg:vgg19_bn", 224, description="VGG19 with batch norm, random weights"),
    ModelSpec("resnet18", _P + "resnet:resnet18", 224, description="ResNet-18, random weights"),
    ModelSpec("resnet50", _P + "resnet:resnet50", 224, description="ResNet-50, random weights"),
    ModelSpec("resnet152", _P + "resnet:resnet152", 224, description="ResNet-152, random weights"),
    ModelSpec("mobilenet_v2", _P + "mobilenet:mobilenet_v2", 224, description="MobileNetV2, random weights"),
    ModelSpec("densenet121", _P + "densenet:densenet121", 224, description="DenseNet-121, random weights"),
    ModelSpec("convnext_tiny_blocks", _P + "convnext:convnext_blocks", 224,
              description="ConvNeXt-style stem + block stack, random weights"),
]}


def model_names() -> list[str]:
    return sorted(MODELS)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())}") from None


def build_model(name: str, **kwargs) -> nn.Module:
    """Build model ``name`` in eval mode. kwargs go to its builder (e.g. ``weights=`` for yolov3_tiny)."""
    return get_spec(name).build(**kwargs)
