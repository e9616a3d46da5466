"""Graph capture: a traced model as a topologically ordered list of operators, each local or barrier.

Which operators are local (their output rows depend on a bounded window of input rows, so they can be computed
tile by tile) is decided in :mod:`intradp_ros.engine.classify`. The row axis of every value is tracked through
permutes so channels-last blocks (LayerNorm/Linear on the channel axis, as in ConvNeXt) stay local.

Example::

    g = capture(resnet18(), torch.zeros(1, 3, 224, 224))
    print(g.summary())
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Mapping

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from .classify import OpClassifier
from .fold import UnfoldableError, fold_shapes, split_tuples
from .tiles import RowMap, TileFn

__all__ = ["Op", "OpGraph", "NodeEvaluator", "capture", "GraphCaptureError"]


class GraphCaptureError(ValueError):
    """The model cannot be traced or contains an operator the engine cannot place."""


class NodeEvaluator(fx.Interpreter):
    """Evaluates one node of the traced graph at a time, its inputs read by value name from a mapping given per
    call: whole tensors (the executor's env) or the rows of a tile. Graph-level state (``Interpreter.env``) is not
    used, so the frame threads and the planner can share one evaluator."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm, garbage_collect_values=False)

    def compiled(self, node: fx.Node) -> Callable[[Mapping[str, Any]], Any]:
        """``node`` as a closure of the value mapping: what :meth:`evaluate` works out per call (the target, which
        argument is a value and which a constant) done once, so an op costs what eager PyTorch's call costs."""
        if node.op not in ("call_module", "call_function", "call_method"):
            return lambda values: self.evaluate(node, values)
        args = [self._loader(a) for a in node.args]
        kwargs = {k: self._loader(v) for k, v in node.kwargs.items()}
        if node.op == "call_method":
            name = node.target
            return lambda v: getattr(args[0](v), name)(*[a(v) for a in args[1:]],
                                                       **{k: f(v) for k, f in kwargs.items()})
        fn = self.fetch_attr(node.target) if node.op == "call_module" else node.target
        if not kwargs:
            return lambda v: fn(*[a(v) for a in args])
        return lambda v: fn(*[a(v) for a in args], **{k: f(v) for k, f in kwargs.items()})

    def _loader(self, a) -> Callable[[Mapping[str, Any]], Any]:
        if isinstance(a, fx.Node):
            if a.op == "get_attr":                   # fetched per call: .to(device) replaces buffers
                target = a.target
                return lambda v: self.fetch_attr(target)
            name = a.name
            return lambda v: v[name]
        if isinstance(a, (list, tuple)) and any(isinstance(x, fx.Node) for x in a):
            parts, kind = [self._loader(x) for x in a], type(a)
            return lambda v: kind(p(v) for p in parts)
        if isinstance(a, dict) and any(isinstance(x, fx.Node) for x in a.values()):
            parts = {k: self._loader(x) for k, x in a.items()}
            return lambda v: {k: p(v) for k, p in parts.items()}
        return lambda v: a

    def evaluate(self, node: fx.Node, values: Mapping[str, Any]) -> Any:
        def load(n: fx.Node):
            if n.name in values:
                return values[n.name]
            if n.op == "get_attr":
                return self.fetch_attr(n.target)
            raise KeyError(f"value {n.name!r} needed by {node.format_node()} is not available")
        if node.op not in ("call_module", "call_function", "call_method", "get_attr"):
            raise GraphCaptureError(f"cannot evaluate {node.format_node()}")
        args = fx.node.map_arg(node.args, load)
        kwargs = fx.node.map_arg(node.kwargs, load)
        return getattr(self, node.op)(node.target, args, kwargs)


@dataclasses.dataclass
class Op:
    """One computing node of the graph, in topological order."""
    index: int
    name: str                         # fx node name; also the name of the value it produces
    node: fx.Node
    local: bool
    inputs: tuple[str, ...]           # names of the graph values (ops or the input) it reads
    row_maps: dict[str, RowMap]       # spatial inputs -> row map (local ops only)
    shape: tuple[int, ...]            # output shape
    row_axis: int | None              # axis of the output that is the image row axis, None if not spatial
    dtype: torch.dtype
    tile_fn: TileFn | None = None     # (input rows, first input row, lo, hi, input height) -> output rows
    reason: str = ""                  # why barrier

    @property
    def height(self) -> int:
        return self.shape[self.row_axis] if self.row_axis is not None else 0

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n * torch.empty((), dtype=self.dtype).element_size()


@dataclasses.dataclass
class OpGraph:
    """A captured model: ops in topological order plus the facts the planner and executor need."""
    gm: fx.GraphModule
    input_name: str
    input_shape: tuple[int, ...]
    ops: list[Op]
    outputs: tuple[str, ...]          # graph output value names, in the model's output order
    consumers: dict[str, list[int]]   # value name -> indices of ops reading it
    key: str                          # hash of structure + weights + input shape: profile cache key

    def __post_init__(self):
        self.by_name = {op.name: op for op in self.ops}
        self.index = {op.name: op.index for op in self.ops}
        self.evaluator = NodeEvaluator(self.gm)
        self._calls = [self.evaluator.compiled(op.node) for op in self.ops]
        # op index -> values read for the last time by that op (graph outputs never): dropped right after it,
        # as eager PyTorch frees them, so the allocator reuses warm memory instead of touching new pages
        self.last_reads: dict[int, tuple[str, ...]] = {}
        for name, readers in self.consumers.items():
            if name not in self.outputs:
                self.last_reads.setdefault(max(readers), ())
                self.last_reads[max(readers)] += (name,)

    def value_shape(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == self.input_name else self.by_name[name].shape

    def value_row_axis(self, name: str) -> int | None:
        return 2 if name == self.input_name else self.by_name[name].row_axis

    def producer_index(self, name: str) -> int:
        return -1 if name == self.input_name else self.index[name]

    def live_after(self, k: int) -> list[str]:
        """Values produced before op k that some op at index >= k reads (not graph outputs as such)."""
        live = []
        for name in [self.input_name] + [op.name for op in self.ops[:k]]:
            if any(c >= k for c in self.consumers.get(name, [])):
                live.append(name)
        return live

    def run_op(self, op: Op, env: Mapping[str, Any]) -> torch.Tensor:
        """Run one op on its inputs taken from env by name: whole tensors, or the rows of a tile of a local op."""
        return self._calls[op.index](env)

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        env: dict[str, Any] = {self.input_name: x}
        for op in self.ops:
            env[op.name] = self.run_op(op, env)
            self.drop_dead(env, op.index)
        return {name: env[name] for name in self.outputs}

    def drop_dead(self, env: dict, k: int) -> None:
        """Forget the values op ``k`` read for the last time."""
        for name in self.last_reads.get(k, ()):
            env.pop(name, None)

    def summary(self) -> str:
        lines = []
        for op in self.ops:
            kind = "local  " if op.local else "barrier"
            lines.append(f"{op.index:4d} {kind} {op.name:28s} {tuple(op.shape)} {op.reason}")
        return "\n".join(lines)


def _graph_key(gm: fx.GraphModule, input_shape) -> str:
    h = hashlib.sha256(repr(tuple(input_shape)).encode())
    h.update(gm.code.encode())
    for name, t in sorted(gm.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes()[:4096])   # enough to tell weights apart
        h.update(repr(tuple(t.shape)).encode())
    return h.hexdigest()[:16]


def capture(model: nn.Module, example: torch.Tensor) -> OpGraph:
    """Trace ``model`` with torch.fx and classify every operator as local or barrier.

    Args:
        model: an eval-mode module that torch.fx can trace.
        example: an input of the shape the model will be run at, (1, C, H, W).
    Returns:
        OpGraph whose ops are in topological order.
    Raises:
        GraphCaptureError naming the operator that failed to trace or run.
    """
    if model.training:
        raise GraphCaptureError("model must be in eval mode (batch norm/dropout are only local in eval)")
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many types; the message names the construct
        raise GraphCaptureError(f"torch.fx cannot trace {type(model).__name__}: {e}") from e
    try:
        fold_shapes(gm, example)          # shapes propagated; x.shape and arithmetic on it become constants
        if split_tuples(gm):              # one op per element of chunk / split: shapes again, for those
            with torch.no_grad():
                ShapeProp(gm).propagate(example)
    except UnfoldableError as e:
        raise GraphCaptureError(f"cannot capture {type(model).__name__}: {e}") from e
    except Exception as e:  # noqa: BLE001
        raise GraphCaptureError(f"running {type(model).__name__} on {tuple(example.shape)} failed: {e}") from e

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise GraphCaptureError("the model must take exactly one input tensor")
    inp = placeholders[0]
    shapes: dict[str, tuple] = {}
    dtypes: dict[str, torch.dtype] = {}
    for n in gm.graph.nodes:
        tm = n.meta.get("tensor_meta")
        if isinstance(tm, TensorMetadata):
            shapes[n.name], dtypes[n.name] = tuple(tm.shape), tm.dtype
    row_axis: dict[str, int | None] = {inp.name: 2}
    cls = OpClassifier(gm, row_axis, shapes)
    ops: list[Op] = []
    outputs: tuple[str, ...] = ()
    for n in gm.graph.nodes:
        if n.op in ("placeholder",):
            continue
        if n.op == "get_attr":
            row_axis[n.name] = None
            continue
        if n.op == "output":
            flat: list[fx.Node] = []
            fx.node.map_arg(n.args[0], flat.append)
            outputs = tuple(a.name for a in flat)
            continue
        if n.name not in shapes:
            raise GraphCaptureError(f"operator {n.format_node()} does not produce a single tensor; "
                                    "the engine needs tensor-valued operators")
        try:
            local, maps, axis, tile_fn, why = cls.classify(n)
        except Exception as e:  # noqa: BLE001
            raise GraphCaptureError(f"cannot classify {n.format_node()}: {e}") from e
        # A barrier whose output is still image-shaped (N, C, H, W) can start a new local run.
        axis_out = axis if local else (2 if len(shapes[n.name]) == 4 else None)
        row_axis[n.name] = axis_out
        inputs = tuple(a.name for a in n.all_input_nodes if a.op != "get_attr")
        ops.append(Op(len(ops), n.name, n, local, inputs, maps, shapes[n.name], axis_out, dtypes[n.name],
                      tile_fn, why))
    consumers: dict[str, list[int]] = {}
    for op in ops:
        for name in op.inputs:
            consumers.setdefault(name, []).append(op.index)
    for name in outputs:
        if name == inp.name:
            raise GraphCaptureError("the model returns its input unchanged")
    return OpGraph(gm, inp.name, tuple(example.shape), ops, outputs, consumers, _graph_key(gm, example.shape))
