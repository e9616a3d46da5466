"""ConvNeXt-style block stack (Liu et al. 2022), ConvNeXt-Tiny sizes by default: widths (96, 192, 384, 768),
depths (3, 3, 9, 3). No stochastic depth (inference only).

Random seeded weights for latency/exactness work: timing and the exactness of a split do not depend on weight
values, and no ImageNet weights ship offline. Layer scale is ~0.1 rather than the 1e-6 used for training, so each
block changes its input measurably (a near-identity block would hide bugs in a split).
Every op before the head is per-position or spatial and fx-visible: Conv2d (depthwise 7x7 = ``groups=C``),
``x.permute(...)`` to NHWC and back, LayerNorm and Linear on the last (channel) dim, GELU, layer scale ``x * g``,
residual ``x + y``. Head: ``nn.AdaptiveAvgPool2d(1)`` -> ``torch.flatten`` -> LayerNorm -> Linear.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

__all__ = ["ConvNeXt", "ConvNeXtConfig", "convnext_blocks"]


@dataclasses.dataclass(frozen=True)
class ConvNeXtConfig:
    depths: tuple[int, ...] = (3, 3, 9, 3)        # blocks per stage; ConvNeXt-Tiny
    widths: tuple[int, ...] = (96, 192, 384, 768)  # channels per stage
    num_classes: int = 1000
    seed: int = 0                                 # seed of the random initialisation

    def __post_init__(self):
        if len(self.depths) != len(self.widths):
            raise ValueError(f"ConvNeXt depths {self.depths} and widths {self.widths} must have the same length")


class LayerNorm2d(nn.Module):
    """LayerNorm over channels of an NCHW map, written as permute -> LayerNorm(C) -> permute back."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):                         # (N, C, H, W)
        x = self.norm(x.permute(0, 2, 3, 1))      # (N, H, W, C)
        return x.permute(0, 3, 1, 2)              # (N, C, H, W)


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))  # layer scale

    def forward(self, x):                         # (N, C, H, W)
        y = self.dwconv(x)
        y = y.permute(0, 2, 3, 1)                 # (N, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))  # (N, H, W, 4C) -> (N, H, W, C)
        y = y * self.gamma
        y = y.permute(0, 3, 1, 2)                 # (N, C, H, W)
        return x + y


class ConvNeXt(nn.Module):
    def __init__(self, cfg: ConvNeXtConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        layers: list[nn.Module] = [nn.Conv2d(3, w[0], 4, 4), LayerNorm2d(w[0])]  # stem, /4
        for i, (depth, dim) in enumerate(zip(cfg.depths, w)):
            if i > 0:                             # downsample, /2
                layers += [LayerNorm2d(w[i - 1]), nn.Conv2d(w[i - 1], dim, 2, 2)]
            layers += [Block(dim) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.LayerNorm(w[-1], eps=1e-6)
        self.head = nn.Linear(w[-1], cfg.num_classes)
        _init_weights(self, cfg.seed)

    def forward(self, x):                         # (N, 3, 224, 224)
        x = self.features(x)                      # (N, 768, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)     # (N, 768)
        return self.head(self.norm(x))            # (N, num_classes)


@torch.no_grad()
def _init_weights(model: nn.Module, seed: int) -> None:
    """Seeded random init: N(0, 1/fan_in) convs and linears, random LayerNorm affine, layer scale ~0.1."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.normal_(0.0, fan_in ** -0.5, generator=g)
            m.bias.normal_(0.0, 0.01, generator=g)
        elif isinstance(m, nn.LayerNorm):
            m.weight.uniform_(0.8, 1.2, generator=g)
            m.bias.normal_(0.0, 0.1, generator=g)
        elif isinstance(m, Block):
            m.gamma.uniform_(0.05, 0.15, generator=g)


def convnext_blocks(num_classes: int = 1000, seed: int = 0, depths: tuple[int, ...] = (3, 3, 9, 3),
                    widths: tuple[int, ...] = (96, 192, 384, 768)) -> ConvNeXt:
    """ConvNeXt stem + block stack + head; the defaults are ConvNeXt-Tiny (28.6M parameters at 1000 classes)."""
    return ConvNeXt(ConvNeXtConfig(tuple(depths), tuple(widths), num_classes, seed))
