"""Capture passes over the traced graph, for the one input shape the model is captured at.

:func:`fold_shapes`: ``x.shape``, ``size()``, ``dim()`` and integer arithmetic on them become constants.
:func:`split_tuples`: an op returning several tensors (``chunk``, ``split``) becomes one op per element used.


U-Nets, FPNs and YOLO necks pad or resize one branch to another's size (``F.pad(u, (0, y.shape[-1] -
u.shape[-1]))``). Traced, that is a chain of non-tensor nodes; for a fixed input shape it has a single answer, and
once folded the pad or view that reads it is an ordinary operator the classifier can place. A non-tensor value that
depends on tensor data (``x.sum().item()``, ``int(x.max())``) cannot be folded: capture refuses it, naming the node.
"""
from __future__ import annotations

import builtins
import math
import operator
from typing import Any

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["ShapeFolder", "fold_shapes", "UnfoldableError", "split_tuples", "item_of"]

# Tensor attributes and methods that read the shape only, never the data.
_SHAPE_ATTRS = {"shape", "ndim"}
_SHAPE_METHODS = {"size", "dim", "numel", "ndimension"}
# Functions that, applied to folded values and constants, give a value of the same kind.
_SCALAR_FUNCS = {operator.getitem, operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv,
                 operator.mod, operator.neg, operator.pow, operator.eq, operator.ne, operator.lt, operator.le,
                 operator.gt, operator.ge, builtins.min, builtins.max, builtins.int, builtins.float, builtins.abs,
                 builtins.len, builtins.round, math.ceil, math.floor, math.prod}


class UnfoldableError(ValueError):
    """A non-tensor value of the graph that depends on tensor data."""


def _plain(v: Any) -> bool:
    """A value that can stand in the graph as a constant: numbers, booleans and (nested) tuples/lists of them."""
    if isinstance(v, (bool, int, float)):
        return True
    if isinstance(v, (tuple, list)):
        return all(_plain(x) for x in v)
    return False


class ShapeFolder(ShapeProp):
    """Runs the graph once on the example input (recording tensor shapes, as ShapeProp does) and every value
    computed from shapes alone.

    ``folded`` maps such nodes to their value (``torch.Size`` as a tuple). A number computed from tensor data
    raises :class:`UnfoldableError` when it is computed (before a later node fails on it less clearly)."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.folded: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if n.op in ("placeholder", "output", "get_attr") or isinstance(result, torch.Tensor):
            return result
        value = tuple(result) if isinstance(result, torch.Size) else result
        if self._from_shapes(n) and _plain(value):
            self.folded[n] = value
        elif _plain(value):
            raise UnfoldableError(f"{n.format_node()} computes a number from tensor data, which no fixed input "
                                  "shape determines; the engine needs tensor-valued operators (compute it from "
                                  "shapes, or keep it out of forward)")
        return result

    def _from_shapes(self, n: fx.Node) -> bool:
        inputs = n.all_input_nodes
        if n.op == "call_function" and n.target is builtins.getattr and n.args[1] in _SHAPE_ATTRS:
            return True
        if n.op == "call_method" and n.target in _SHAPE_METHODS:
            return all(a is n.args[0] or a in self.folded for a in inputs)
        if n.op == "call_function" and n.target in _SCALAR_FUNCS:
            return all(a in self.folded for a in inputs)
        return False


def fold_shapes(gm: fx.GraphModule, example: torch.Tensor) -> int:
    """Propagate ``example``'s shapes through ``gm`` (``node.meta["tensor_meta"]``) and replace every
    shape-derived value by its constant for that shape; returns how many nodes were folded.

    Raises :class:`UnfoldableError` naming a non-tensor node that depends on tensor data."""
    folder = ShapeFolder(gm)
    with torch.no_grad():
        folder.propagate(example)
    if not folder.folded:
        return 0
    for n, value in folder.folded.items():
        for user in list(n.users):
            user.args = fx.node.map_aggregate(user.args, lambda a, n=n, v=value: v if a is n else a)
            user.kwargs = fx.node.map_aggregate(user.kwargs, lambda a, n=n, v=value: v if a is n else a)
    for n in reversed(list(gm.graph.nodes)):
        if n in folder.folded and not n.users:
            gm.graph.erase_node(n)
    gm.graph.lint()
    gm.recompile()
    return len(folder.folded)


_TUPLE_METHODS = {"chunk": torch.chunk, "split": torch.split, "unbind": torch.unbind,
                  "tensor_split": torch.tensor_split}


def item_of(method: str, index: int, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Element ``index`` of ``x.<method>(*args, **kwargs)`` (chunk, split, unbind, tensor_split): what
    :func:`split_tuples` gives each used element, so that every op of the engine produces one tensor."""
    return getattr(x, method)(*args, **kwargs)[index]


def split_tuples(gm: fx.GraphModule) -> int:
    """Replace each chunk / split / unbind / tensor_split whose every user takes one element (``q, k, v =
    x.chunk(3, 1)``) by one :func:`item_of` call per element; returns how many were split. They are views, so
    computing one per element costs nothing worth keeping the tuple for."""
    by_function = {f: m for m, f in _TUPLE_METHODS.items()}
    count = 0
    for n in list(gm.graph.nodes):
        method = (n.target if n.op == "call_method" and n.target in _TUPLE_METHODS else
                  by_function.get(n.target) if n.op == "call_function" else None)
        if method is None or not n.users or not all(
                u.op == "call_function" and u.target is operator.getitem and isinstance(u.args[1], int)
                for u in n.users):
            continue
        for u in list(n.users):
            with gm.graph.inserting_after(u):
                item = gm.graph.call_function(item_of, (method, u.args[1], *n.args), dict(n.kwargs))
            u.replace_all_uses_with(item)
            gm.graph.erase_node(u)
        gm.graph.erase_node(n)
        count += 1
    if count:
        gm.graph.lint()
        gm.recompile()
    return count
