"""Which operators are local, and how.

A *local* operator's output rows depend only on a bounded window of its spatial inputs' rows, so it can be
computed tile by tile (see :mod:`intradp_ros.engine.rows`). :class:`OpClassifier` decides that per fx node from
the module or function it calls, and gives the :class:`~intradp_ros.engine.tiles.RowMap` of each spatial input
and, for operators whose rows are not computed one for one, the tile function (:mod:`intradp_ros.engine.tiles`).
Everything else is a *barrier*: global pooling, attention, squeeze-and-excitation gates, concatenation along
the rows; the planner gathers the rows there.
"""
from __future__ import annotations

import operator
from typing import Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from . import tiles
from .fold import item_of
from .tiles import IDENTITY, RowMap

__all__ = ["OpClassifier"]

_POINTWISE_MODULES = (nn.ReLU, nn.Hardtanh, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                      nn.Hardsigmoid, nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.ELU, nn.Mish,
                      nn.PReLU, nn.Softplus, nn.SELU, nn.CELU, nn.ChannelShuffle)   # Hardtanh covers ReLU6
_POINTWISE_FUNCS = {operator.add, operator.mul, operator.sub, operator.truediv, operator.neg, operator.pow,
                    torch.add, torch.mul, torch.sub, torch.div, torch.relu, F.relu, F.relu6, F.leaky_relu, F.gelu,
                    F.silu, torch.sigmoid, torch.tanh, F.hardswish, F.hardsigmoid, F.hardtanh, F.elu, F.mish,
                    F.softplus, F.dropout, torch.clamp, torch.clip, torch.channel_shuffle, F.channel_shuffle,
                    torch.exp, torch.abs, torch.neg, torch.sqrt, torch.pow, torch.maximum, torch.minimum}
_POINTWISE_METHODS = {"relu", "sigmoid", "tanh", "add", "mul", "sub", "div", "contiguous", "clone", "float",
                      "clamp", "clip", "clamp_min", "clamp_max", "exp", "abs", "neg", "pow", "sqrt"}
_CHANNEL_NORMALISERS = {F.softmax: "softmax", F.log_softmax: "log_softmax", torch.softmax: "softmax",
                        torch.log_softmax: "log_softmax"}
_REDUCTIONS = {"sum", "mean", "amax", "amin", "argmax", "argmin"}
_FUNCTIONAL_POOLS = {F.max_pool2d: nn.MaxPool2d, F.avg_pool2d: nn.AvgPool2d}
_PAD_MODULES = {nn.ZeroPad2d: "constant", nn.ConstantPad2d: "constant", nn.ReplicationPad2d: "replicate",
                nn.ReflectionPad2d: "reflect", nn.CircularPad2d: "circular"}

def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _arg(node: fx.Node, i: int, name: str, default=None):
    return node.kwargs.get(name, node.args[i] if len(node.args) > i else default)


Result = tuple[bool, dict[str, RowMap], "int | None", "Callable | None", str]


def _barrier(why: str) -> Result:
    return False, {}, None, None, why


