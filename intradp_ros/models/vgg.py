"""VGG19 with batch norm (Simonyan & Zisserman 2015, configuration "E" plus BN after every conv).

Random seeded weights for latency/exactness work: timing and the exactness of a split do not depend on weight
values, and no ImageNet weights ship offline. BatchNorm running statistics are random (identity BN would hide
bugs in a split). The feature extractor is 16 x (Conv3x3 -> BN -> ReLU) with 5 MaxPool2d(2); the head is
``nn.AdaptiveAvgPool2d((7, 7))`` -> ``torch.flatten`` -> Linear(25088, 4096) -> ReLU -> Dropout -> Linear ->
ReLU -> Dropout -> Linear (dropout is the identity in eval mode).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ._init import init_cnn

__all__ = ["VGG", "VGGConfig", "vgg19_bn"]

_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


@dataclasses.dataclass(frozen=True)
class VGGConfig:
    layers: tuple = _VGG19    # conv widths, "M" = 2x2 max pool
    num_classes: int = 1000
    dropout: float = 0.5      # classifier dropout (identity in eval mode)
    seed: int = 0             # seed of the random initialisation


class VGG(nn.Module):
    def __init__(self, cfg: VGGConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c = 3
        for v in cfg.layers:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c * 7 * 7, 4096), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(4096, cfg.num_classes))
        _init_weights(self, cfg.seed)

    def forward(self, x):                           # (N, 3, 224, 224)
        x = self.features(x)                        # (N, 512, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)       # (N, 25088)
        return self.classifier(x)                   # (N, num_classes)


def _init_weights(model: nn.Module, seed: int) -> None:
    init_cnn(model, seed, linear_gain=2.0)   # ReLU after each hidden linear


def vgg19_bn(num_classes: int = 1000, seed: int = 0, dropout: float = 0.5) -> VGG:
    """VGG19-BN, 143.7M parameters at 1000 classes."""
    return VGG(VGGConfig(num_classes=num_classes, dropout=dropout, seed=seed))
