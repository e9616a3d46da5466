"""Row geometry and tile functions of local operators: which input rows an output tile reads, and how to compute
exactly those output rows from them.

Every tile function has one signature, ``fn(x, a, lo, hi, h) -> rows [lo, hi) of the output``: ``x`` holds the
in-bounds input rows ``[a, a + x.shape[2])`` that :meth:`RowMap.input_range` asked for (clipped to the input's
``h`` rows; possibly none), so an operator's own padding is applied only where a tile touches the real border.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["RowMap", "IDENTITY", "TileFn", "window_tile", "conv_fn", "maxpool_fn", "avgpool_fn",
           "pixel_unshuffle_fn", "constant_pad_tile", "pad_rows_map", "gather_tile", "interpolation_taps",
           "taps_tile", "transpose_tile", "upsample_tile", "reshape_tile"]

TileFn = Callable[[torch.Tensor, int, int, int, int], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class RowMap:
    """How an operator's output rows map to one spatial input's rows.

    kind:
      - "identity": row r reads row r;
      - "window": kernel/stride/pad/dilation along the rows (convolution, pooling, pixel unshuffle);
      - "upsample": row r reads row r // factor (pixel shuffle);
      - "pad": constant padding of ``pad_top`` rows on top;
      - "transpose": a transposed convolution (kernel, stride, pad_top = its padding, dilation);
      - "support": row r reads rows ``support[r]`` = (first, stop) (interpolation, reflect/replicate padding).
    The range of output rows [lo, hi) may extend past [0, H): the part outside is the operator's own padding.
    """
    kind: str
    kernel: int = 1
    stride: int = 1
    pad_top: int = 0
    dilation: int = 1
    factor: int = 1
    support: tuple[tuple[int, int], ...] = ()

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        if hi <= lo or self.kind == "identity":
            return lo, hi
        if self.kind == "upsample":
            return lo // self.factor, (hi - 1) // self.factor + 1
        if self.kind == "pad":
            return lo - self.pad_top, hi - self.pad_top
        if self.kind == "support":
            rows = self.support[lo:hi]
            return min(r[0] for r in rows), max(r[1] for r in rows)
        if self.kind == "transpose":
            # output row o (padded coordinates) receives input row i through tap t when i*s + t*d - p = o
            s, reach = self.stride, self.dilation * (self.kernel - 1)
            return -((self.pad_top + reach - lo) // s), (hi - 1 + self.pad_top) // s + 1
        # window: output row r reads input rows r*s - p .. r*s - p + d*(k-1)
        first = lo * self.stride - self.pad_top
        return first, (hi - 1) * self.stride - self.pad_top + self.dilation * (self.kernel - 1) + 1


IDENTITY = RowMap("identity")


def _borders(rm: RowMap, lo: int, hi: int, h: int) -> tuple[int, int]:
    """Rows of the operator's own padding a tile needs on top and at the bottom (0 away from the border)."""
    ilo, ihi = rm.input_range(lo, hi)
    return max(0, -ilo), max(0, ihi - h)


