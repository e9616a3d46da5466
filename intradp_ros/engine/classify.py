"""Which operators are local, and how: row maps and tile functions.

A *local* operator's output rows depend only on a bounded window of its spatial inputs' rows, so it can be
computed tile by tile (see :mod:`intradp_ros.engine.rows`); :class:`OpClassifier` decides that per fx node from
the module or function it calls, and gives the :class:`RowMap` of each spatial input and, for operators with
row padding, the tile function that pads only at the real border. Everything else is a *barrier*.
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["RowMap", "IDENTITY", "OpClassifier"]


@dataclasses.dataclass(frozen=True)
class RowMap:
    """How an operator's output rows map to one spatial input's rows.

    kind: "window" (kernel/stride/pad/dilation along the row axis), "identity", "upsample" (nearest, integer
    factor), "pad" (pad rows on top/bottom with ``mode``). The input range of output rows [lo, hi) may extend
    past [0, H): the part outside is the operator's own padding, applied only at the real tensor border.
    """
    kind: str
    kernel: int = 1
    stride: int = 1
    pad_top: int = 0
    dilation: int = 1
    factor: int = 1
    replicate_height: int = 0   # "pad" in replicate mode: the input's height (its border rows are read)

    def input_range(self, lo: int, hi: int) -> tuple[int, int]:
        if self.kind == "identity":
            return lo, hi
        if self.kind == "upsample":
            return lo // self.factor, (hi - 1) // self.factor + 1
        if self.kind == "pad":
            a, b = lo - self.pad_top, hi - self.pad_top
            if self.replicate_height:   # rows made of padding still copy the border row: read it
                a, b = min(a, self.replicate_height - 1), max(b, 1)
            return a, b
        # window: output row r reads input rows r*s - p .. r*s - p + d*(k-1)
        first = lo * self.stride - self.pad_top
        return first, (hi - 1) * self.stride - self.pad_top + self.dilation * (self.kernel - 1) + 1


IDENTITY = RowMap("identity")


# ---------------------------------------------------------------------------------------------------------
# Classification of operators

_POINTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                      nn.Hardsigmoid, nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.ELU, nn.Mish)
_POINTWISE_FUNCS = {operator.add, operator.mul, operator.sub, operator.truediv, torch.add, torch.mul, torch.sub,
                    torch.div, torch.relu, F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, torch.sigmoid,
                    torch.tanh, F.hardswish, F.hardsigmoid, torch.sigmoid, F.elu, F.mish, torch.nn.functional.dropout}
_POINTWISE_METHODS = {"relu", "sigmoid", "tanh", "add", "mul", "sub", "div", "contiguous", "clone", "float"}


_FUNCTIONAL_POOLS = {F.max_pool2d: nn.MaxPool2d, F.avg_pool2d: nn.AvgPool2d}


def _functional_pool(node: fx.Node) -> nn.Module:
    """The module equivalent of an ``F.max_pool2d`` / ``F.avg_pool2d`` call (same arguments)."""
    args = [a for a in node.args[1:]]
    return _FUNCTIONAL_POOLS[node.target](*args, **dict(node.kwargs))


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))




class OpClassifier:
    """Decides, per fx node, whether it is local and with which row maps and tile function."""

    def __init__(self, gm: fx.GraphModule, row_axis: dict[str, int | None], shapes: dict[str, tuple]):
        self.gm, self.row_axis, self.shapes = gm, row_axis, shapes

    def spatial_inputs(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.all_input_nodes if self.row_axis.get(a.name) is not None]

    def classify(self, node: fx.Node) -> tuple[bool, dict[str, RowMap], int | None, Callable | None, str]:
        """Returns (local, row_maps, out_row_axis, tile_fn, reason)."""
        sp = self.spatial_inputs(node)
        if not sp:
            return False, {}, None, None, "no spatial input"
        axis = self.row_axis[sp[0].name]
        out_shape = self.shapes[node.name]
        if any(self.row_axis[a.name] != axis for a in sp):
            return False, {}, None, None, "inputs disagree on the row axis"
        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            return self._module(node, mod, axis, sp)
        if node.op == "call_function":
            return self._function(node, axis, sp, out_shape)
        if node.op == "call_method":
            return self._method(node, axis, sp, out_shape)
        return False, {}, None, None, f"unsupported node kind {node.op}"

    # -- helpers --------------------------------------------------------------------------------------------
    def _same_rows(self, node, axis, sp, out_shape):
        """Elementwise/pointwise: every spatial input has the output's height; constants don't vary by row."""
        if len(out_shape) <= axis:
            return False, "output lost the row axis"
        h = out_shape[axis]
        for a in sp:
            if self.shapes[a.name][axis] != h or len(self.shapes[a.name]) != len(out_shape):
                return False, "inputs of different height/rank (broadcast over rows)"
        for a in node.all_input_nodes:
            if a in sp:
                continue
            s = self.shapes.get(a.name)
            if s is None:
                continue
            off = len(out_shape) - len(s)          # right-aligned broadcasting
            if axis - off >= 0 and s[axis - off] != 1:
                return False, "a constant varies along the rows"
        return True, ""

    def _pointwise(self, node, axis, sp, out_shape):
        ok, why = self._same_rows(node, axis, sp, out_shape)
        if not ok:
            return False, {}, None, None, why
        return True, {a.name: IDENTITY for a in sp}, axis, None, ""

    def _module(self, node, mod, axis, sp):
        out_shape = self.shapes[node.name]
        if isinstance(mod, _POINTWISE_MODULES):
            return self._pointwise(node, axis, sp, out_shape)
        if isinstance(mod, nn.LayerNorm):
            n = len(mod.normalized_shape)
            if axis >= len(out_shape) - n:
                return False, {}, None, None, "LayerNorm normalises over the rows"
            return self._pointwise(node, axis, sp, out_shape)
        if isinstance(mod, nn.Linear):
            if axis == len(out_shape) - 1:
                return False, {}, None, None, "Linear over the rows"
            return self._pointwise(node, axis, sp, out_shape)
        if axis != 2 or len(out_shape) != 4:
            return False, {}, None, None, f"{type(mod).__name__} on a non-NCHW tensor"
        if isinstance(mod, nn.Conv2d):
            if mod.padding_mode != "zeros":
                return False, {}, None, None, f"Conv2d padding_mode={mod.padding_mode}"
            k, d, s = mod.kernel_size[0], mod.dilation[0], mod.stride[0]
            if isinstance(mod.padding, str):
                total = 0 if mod.padding == "valid" else d * (k - 1)
                pads = (total // 2, total - total // 2)
                pw_total = 0 if mod.padding == "valid" else mod.dilation[1] * (mod.kernel_size[1] - 1)
                pw = (pw_total // 2, pw_total - pw_total // 2)
            else:
                pads = (mod.padding[0], mod.padding[0])
                pw = (mod.padding[1], mod.padding[1])
            rm = RowMap("window", k, s, pads[0], d)
            return True, {sp[0].name: rm}, 2, _conv_tile(mod, pw), ""
        if isinstance(mod, nn.MaxPool2d):
            k, s, p, d = (_pair(mod.kernel_size)[0], _pair(mod.stride or mod.kernel_size)[0],
                          _pair(mod.padding)[0], _pair(mod.dilation)[0])
            return True, {sp[0].name: RowMap("window", k, s, p, d)}, 2, _maxpool_tile(mod), ""
        if isinstance(mod, nn.AvgPool2d):
            k, s, p = _pair(mod.kernel_size)[0], _pair(mod.stride or mod.kernel_size)[0], _pair(mod.padding)[0]
            return True, {sp[0].name: RowMap("window", k, s, p)}, 2, _avgpool_tile(mod), ""
        if isinstance(mod, (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReplicationPad2d)):
            mode = "replicate" if isinstance(mod, nn.ReplicationPad2d) else "constant"
            value = getattr(mod, "value", 0.0)
            return self._pad(sp, tuple(mod.padding), mode, value, self.shapes[sp[0].name][2])
        if isinstance(mod, nn.Upsample):
            return self._upsample(node, sp, mod.mode, mod.scale_factor, out_shape)
        return False, {}, None, None, f"{type(mod).__name__} is not a local operator"

    def _function(self, node, axis, sp, out_shape):
        t = node.target
        if t in _POINTWISE_FUNCS:
            if t is F.dropout and node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True):
                return False, {}, None, None, "dropout in training mode"
            return self._pointwise(node, axis, sp, out_shape)
        if t is torch.cat:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            dim = dim % len(out_shape)
            if dim == axis:
                return False, {}, None, None, "concatenation along the rows"
            return self._pointwise(node, axis, sp, out_shape)
        if t is torch.permute:
            return self._permute(node, axis, sp, node.args[1] if len(node.args) > 1 else node.kwargs["dims"])
        if t is F.pad:
            pad = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
            mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None) or 0.0
            if axis != 2 or len(out_shape) != 4 or mode not in ("constant", "replicate"):
                return False, {}, None, None, f"pad mode {mode} / layout not supported"
            return self._pad(sp, tuple(pad) + (0,) * (4 - len(pad)), mode, value, self.shapes[sp[0].name][2])
        if t in _FUNCTIONAL_POOLS:
            return self._module(node, _functional_pool(node), axis, sp)
        if t is F.interpolate:
            mode = node.kwargs.get("mode", "nearest")
            sf = node.kwargs.get("scale_factor", node.args[2] if len(node.args) > 2 else None)
            return self._upsample(node, sp, mode, sf, out_shape)
        return False, {}, None, None, f"{getattr(t, '__name__', t)} is not a local operator"

    def _method(self, node, axis, sp, out_shape):
        if node.target in _POINTWISE_METHODS:
            return self._pointwise(node, axis, sp, out_shape)
        if node.target == "permute":
            dims = node.args[1:] if not isinstance(node.args[1], (tuple, list)) else node.args[1]
            return self._permute(node, axis, sp, dims)
        return False, {}, None, None, f"method {node.target} is not a local operator"

    def _permute(self, node, axis, sp, dims):
        dims = [int(d) % len(dims) for d in dims]
        return True, {sp[0].name: IDENTITY}, dims.index(axis), None, ""

    def _pad(self, sp, pad, mode, value, in_height):
        left, right, top, bottom = (list(pad) + [0, 0, 0, 0])[:4]
        if min(left, right, top, bottom) < 0:
            return False, {}, None, None, "negative padding (crop)"
        rm = RowMap("pad", pad_top=top, replicate_height=in_height if mode == "replicate" else 0)
        return True, {sp[0].name: rm}, 2, _pad_tile(left, right, mode, value), ""

    def _upsample(self, node, sp, mode, sf, out_shape):
        in_h = self.shapes[sp[0].name][2]
        if mode != "nearest" or len(out_shape) != 4 or self.row_axis[sp[0].name] != 2:
            return False, {}, None, None, f"upsample mode {mode} is not local"
        f = out_shape[2] // in_h
        sf_rows = None if sf is None else float(sf if isinstance(sf, (int, float)) else sf[0])
        if f * in_h != out_shape[2] or (sf_rows is not None and sf_rows != f):
            return False, {}, None, None, "non-integer upsample factor"
        return True, {sp[0].name: RowMap("upsample", factor=f)}, 2, _upsample_tile(f), ""


# ---------------------------------------------------------------------------------------------------------
# Tile functions for operators with row padding: x holds exactly the in-bounds input rows needed; pt/pb are
# rows of the operator's own padding to add (non-zero only where the tile touches the real border).

def _conv_tile(mod: nn.Conv2d, pw: tuple[int, int]):
    def fn(x, pt, pb):
        if pt == pb == 0 and pw[0] == pw[1]:     # interior tile: let the kernel pad the columns, no copy
            return F.conv2d(x, mod.weight, mod.bias, mod.stride, (0, pw[0]), mod.dilation, mod.groups)
        x = F.pad(x, (pw[0], pw[1], pt, pb))
        return F.conv2d(x, mod.weight, mod.bias, mod.stride, 0, mod.dilation, mod.groups)
    return fn


def _maxpool_tile(mod: nn.MaxPool2d):
    k, s, d = _pair(mod.kernel_size), _pair(mod.stride or mod.kernel_size), _pair(mod.dilation)
    pw = _pair(mod.padding)[1]

    def fn(x, pt, pb):
        x = F.pad(x, (0, 0, pt, pb), value=float("-inf"))
        return F.max_pool2d(x, k, s, (0, pw), d, ceil_mode=mod.ceil_mode)
    return fn


def _avgpool_tile(mod: nn.AvgPool2d):
    k, s = _pair(mod.kernel_size), _pair(mod.stride or mod.kernel_size)
    ph, pw = _pair(mod.padding)

    def fn(x, pt, pb):
        # Sum and count separately so the divisor matches count_include_pad / ceil_mode on every window.
        xs = F.pad(x, (pw, pw, pt, pb))
        total = F.avg_pool2d(xs, k, s, 0, mod.ceil_mode, True, 1)
        if mod.divisor_override:
            return total / mod.divisor_override
        rows, cols = xs.shape[2], xs.shape[3]
        mask = torch.zeros((1, 1, rows, cols), dtype=x.dtype, device=x.device)
        if mod.count_include_pad:   # the module's own padding counts, the ceil_mode overflow does not
            mask[:, :, pt - min(pt, ph): rows - pb + min(pb, ph), :] = 1.0
        else:
            mask[:, :, pt: rows - pb, pw: cols - pw] = 1.0
        return total / F.avg_pool2d(mask, k, s, 0, mod.ceil_mode, True, 1)
    return fn


def _pad_tile(left, right, mode, value):
    def fn(x, pt, pb):
        if mode == "constant":
            return F.pad(x, (left, right, pt, pb), value=value)
        return F.pad(x, (left, right, pt, pb), mode=mode)
    return fn


def _upsample_tile(f: int):
    def fn(x, pt, pb):
        return F.interpolate(x, scale_factor=f, mode="nearest")
    return fn
