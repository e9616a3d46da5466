"""DenseNet-121 (Huang et al. 2017): DenseNet-BC, growth rate 32, blocks (6, 12, 24, 16), compression 0.5.

Random seeded weights for latency/exactness work: timing and the exactness of a split do not depend on weight
values, and no ImageNet weights ship offline. BatchNorm running statistics are random (identity BN would hide
bugs in a split). Each dense layer is ``torch.cat`` of all earlier feature maps -> BN-ReLU-Conv1x1 (4k channels)
-> BN-ReLU-Conv3x3 (k channels); each transition is BN-ReLU-Conv1x1-AvgPool2d(2). Head: BN -> ReLU ->
``nn.AdaptiveAvgPool2d(1)`` -> ``torch.flatten`` -> Linear(1024, num_classes).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ._init import init_cnn

__all__ = ["DenseNet", "DenseNetConfig", "densenet121"]


@dataclasses.dataclass(frozen=True)
class DenseNetConfig:
    growth_rate: int = 32                       # k: channels each dense layer adds
    block_config: tuple[int, ...] = (6, 12, 24, 16)  # dense layers per block; DenseNet-121
    init_features: int = 64                     # stem output channels
    bn_size: int = 4                            # bottleneck width = bn_size * k
    num_classes: int = 1000
    seed: int = 0                               # seed of the random initialisation


def _bn_relu_conv(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, k, 1, k // 2, bias=False))


class DenseBlock(nn.Module):
    def __init__(self, n_layers: int, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(_bn_relu_conv(cin + i * growth, bn_size * growth, 1),   # bottleneck 1x1
                          _bn_relu_conv(bn_size * growth, growth, 3))             # 3x3, k new channels
            for i in range(n_layers))

    def forward(self, x):                          # (N, cin, H, W)
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)              # (N, cin + n_layers*k, H, W)


class DenseNet(nn.Module):
    def __init__(self, cfg: DenseNetConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.init_features
        stages: list[nn.Module] = [nn.Conv2d(3, c, 7, 2, 3, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                   nn.MaxPool2d(3, 2, 1)]
        for i, n in enumerate(cfg.block_config):
            stages.append(DenseBlock(n, c, cfg.growth_rate, cfg.bn_size))
            c += n * cfg.growth_rate
            if i != len(cfg.block_config) - 1:     # transition: halve channels and resolution
                stages += [_bn_relu_conv(c, c // 2, 1), nn.AvgPool2d(2, 2)]
                c //= 2
        stages += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, cfg.num_classes)
        _init_weights(self, cfg.seed)

    def forward(self, x):                          # (N, 3, 224, 224)
        x = self.features(x)                       # (N, 1024, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)      # (N, 1024)
        return self.classifier(x)                  # (N, num_classes)


def _init_weights(model: nn.Module, seed: int) -> None:
    init_cnn(model, seed)


def densenet121(num_classes: int = 1000, seed: int = 0) -> DenseNet:
    """DenseNet-121, 8.0M parameters at 1000 classes."""
    return DenseNet(DenseNetConfig(num_classes=num_classes, seed=seed))
