"""A small U-Net (Ronneberger et al. 2015) for per-pixel classes: the dense-output task.

Random seeded weights: latency and exactness do not depend on them. Each decoder step upsamples with a 2x2
transposed convolution and pads the result to the skip's size by shape arithmetic (``skip.shape[-1] -
x.shape[-1]``, folded at capture), as U-Nets do for inputs whose side is not a power of two. Every operator is
local, so one split segment can span the whole network and the mask's row bands need no barrier.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._init import init_cnn

__all__ = ["UNet", "unet_small"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, classes: int = 21, width: int = 16, depth: int = 3, seed: int = 0):
        super().__init__()
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList(_block(c_in, c) for c_in, c in zip([3, *widths[:-2]], widths[:-1]))
        self.pool = nn.MaxPool2d(2)
        self.mid = _block(widths[-2], widths[-1])
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, 2) for c in reversed(widths[1:]))
        self.dec = nn.ModuleList(_block(c, c // 2) for c in reversed(widths[1:]))
        self.head = nn.Conv2d(width, classes, 1)
        init_cnn(self, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.mid(x)
        for up, block, skip in zip(self.up, self.dec, reversed(skips)):
            x = up(x)
            x = F.pad(x, [0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]])
            x = block(torch.cat([skip, x], 1))
        return self.head(x)


def unet_small(classes: int = 21, seed: int = 0) -> UNet:
    return UNet(classes, seed=seed).eval()