def _conv(mod: nn.Conv2d, sp) -> Result:
    if mod.padding_mode != "zeros":
        return _barrier(f"Conv2d padding_mode={mod.padding_mode}")
    k, d, s = mod.kernel_size[0], mod.dilation[0], mod.stride[0]
    if isinstance(mod.padding, str):
        total = 0 if mod.padding == "valid" else d * (k - 1)
        top = total // 2
        pw_total = 0 if mod.padding == "valid" else mod.dilation[1] * (mod.kernel_size[1] - 1)
        pw = (pw_total // 2, pw_total - pw_total // 2)
    else:
        top, pw = mod.padding[0], (mod.padding[1], mod.padding[1])
    rm = RowMap("window", k, s, top, d)
    return True, {sp[0].name: rm}, 2, tiles.window_tile(rm, tiles.conv_fn(mod, pw)), ""


def _pad(sp, shapes, pad, mode, value) -> Result:
    left, right, top, bottom = (list(pad) + [0, 0, 0, 0])[:4]
    if min(left, right, top, bottom) < 0 and mode != "constant":
        return _barrier(f"negative {mode} padding")        # a crop (constant mode) is local
    name, h = sp[0].name, shapes[sp[0].name][2]
    if mode == "constant":
        rm = RowMap("pad", pad_top=top)
        return True, {name: rm}, 2, tiles.constant_pad_tile(rm, left, right, value), ""
    if mode not in ("reflect", "replicate", "circular"):
        return _barrier(f"pad mode {mode}")
    src = tiles.pad_rows_map(h, top, bottom, mode)
    rm = RowMap("support", support=tuple((i, i + 1) for i in src))
    return True, {name: rm}, 2, tiles.gather_tile(src, lambda x: F.pad(x, (left, right, 0, 0), mode=mode)), ""


class OpClassifier:
    """Decides, per fx node, whether it is local and with which row maps and tile function."""

    def __init__(self, gm: fx.GraphModule, row_axis: dict[str, int | None], shapes: dict[str, tuple]):
        self.gm, self.row_axis, self.shapes = gm, row_axis, shapes

    def spatial_inputs(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.all_input_nodes if self.row_axis.get(a.name) is not None]

    def classify(self, node: fx.Node) -> Result:
        """Returns (local, row_maps, out_row_axis, tile_fn, reason)."""
        sp = self.spatial_inputs(node)
        if not sp:
            return _barrier("no spatial input")
        axis = self.row_axis[sp[0].name]
        if any(self.row_axis[a.name] != axis for a in sp):
            return _barrier("inputs disagree on the row axis")
        if node.op == "call_module":
            return self._module(node, self.gm.get_submodule(node.target), axis, sp)
        if node.op == "call_function":
            return self._function(node, node.target, axis, sp)
        if node.op == "call_method":
            return self._method(node, axis, sp)
        return _barrier(f"unsupported node kind {node.op}")

    # -- helpers --------------------------------------------------------------------------------------------
    def _same_rows(self, node, axis, sp):
        """Elementwise/pointwise: every spatial input has the output's height; constants don't vary by row."""
        out_shape = self.shapes[node.name]
        if len(out_shape) <= axis:
            return False, "output lost the row axis"
        h = out_shape[axis]
        for a in sp:
            if self.shapes[a.name][axis] != h or len(self.shapes[a.name]) != len(out_shape):
                return False, "inputs of different height/rank (broadcast over rows, as a squeeze-excite gate)"
        for a in node.all_input_nodes:
            s = self.shapes.get(a.name)
            if a in sp or s is None:
                continue
            off = len(out_shape) - len(s)          # right-aligned broadcasting
            if axis - off >= 0 and s[axis - off] != 1:
                return False, "a constant varies along the rows"
        return True, ""

    def _pointwise(self, node, axis, sp, tile_fn=None) -> Result:
        ok, why = self._same_rows(node, axis, sp)
        if not ok:
            return _barrier(why)
        return True, {a.name: IDENTITY for a in sp}, axis, tile_fn, ""

    def _nchw(self, node, axis) -> bool:
        return axis == 2 and len(self.shapes[node.name]) == 4

    def _module(self, node, mod, axis, sp) -> Result:
        out_shape = self.shapes[node.name]
        if isinstance(mod, _POINTWISE_MODULES):
            return self._pointwise(node, axis, sp)
        if isinstance(mod, (nn.Softmax, nn.LogSoftmax)):
            return self._over_channels(node, axis, sp, mod.dim)
        if isinstance(mod, nn.LayerNorm):
            if axis >= len(out_shape) - len(mod.normalized_shape):
                return _barrier("LayerNorm normalises over the rows")
            return self._pointwise(node, axis, sp)
        if isinstance(mod, nn.Linear):
            if axis == len(out_shape) - 1:
                return _barrier("Linear over the rows")
            return self._pointwise(node, axis, sp)
        if not self._nchw(node, axis):
            return _barrier(f"{type(mod).__name__} on a non-NCHW tensor")
        if isinstance(mod, nn.Conv2d):
            return _conv(mod, sp)
        if isinstance(mod, nn.ConvTranspose2d):
            if len(node.args) > 1 or node.kwargs:
                return _barrier("ConvTranspose2d with output_size")
            rm = RowMap("transpose", mod.kernel_size[0], mod.stride[0], mod.padding[0], mod.dilation[0])
            return True, {sp[0].name: rm}, 2, tiles.transpose_tile(mod, out_shape[3]), ""
        if isinstance(mod, nn.MaxPool2d):
            k, s, p, d = (_pair(mod.kernel_size)[0], _pair(mod.stride or mod.kernel_size)[0],
                          _pair(mod.padding)[0], _pair(mod.dilation)[0])
            rm = RowMap("window", k, s, p, d)
            return True, {sp[0].name: rm}, 2, tiles.window_tile(rm, tiles.maxpool_fn(mod)), ""
        if isinstance(mod, nn.AvgPool2d):
            k, s, p = _pair(mod.kernel_size)[0], _pair(mod.stride or mod.kernel_size)[0], _pair(mod.padding)[0]
            rm = RowMap("window", k, s, p)
            return True, {sp[0].name: rm}, 2, tiles.window_tile(rm, tiles.avgpool_fn(mod, out_shape[3])), ""
        if type(mod) in _PAD_MODULES:
            return _pad(sp, self.shapes, tuple(mod.padding), _PAD_MODULES[type(mod)], getattr(mod, "value", 0.0))
        if isinstance(mod, nn.Upsample):
            return self._resample(node, sp, mod.mode, mod.align_corners,
                                  dict(size=mod.size, scale_factor=mod.scale_factor, mode=mod.mode,
                                       align_corners=mod.align_corners,
                                       recompute_scale_factor=mod.recompute_scale_factor))
        if isinstance(mod, nn.PixelShuffle):
            r = mod.upscale_factor
            return True, {sp[0].name: RowMap("upsample", factor=r)}, 2, tiles.upsample_tile(
                r, lambda x: F.pixel_shuffle(x, r)), ""
        if isinstance(mod, nn.PixelUnshuffle):
            r = mod.downscale_factor
            rm = RowMap("window", r, r)
            return True, {sp[0].name: rm}, 2, tiles.window_tile(rm, tiles.pixel_unshuffle_fn(r)), ""
        return _barrier(f"{type(mod).__name__} is not a local operator")

    def _function(self, node, t, axis, sp) -> Result:
        if t in _POINTWISE_FUNCS:
            if t is F.dropout and _arg(node, 2, "training", True):
                return _barrier("dropout in training mode")
            return self._pointwise(node, axis, sp)
        if t in _CHANNEL_NORMALISERS:
            return self._over_channels(node, axis, sp, _arg(node, 1, "dim"))
        if t is torch.cat:
            dim = _arg(node, 1, "dim", 0) % len(self.shapes[node.name])
            return _barrier("concatenation along the rows") if dim == axis else self._pointwise(node, axis, sp)
        if t is torch.permute:
            return self._permute(node, sp, axis, _arg(node, 1, "dims"))
        if t is torch.transpose:
            return self._transpose(node, sp, axis, _arg(node, 1, "dim0"), _arg(node, 2, "dim1"))
        if t in (torch.reshape, torch.flatten):
            return self._method(node, axis, sp, "view" if t is torch.reshape else "flatten")
        if t is F.pad:
            pad = tuple(_arg(node, 1, "pad"))
            if not self._nchw(node, axis):
                return _barrier("pad of a non-NCHW tensor")
            return _pad(sp, self.shapes, pad + (0,) * (4 - len(pad)), _arg(node, 2, "mode", "constant"),
                             _arg(node, 3, "value", None) or 0.0)
        if t in _FUNCTIONAL_POOLS:
            mod = _FUNCTIONAL_POOLS[t](*node.args[1:], **dict(node.kwargs))
            return self._module(node, mod, axis, sp)
        if t is F.interpolate:
            names = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
            kw = {n: _arg(node, i + 1, n) for i, n in enumerate(names)}
            kw["mode"] = kw["mode"] or "nearest"
            if kw.pop("antialias"):
                return _barrier("antialiased interpolation")
            return self._resample(node, sp, kw["mode"], kw["align_corners"], kw)
        if t is item_of:               # one element of chunk / split / unbind / tensor_split
            return self._element(node, axis, sp)
        if t in (torch.sum, torch.mean, torch.amax, torch.amin, torch.argmax, torch.argmin):
            return self._reduce(node, axis, sp, _arg(node, 1, "dim"), _arg(node, 2, "keepdim", False))
        return _barrier(f"{getattr(t, '__name__', t)} is not a local operator")

    def _method(self, node, axis, sp, target=None) -> Result:
        target = target or node.target
        args = node.args[1:]
        if target in _POINTWISE_METHODS:
            return self._pointwise(node, axis, sp)
        if target in ("softmax", "log_softmax"):
            return self._over_channels(node, axis, sp, _arg(node, 1, "dim"))
        if target == "permute":
            return self._permute(node, sp, axis, args[0] if isinstance(args[0], (tuple, list)) else args)
        if target == "transpose":
            return self._transpose(node, sp, axis, *args[:2])
        if target in ("view", "reshape", "flatten"):
            return self._regroup(node, axis, sp)
        if target in _REDUCTIONS:
            return self._reduce(node, axis, sp, _arg(node, 1, "dim"), _arg(node, 2, "keepdim", False))
        return _barrier(f"method {target} is not a local operator")

    def _element(self, node, axis, sp) -> Result:
        """An element of x.chunk / split / tensor_split along another axis than the rows (its rows are x's), or of
        x.unbind over another axis (which it removes)."""
        method, rank = node.args[0], len(self.shapes[sp[0].name])
        at = 3 if method == "unbind" else 4                       # item_of(method, index, x, [size,] dim)
        dim = node.kwargs.get("dim", node.args[at] if len(node.args) > at else 0)
        if sp[0] is not node.args[2] or len(sp) != 1 or not isinstance(dim, int) or dim % rank == axis:
            return _barrier(f"{method} along the rows")
        dim %= rank
        return True, {sp[0].name: IDENTITY}, axis - (method == "unbind" and dim < axis), None, ""

    def _over_channels(self, node, axis, sp, dim) -> Result:
        if dim is None or dim % len(self.shapes[node.name]) == axis:
            return _barrier("normalised over the rows")
        return self._pointwise(node, axis, sp)

    def _reduce(self, node, axis, sp, dim, keepdim) -> Result:
        rank = len(self.shapes[sp[0].name])
        if dim is None:
            return _barrier("a reduction over every axis")
        dims = {d % rank for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
        if axis in dims or len(sp) != 1:
            return _barrier("a reduction over the rows")
        new_axis = axis if keepdim else axis - sum(d < axis for d in dims)
        return True, {sp[0].name: IDENTITY}, new_axis, None, ""

    def _permute(self, node, sp, axis, dims) -> Result:
        dims = [int(d) % len(dims) for d in dims]
        return True, {sp[0].name: IDENTITY}, dims.index(axis), None, ""

    def _transpose(self, node, sp, axis, d0, d1) -> Result:
        rank = len(self.shapes[sp[0].name])
        d0, d1 = d0 % rank, d1 % rank
        return True, {sp[0].name: IDENTITY}, d1 if axis == d0 else d0 if axis == d1 else axis, None, ""

    def _regroup(self, node, axis, sp) -> Result:
        """view / reshape / flatten that only regroup the axes before the rows (as a channel shuffle does)."""
        src, out = self.shapes[sp[0].name], self.shapes[node.name]
        h, tail = src[axis], list(src[axis + 1:])
        for new_axis in range(len(out)):
            if out[new_axis] == h and list(out[new_axis + 1:]) == tail:
                before = 1
                for v in out[:new_axis]:
                    before *= v
                want = 1
                for v in src[:axis]:
                    want *= v
                if before == want:
                    return True, {sp[0].name: IDENTITY}, new_axis, tiles.reshape_tile(out, new_axis), ""
        return _barrier("a view that merges or splits the rows")

    def _resample(self, node, sp, mode, align_corners, kw) -> Result:
        """Upsampling / interpolation of any mode, size or factor: output rows weigh input rows as torch does
        (:func:`~intradp_ros.engine.tiles.interpolation_taps`; nearest copies one row with weight 1, exactly),
        then the model's call interpolates the columns."""
        out_shape = self.shapes[node.name]
        if not self._nchw(node, self.row_axis[sp[0].name]) or mode not in (
                "nearest", "nearest-exact", "bilinear", "bicubic"):
            return _barrier(f"interpolation mode {mode} / layout is not local")
        in_h, out_h, out_w = self.shapes[sp[0].name][2], out_shape[2], out_shape[3]
        sf = kw.get("scale_factor")
        sf_rows, sf_cols = (None, None) if sf is None else (
            (float(sf), float(sf)) if isinstance(sf, (int, float)) else (float(sf[0]), float(sf[1])))

        def rows_only(x: torch.Tensor) -> torch.Tensor:      # the model's call on the rows, the width kept
            if sf is None:
                return F.interpolate(x, size=(out_h, x.shape[3]), mode=mode, align_corners=align_corners)
            return F.interpolate(x, scale_factor=(sf_rows, 1.0), mode=mode, align_corners=align_corners,
                                 recompute_scale_factor=kw.get("recompute_scale_factor"))

        def cols_only(x: torch.Tensor) -> torch.Tensor:      # ... on the columns, the rows kept
            if sf is None:
                return F.interpolate(x, size=(x.shape[2], out_w), mode=mode, align_corners=align_corners)
            return F.interpolate(x, scale_factor=(1.0, sf_cols), mode=mode, align_corners=align_corners,
                                 recompute_scale_factor=kw.get("recompute_scale_factor"))

        index, weight = tiles.interpolation_taps(in_h, rows_only)
        if index.shape[0] != out_h:
            return _barrier("interpolation whose row count the engine cannot reproduce")
        rm = RowMap("support", support=tuple((int(r.min()), int(r.max()) + 1) for r in index))
        return True, {sp[0].name: rm}, 2, tiles.taps_tile(index, weight, cols_only), ""
