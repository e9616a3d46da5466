"""Model zoo: every network the engine can split, built by name, and users' own networks by factory.

Each entry is a :class:`ModelSpec`: how to build the ``nn.Module`` (eval mode, fx-traceable), its input size,
and what its outputs mean (``task``), so the nodes can serve any of them through one path.
Random initialisation is used where no trained weights ship (timing does not depend on weight values).

A model named ``package.module:function`` is a user's: the function (importable on robot and edge alike) returns
a :class:`UserModel`, or a bare ``nn.Module`` (then a classifier at 224 pixels).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import torch.nn as nn

__all__ = ["ModelSpec", "MODELS", "TASKS", "UserModel", "build_model", "model_names", "get_spec"]

TASKS = ("classification", "detection", "dense")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: str                  # "module:function" returning an eval-mode nn.Module; kwargs from build_model
    input_size: int               # default square input side in pixels
    task: str = "classification"  # "detection" (boxes on /intradp/detections), "classification" (top-k) or
                                  # "dense" (a class id per pixel on /intradp/segmentation)
    size_multiple: int = 32       # input side must be a multiple of this
    description: str = ""

    @property
    def user(self) -> bool:
        """Built by a user's factory (``model:=package.module:function``), not the zoo."""
        return self.builder == self.name

    def build(self, **kwargs) -> nn.Module:
        if self.user:
            return _user_model(self.name).module.eval()
        module_name, func_name = self.builder.split(":")
        func: Callable[..., nn.Module] = getattr(importlib.import_module(module_name), func_name)
        return func(**kwargs).eval()


@dataclasses.dataclass(frozen=True)
class UserModel:
    """What a model factory returns: the network, the square input side it runs at, and what its output means.

    - "classification": one output of logits (N, K) or (N, K, 1, 1); top-k classes are published;
    - "dense": one output (N, K, H', W') of per-pixel class scores; the aggregator publishes the argmax per pixel
      (mono8 class ids) at the camera image's size;
    - "detection": YOLO-style heads listed in ``module.heads`` (see ``intradp_ros.models.yolov3_tiny``)."""
    module: nn.Module
    input_size: int = 224
    task: str = "classification"
    size_multiple: int = 1
    description: str = ""


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
    ModelSpec("unet_small", _P + "unet:unet_small", 256, "dense", size_multiple=8,
              description="U-Net (3 levels, width 16, 21 classes), random weights: per-pixel classes"),
    ModelSpec("convnext_tiny_blocks", _P + "convnext:convnext_blocks", 224,
              description="ConvNeXt-style stem + block stack, random weights"),
]}


def model_names() -> list[str]:
    return sorted(MODELS)


def get_spec(name: str) -> ModelSpec:
    if ":" in name:
        um = _user_model(name)
        return ModelSpec(name, name, um.input_size, um.task, um.size_multiple,
                         um.description or f"{type(um.module).__name__} from {name}")
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())}, or "
                         "package.module:function for your own (a factory returning a UserModel)") from None


_USER_MODELS: dict[str, UserModel] = {}


def _user_model(name: str) -> UserModel:
    """Call the factory ``name`` once per process (robot, edge and aggregator each build the same network)."""
    if name in _USER_MODELS:
        return _USER_MODELS[name]
    module_name, _, func_name = name.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"model {name!r}: cannot import {func_name!r} from {module_name!r} ({e}); a user model is "
                         "package.module:function, importable on every machine that runs a node") from None
    made = func()
    um = made if isinstance(made, UserModel) else UserModel(made) if isinstance(made, nn.Module) else None
    if um is None or not isinstance(um.module, nn.Module):
        raise ValueError(f"model {name!r}: the factory returned {type(made).__name__}, not a UserModel or nn.Module")
    if um.task not in TASKS or um.input_size <= 0 or um.size_multiple <= 0:
        raise ValueError(f"model {name!r}: task {um.task!r} (one of {', '.join(TASKS)}), input_size "
                         f"{um.input_size} and size_multiple {um.size_multiple} (positive) are not valid")
    if um.task == "detection" and not hasattr(um.module, "heads"):
        raise ValueError(f"model {name!r}: a detection model lists its YOLO heads in module.heads")
    _USER_MODELS[name] = um
    return um


def build_model(name: str, **kwargs) -> nn.Module:
    """Build model ``name`` in eval mode. kwargs go to its builder (e.g. ``weights=`` for yolov3_tiny)."""
    return get_spec(name).build(**kwargs)
