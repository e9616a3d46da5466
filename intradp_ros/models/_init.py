"""Seeded random initialisation shared by the zoo's CNNs.

No ImageNet weights install offline, and latency and exactness do not depend on weight values; but batch
norm must not be the identity (it would hide halo bugs) and activations must stay in range through 150 layers.
"""
from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def init_cnn(model: nn.Module, seed: int, linear_gain: float = 1.0) -> torch.Generator:
    """He-normal convs (true fan-in, so depthwise too), random BN affine and running stats, N(0, gain/fan-in)
    linears. Returns the generator, for model-specific touches (e.g. small residual-branch gamma)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.normal_(0.0, (2.0 / m.weight[0].numel()) ** 0.5, generator=g)
            if m.bias is not None:
                m.bias.normal_(0.0, 0.01, generator=g)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.2, generator=g)
            m.bias.normal_(0.0, 0.1, generator=g)
            m.running_mean.normal_(0.0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
        elif isinstance(m, nn.Linear):
            m.weight.normal_(0.0, (linear_gain / m.in_features) ** 0.5, generator=g)
            m.bias.normal_(0.0, 0.01, generator=g)
    return g
