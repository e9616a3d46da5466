"""ResNet-18/50/152 (He et al. 2016; v1.5: the stride of a bottleneck sits on its 3x3 conv).

Written from the paper for latency/exactness work: the weights are random but seeded, because timing and the
exactness of a split do not depend on weight values and no ImageNet weights ship offline. BatchNorm running
statistics are random too (identity BN would hide bugs in a split), and the last BN of every residual branch
gets a small gamma so eval-mode activations stay in range through 152 layers.
Forward passes use plain fx-visible ops: ``nn.Conv2d``/``nn.BatchNorm2d``/``nn.ReLU``, residual ``out + identity``,
then the head ``nn.AdaptiveAvgPool2d(1)`` -> ``torch.flatten`` -> ``nn.Linear``.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ._init import init_cnn

__all__ = ["ResNet", "ResNetConfig", "resnet18", "resnet50", "resnet152"]


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    block: str = "bottleneck"             # "basic" (ResNet-18/34) or "bottleneck" (ResNet-50 and deeper)
    layers: tuple[int, ...] = (3, 4, 6, 3)  # blocks per stage; ResNet-50
    num_classes: int = 1000
    seed: int = 0                         # seed of the random initialisation

    def __post_init__(self):
        if self.block not in ("basic", "bottleneck") or len(self.layers) != 4:
            raise ValueError(f"ResNet needs block 'basic' or 'bottleneck' and 4 stages, got {self.block!r}, "
                             f"layers={self.layers}")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):                                 # (N, inplanes, H, W)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))         # (N, planes, H/s, W/s)
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)                 # (N, planes, H/s, W/s)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu3 = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):                                 # (N, inplanes, H, W)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))         # (N, planes, H, W)
        out = self.relu2(self.bn2(self.conv2(out)))       # (N, planes, H/s, W/s)
        out = self.bn3(self.conv3(out))                   # (N, 4*planes, H/s, W/s)
        return self.relu3(out + identity)


class ResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        block = BasicBlock if cfg.block == "basic" else Bottleneck
        self.cfg = cfg
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), cfg.layers)):
            stride, down = (1 if i == 0 else 2), None
            if stride != 1 or inplanes != planes * block.expansion:  # projection shortcut
                down = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes * block.expansion))
            layer = [block(inplanes, planes, stride, down)]
            inplanes = planes * block.expansion
            layer += [block(inplanes, planes) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, cfg.num_classes)
        _init_weights(self, cfg.seed)

    def forward(self, x):                                 # (N, 3, 224, 224)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, 56, 56)
        x = self.layer1(x)                                # (N, 64*e, 56, 56)
        x = self.layer2(x)                                # (N, 128*e, 28, 28)
        x = self.layer3(x)                                # (N, 256*e, 14, 14)
        x = self.layer4(x)                                # (N, 512*e, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)             # (N, 512*e)
        return self.fc(x)                                 # (N, num_classes)


@torch.no_grad()
def _init_weights(model: nn.Module, seed: int) -> None:
    g = init_cnn(model, seed)
    for m in model.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):  # small gamma on the residual branch's last BN
            (m.bn2 if isinstance(m, BasicBlock) else m.bn3).weight.uniform_(0.1, 0.3, generator=g)


def _resnet(block: str, layers: tuple[int, ...], num_classes: int, seed: int) -> ResNet:
    return ResNet(ResNetConfig(block, layers, num_classes, seed))


def resnet18(num_classes: int = 1000, seed: int = 0) -> ResNet:
    """ResNet-18, 11.7M parameters at 1000 classes."""
    return _resnet("basic", (2, 2, 2, 2), num_classes, seed)


def resnet50(num_classes: int = 1000, seed: int = 0) -> ResNet:
    """ResNet-50, 25.6M parameters at 1000 classes."""
    return _resnet("bottleneck", (3, 4, 6, 3), num_classes, seed)


def resnet152(num_classes: int = 1000, seed: int = 0) -> ResNet:
    """ResNet-152, 60.2M parameters at 1000 classes."""
    return _resnet("bottleneck", (3, 8, 36, 3), num_classes, seed)