def window_tile(rm: RowMap, fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> TileFn:
    """A windowed operator given as ``fn(x, pad top, pad bottom)`` that computes every output row its input
    rows (plus that padding) allow: exactly rows [lo, hi)."""
    def tile(x, a, lo, hi, h):
        pt, pb = _borders(rm, lo, hi, h)
        return fn(x, pt, pb).narrow(2, 0, hi - lo)
    return tile


def conv_fn(mod: nn.Conv2d, pw: tuple[int, int]):
    def fn(x, pt, pb):
        if pt == pb == 0 and pw[0] == pw[1]:     # interior tile: let the kernel pad the columns, no copy
            return F.conv2d(x, mod.weight, mod.bias, mod.stride, (0, pw[0]), mod.dilation, mod.groups)
        x = F.pad(x, (pw[0], pw[1], pt, pb))
        return F.conv2d(x, mod.weight, mod.bias, mod.stride, 0, mod.dilation, mod.groups)
    return fn


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def maxpool_fn(mod: nn.MaxPool2d):
    k, s, d = _pair(mod.kernel_size), _pair(mod.stride or mod.kernel_size), _pair(mod.dilation)
    pw = _pair(mod.padding)[1]

    def fn(x, pt, pb):
        x = F.pad(x, (0, 0, pt, pb), value=float("-inf"))
        return F.max_pool2d(x, k, s, (0, pw), d, ceil_mode=mod.ceil_mode)
    return fn


def avgpool_fn(mod: nn.AvgPool2d, out_w: int):
    k, s = _pair(mod.kernel_size), _pair(mod.stride or mod.kernel_size)
    ph, pw = _pair(mod.padding)

    def fn(x, pt, pb):
        # Sum and count separately so the divisor matches count_include_pad / ceil_mode on every window. The
        # columns are padded here too, so ceil_mode may yield one column more than the module keeps: cut to out_w.
        xs = F.pad(x, (pw, pw, pt, pb))
        total = F.avg_pool2d(xs, k, s, 0, mod.ceil_mode, True, 1)[..., :out_w]
        if mod.divisor_override:
            return total / mod.divisor_override
        rows, cols = xs.shape[2], xs.shape[3]
        mask = torch.zeros((1, 1, rows, cols), dtype=x.dtype, device=x.device)
        if mod.count_include_pad:   # the module's own padding counts, the ceil_mode overflow does not
            mask[:, :, pt - min(pt, ph): rows - pb + min(pb, ph), :] = 1.0
        else:
            mask[:, :, pt: rows - pb, pw: cols - pw] = 1.0
        return total / F.avg_pool2d(mask, k, s, 0, mod.ceil_mode, True, 1)[..., :out_w]
    return fn


def pixel_unshuffle_fn(r: int):
    return lambda x, pt, pb: F.pixel_unshuffle(x, r)


def constant_pad_tile(rm: RowMap, left: int, right: int, value: float) -> TileFn:
    def tile(x, a, lo, hi, h):
        pt, pb = _borders(rm, lo, hi, h)
        return F.pad(x, (left, right, pt, pb), value=value).narrow(2, 0, hi - lo)
    return tile


def pad_rows_map(h: int, top: int, bottom: int, mode: str) -> tuple[int, ...]:
    """Input row of each output row of a reflect / replicate / circular pad of ``h`` rows."""
    src = []
    for o in range(h + top + bottom):
        i = o - top
        if mode == "reflect":
            i = -i if i < 0 else 2 * (h - 1) - i if i >= h else i
        elif mode == "replicate":
            i = min(max(i, 0), h - 1)
        else:                                    # circular
            i %= h
        src.append(i)
    return tuple(src)


def gather_tile(src: Sequence[int], cols: Callable[[torch.Tensor], torch.Tensor]) -> TileFn:
    """Rows copied from input rows ``src[r]`` (padding modes that read the input), then ``cols`` applied to the
    columns of the tile (the same padding along the width)."""
    index = torch.tensor(src, dtype=torch.long)

    def tile(x, a, lo, hi, h):
        return cols(x.index_select(2, (index[lo:hi] - a).to(x.device)))
    return tile


def interpolation_taps(in_h: int, call: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The interpolation weights along the rows, as torch computes them: ``call`` (the model's own interpolate
    call, made to keep the width) applied to an identity image (row i = one-hot i) gives, in output row r, the
    weight of every input row. Returns (index, weight), each (out rows, taps), padded with zero weights."""
    eye = torch.eye(in_h, dtype=torch.float64).view(1, 1, in_h, in_h)
    w = call(eye)[0, 0]                               # (out rows, in rows)
    nz = w != 0
    taps = max(1, int(nz.sum(1).max()))
    index = torch.zeros((w.shape[0], taps), dtype=torch.long)
    weight = torch.zeros((w.shape[0], taps), dtype=torch.float64)
    for r in range(w.shape[0]):
        cols = nz[r].nonzero().flatten()
        if len(cols) == 0:
            cols = torch.tensor([0])
        index[r, :len(cols)] = cols
        weight[r, :len(cols)] = w[r, cols]
        index[r, len(cols):] = cols[-1]
    return index, weight


def taps_tile(index: torch.Tensor, weight: torch.Tensor, cols: Callable[[torch.Tensor], torch.Tensor]) -> TileFn:
    """Rows as weighted sums of input rows (``index``/``weight`` of :func:`interpolation_taps`), then ``cols``
    interpolates the columns (the model's call with the rows left as they are)."""
    def tile(x, a, lo, hi, h):
        idx, w = index[lo:hi], weight[lo:hi].to(x.dtype)
        rows = x.index_select(2, (idx.flatten() - a).to(x.device))
        rows = rows.unflatten(2, idx.shape)                    # (N, C, rows, taps, W)
        return cols((rows * w.to(x.device)[:, :, None]).sum(3))
    return tile


def transpose_tile(mod: nn.ConvTranspose2d, out_w: int) -> TileFn:
    """Output rows of a transposed convolution: the contributions of the input rows that reach them, zeros (and
    the bias) where none does."""
    s, p = mod.stride[0], mod.padding[0]

    def tile(x, a, lo, hi, h):
        out = x.new_zeros((x.shape[0], mod.out_channels, hi - lo, out_w))
        if x.shape[2]:
            y = F.conv_transpose2d(x, mod.weight, None, (s, mod.stride[1]), (0, mod.padding[1]),
                                   (0, mod.output_padding[1]), mod.groups, mod.dilation)
            first = a * s - p                                  # output row of y's first row
            top, bottom = max(lo, first), min(hi, first + y.shape[2])
            if bottom > top:
                out[:, :, top - lo:bottom - lo] = y[:, :, top - first:bottom - first, :out_w]
        if mod.bias is not None:
            out += mod.bias.view(1, -1, 1, 1)
        return out
    return tile


def upsample_tile(factor: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> TileFn:
    """Row r from input row r // factor (pixel shuffle): ``fn`` on the input rows yields output rows from
    ``a * factor``."""
    def tile(x, a, lo, hi, h):
        return fn(x).narrow(2, lo - a * factor, hi - lo)
    return tile


def reshape_tile(out_shape: Sequence[int], axis: int) -> TileFn:
    """A view or reshape that regroups the axes before the row axis: the tile's rows in place of the height."""
    def tile(x, a, lo, hi, h):
        shape = list(out_shape)
        shape[axis] = hi - lo
        return x.reshape(shape)
    return tile
