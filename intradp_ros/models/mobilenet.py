"""MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks, width multiplier 1.0.

Random seeded weights for latency/exactness work: timing and the exactness of a split do not depend on weight
values, and no ImageNet weights ship offline. BatchNorm running statistics are random (identity BN would hide
bugs in a split); the projection BN of every residual block gets a small gamma so activations stay in range.
Ops are fx-visible: Conv2d (depthwise = ``groups=channels``), BatchNorm2d, ReLU6, residual ``x + out``, then the
head ``nn.AdaptiveAvgPool2d(1)`` -> ``torch.flatten`` -> Dropout -> Linear(1280, num_classes).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ._init import init_cnn

__all__ = ["MobileNetV2", "MobileNetV2Config", "mobilenet_v2"]

# (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))


@dataclasses.dataclass(frozen=True)
class MobileNetV2Config:
    settings: tuple = _SETTINGS  # inverted-residual stages (t, c, n, s)
    stem_channels: int = 32
    last_channels: int = 1280
    num_classes: int = 1000
    dropout: float = 0.2         # classifier dropout (identity in eval mode)
    seed: int = 0                # seed of the random initialisation


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [_conv_bn(cin, hidden, 1)] if expand != 1 else []   # 1x1 expand
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),  # 3x3 depthwise
                   _conv_bn(hidden, cout, 1, act=False)]               # 1x1 linear projection
        self.conv = nn.Sequential(*layers)

    def forward(self, x):                            # (N, cin, H, W)
        out = self.conv(x)                           # (N, cout, H/s, W/s)
        return x + out if self.use_res else out


class MobileNetV2(nn.Module):
    def __init__(self, cfg: MobileNetV2Config):
        super().__init__()
        self.cfg = cfg
        c = cfg.stem_channels
        layers: list[nn.Module] = [_conv_bn(3, c, 3, 2)]
        for t, cout, n, s in cfg.settings:
            for i in range(n):
                layers.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
                c = cout
        layers.append(_conv_bn(c, cfg.last_channels, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.last_channels, cfg.num_classes))
        _init_weights(self, cfg.seed)

    def forward(self, x):                            # (N, 3, 224, 224)
        x = self.features(x)                         # (N, 1280, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)        # (N, 1280)
        return self.classifier(x)                    # (N, num_classes)


@torch.no_grad()
def _init_weights(model: nn.Module, seed: int) -> None:
    g = init_cnn(model, seed)
    for m in model.modules():
        if isinstance(m, InvertedResidual) and m.use_res:  # small gamma on the projection BN of the residual
            m.conv[-1][1].weight.uniform_(0.1, 0.3, generator=g)


def mobilenet_v2(num_classes: int = 1000, seed: int = 0, dropout: float = 0.2) -> MobileNetV2:
    """MobileNetV2 (width 1.0), 3.5M parameters at 1000 classes."""
    return MobileNetV2(MobileNetV2Config(num_classes=num_classes, dropout=dropout, seed=seed))
