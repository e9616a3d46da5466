"""Device helpers shared by the profiler and the executor."""
from __future__ import annotations

import torch

__all__ = ["synchronize"]


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work: a GPU computes asynchronously, and a timer must see the work, not its
    launch. A no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
