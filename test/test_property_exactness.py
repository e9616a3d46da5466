"""Property: for random networks of local operators (chains and branches: kernels, strides, paddings,
dilations, groups, transposed convolutions, pools, asymmetric and reflect/replicate/circular pads, interpolation
of every mode, pixel shuffles, channel shuffles, concatenations padded to size by shape arithmetic, channel
splits, squeeze-excite gates, self-attention) at odd sizes, every plan that compiles runs, and its output equals
monolithic inference to 1e-4.

hypothesis draws the models and plans (derandomized: CI sees the same ones each run) and shrinks a failure to a
minimal model; INTRADP_PROPERTY_EXAMPLES sets the number of models (default 300)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from intradp_ros.engine.executor import run_collaborative  # noqa: E402
from intradp_ros.engine.graph import capture  # noqa: E402
from intradp_ros.engine.plan import Plan, PlanError, compile_plan  # noqa: E402
from intradp_ros.engine.rows import Segment  # noqa: E402
from intradp_ros.engine.search import split_points  # noqa: E402
from intradp_ros.engine.verify import verify_tiles  # noqa: E402

TOL = 1e-4
EXAMPLES = int(os.environ.get("INTRADP_PROPERTY_EXAMPLES", "300"))
PLANS = 5


class Pad(nn.Module):
    def __init__(self, pad, mode):
        super().__init__()
        self.pad, self.mode = pad, mode

    def forward(self, x):
        return F.pad(x, self.pad, mode=self.mode)


class Resize(nn.Module):
    def __init__(self, mode, scale=None, grow=None, align=None):
        super().__init__()
        self.mode, self.scale, self.grow, self.align = mode, scale, grow, align

    def forward(self, x):
        if self.grow is not None:       # a size computed from the input's shape
            return F.interpolate(x, size=(x.shape[2] + self.grow, x.shape[3] * 2 - 1), mode=self.mode,
                                 align_corners=self.align)
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=self.align)


class Shuffle(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.size()
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous()
        return x.view(n, c, h, w)


class Branch(nn.Module):
    """y = conv(x); u = a strided conv of x upsampled back, padded (or cropped) to y's size by shape arithmetic;
    then concatenated or added."""
    def __init__(self, c, cat: bool, stride: int):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, 1, 1)
        self.b = nn.Conv2d(c, c, 3, stride, 1)
        self.stride, self.cat = stride, cat

    def forward(self, x):
        y = self.a(x)
        u = F.interpolate(self.b(x), scale_factor=self.stride, mode="nearest")
        dh, dw = y.shape[-2] - u.shape[-2], y.shape[-1] - u.shape[-1]
        u = F.pad(u, (dw // 2, dw - dw // 2, dh - dh // 2, dh // 2))
        return torch.cat([y, u], 1) if self.cat else y + u


class SqueezeExcite(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)))


class CrossStage(nn.Module):
    """A CSP block: the channels split in two (torch.split), one half convolved, concatenated back."""
    def __init__(self, c):
        super().__init__()
        self.half = c // 2
        self.conv = nn.Conv2d(c - c // 2, c - c // 2, 3, 1, 1)

    def forward(self, x):
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([a, self.conv(b)], 1)


class Attention(nn.Module):
    """Self-attention over positions (a barrier: every output row reads every input row), added back."""
    def __init__(self, c):
        super().__init__()
        self.qkv = nn.Conv2d(c, 3 * c, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)
        a = torch.softmax(q.transpose(1, 2) @ k / c ** 0.5, dim=-1)
        return x + (v @ a.transpose(1, 2)).view(n, c, h, w)


@st.composite
def block(draw, c: int, h: int, w: int) -> tuple[nn.Module, int]:
    """One random block for an input of c channels, h x w; returns it and its output channels."""
    kind = draw(st.sampled_from(["conv", "conv", "convT", "pool", "pad", "resize", "act", "shuffle", "pixel",
                                 "branch", "se", "attention", "csp"]))
    if kind == "conv":
        k, d = draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 1, 2]))
        g = draw(st.sampled_from([g for g in (1, 2, c) if c % g == 0]))
        co = g * draw(st.integers(1, 3))
        return nn.Conv2d(c, co, k, draw(st.sampled_from([1, 1, 2, 3])), draw(st.integers(0, k)), d, g), co
    if kind == "convT":
        s = draw(st.sampled_from([1, 2, 3]))
        k = draw(st.integers(1, 4))
        d = draw(st.sampled_from([1, 2]))
        op = draw(st.integers(0, max(s, d) - 1))
        return nn.ConvTranspose2d(c, draw(st.integers(1, 4)), k, s, draw(st.integers(0, (k - 1) * d)), op,
                                  dilation=d), None
    if kind == "pool":
        k = draw(st.sampled_from([2, 3]))
        s, p, ceil = draw(st.sampled_from([1, 2])), draw(st.integers(0, k // 2)), draw(st.booleans())
        if draw(st.booleans()):
            return nn.MaxPool2d(k, s, p, ceil_mode=ceil), c
        return nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=draw(st.booleans())), c
    if kind == "pad":
        mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
        top = min(h, w) - 1 if mode == "reflect" else 3
        return Pad(tuple(draw(st.integers(0, min(3, top))) for _ in range(4)), mode), c
    if kind == "resize":
        mode = draw(st.sampled_from(["nearest", "bilinear", "bicubic"]))
        align = None if mode == "nearest" else draw(st.booleans())
        if draw(st.booleans()):
            return Resize(mode, grow=draw(st.integers(-2, 5)), align=align), c
        return Resize(mode, scale=draw(st.sampled_from([2.0, 3.0, 1.5, (2.0, 1.0)])), align=align), c
    if kind == "act":
        return draw(st.sampled_from([nn.ReLU6(), nn.Hardtanh(-0.5, 0.5), nn.LeakyReLU(0.1), nn.SiLU()])), c
    if kind == "shuffle" and c % 2 == 0:
        return (Shuffle(2) if draw(st.booleans()) else nn.ChannelShuffle(2)), c
    if kind == "pixel":
        if h % 2 == 0 and w % 2 == 0 and draw(st.booleans()):
            return nn.PixelUnshuffle(2), 4 * c
        return nn.Sequential(nn.Conv2d(c, 4, 1), nn.PixelShuffle(2)), 1
    if kind == "branch":
        cat = draw(st.booleans())
        return Branch(c, cat, draw(st.sampled_from([2, 3]))), 2 * c if cat else c
    if kind == "csp" and c >= 2:
        return CrossStage(c), c
    if kind == "attention" and h * w <= 256:
        return Attention(c), c
    return SqueezeExcite(c), c


@st.composite
def network(draw):
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(5, 31)), draw(st.integers(5, 31))
    x = torch.randn(1, c, h, w)
    blocks = []
    y = x
    for _ in range(draw(st.integers(1, 6))):
        b, _ = draw(block(y.shape[1], y.shape[2], y.shape[3]))
        try:
            with torch.no_grad():
                z = b.eval()(y)
        except RuntimeError:
            continue                    # a size this block cannot take: draw the next
        if min(z.shape[2:]) < 2 or z.numel() > 60_000:
            continue
        blocks.append(b)
        y = z
    return nn.Sequential(*blocks).eval() if blocks else nn.Sequential(nn.Conv2d(c, 2, 3, 1, 1)).eval(), x


@st.composite
def plans(draw, graph):
    """A plan of the graph: mostly splits (any segment, robot rows, tiles per side), else a cut or a baseline."""
    n, size = len(graph.ops), graph.input_shape[2:]
    starts, ends = split_points(graph)
    pairs = [(a, b) for a in starts for b in ends[a]]
    if pairs and draw(st.integers(0, 4)):
        a, b = draw(st.sampled_from(pairs))
        grid = Segment(graph, a, b).grid
        return Plan("prop", *size, a, b, draw(st.integers(0, grid)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return Plan("prop", *size, *[draw(st.integers(0, n))] * 2)


def _check(graph, plan, x, ref) -> bool:
    """False if the plan does not compile (refused, not run); else asserts the output equals ``ref``."""
    try:
        compile_plan(graph, plan)
    except PlanError:
        return False
    out = run_collaborative(graph, plan, x)
    for name, r in zip(graph.outputs, ref):
        axis = graph.value_row_axis(name)
        err = (out.tensor(name, axis if axis is not None else 0) - r).abs().max().item()
        assert err <= TOL, f"{plan.spec()} ({plan.describe(graph)}): max |diff| {err:.2e}\n{graph.summary()}"
    return True


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_every_plan_that_compiles_equals_monolithic(data):
    model, x = data.draw(network())
    graph = capture(model, x)
    verify_tiles(graph, x)                # what every node does at start-up: each op's tiles against the op
    with torch.inference_mode():
        ref = [model(x)]
    for m in model:
        event(type(m).__name__)
    event(f"{sum(op.local for op in graph.ops)} of {len(graph.ops)} ops local")
    ran = splits = 0
    for _ in range(8 * PLANS):
        plan = data.draw(plans(graph))
        if _check(graph, plan, x, ref):
            ran, splits = ran + 1, splits + plan.is_split
        if ran >= PLANS:
            break
    event(f"{splits} of {ran} plans split")
    assert ran >= PLANS, f"only {ran} plans compiled\n{graph.summary()}"


class _CatThenAsymmetricPad(nn.Module):
    """A channel concatenation feeding F.pad(r, (1, 2, 3, 0)): 3 rows of padding on top, none at the bottom. Tiles
    made only of that padding read no rows of the concatenation (the executor missed them: KeyError 'cat')."""
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 3, 1, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(8, 4, 3, 1, 1)

    def forward(self, x):
        r = torch.cat([self.a(x), self.b(x)], 1)
        return self.c(F.pad(r, (1, 2, 3, 0)))


def test_tiles_of_padding_alone_run_for_every_plan():
    torch.manual_seed(0)
    model, x = _CatThenAsymmetricPad().eval(), torch.randn(1, 3, 13, 11)
    graph = capture(model, x)
    with torch.inference_mode():
        ref = [model(x)]
    starts, ends = split_points(graph)
    ran = 0
    for a in starts:
        for b in ends[a]:
            grid = Segment(graph, a, b).grid
            for rows in range(grid + 1):
                for rt in (1, 2, 3):
                    for et in (1, 2, 5):
                        ran += _check(graph, Plan("prop", 13, 11, a, b, rows, rt, et), x, ref)
    assert ran > 200


class _ShapePaddedUNet(nn.Module):
    """A U-Net step: the upsampled branch padded to the skip's size by ``y.shape[-1] - u.shape[-1]``."""
    def __init__(self):
        super().__init__()
        self.down, self.skip = nn.Conv2d(3, 6, 3, 2, 1), nn.Conv2d(3, 6, 3, 1, 1)
        self.up = nn.ConvTranspose2d(6, 6, 2, 2)
        self.out = nn.Conv2d(12, 2, 3, 1, 1)

    def forward(self, x):
        y, u = self.skip(x), self.up(self.down(x))
        u = F.pad(u, [0, y.shape[-1] - u.shape[-1], 0, y.size(2) - u.size(2)])
        return self.out(torch.cat([y, u], dim=1))


def test_a_branch_padded_by_shape_arithmetic_is_captured_split_and_exact():
    torch.manual_seed(0)
    model, x = _ShapePaddedUNet().eval(), torch.randn(1, 3, 29, 23)     # odd sizes: the pad is not zero
    graph = capture(model, x)
    assert all(op.node.op != "call_function" or op.node.target is not getattr for op in graph.ops)
    assert all(op.local for op in graph.ops), graph.summary()            # pad, transposed conv, cat: all local
    with torch.inference_mode():
        ref = [model(x)]
    starts, ends = split_points(graph)
    assert 0 in starts and len(graph.ops) in ends[0]                     # one segment can span the whole model
    grid = Segment(graph, 0, len(graph.ops)).grid
    for rows, rt, et in [(1, 1, 3), (grid // 3, 2, 2), (grid // 2, 3, 1), (grid - 1, 4, 4)]:
        assert _check(graph, Plan("prop", 29, 23, 0, len(graph.ops), rows, rt, et), x, ref)


def test_a_number_computed_from_tensor_data_is_refused_naming_the_node():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x * x.mean().item()

    from intradp_ros.engine.graph import GraphCaptureError
    with pytest.raises(GraphCaptureError, match="tensor data"):
        capture(DataDependent().eval(), torch.randn(1, 3, 8, 8))


class _EveryListedOperator(nn.Module):
    """The README's table of local operators that the random blocks above do not draw."""
    def __init__(self):
        super().__init__()
        self.same = nn.Conv2d(3, 4, 3, padding="same")
        self.up = nn.ConvTranspose2d(4, 4, 3, 2, 1, 1, groups=2)
        self.prelu, self.elu = nn.PReLU(4), nn.ELU()
        self.avg = nn.AvgPool2d(3, 1, 1, divisor_override=5)
        self.circ = nn.CircularPad2d((1, 0, 2, 1))
        self.refl = nn.ReflectionPad2d((0, 1, 1, 2))
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        y = self.elu(self.prelu(self.up(self.same(x)))).clamp(-1.0, 2.0)
        y = self.refl(self.circ(self.avg(y)))
        y = F.interpolate(y, size=(y.shape[2] - 3, y.shape[3] + 2), mode="nearest-exact")
        y = F.interpolate(y, scale_factor=1.5, mode="bicubic", align_corners=True)
        y = self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)           # channels-last LayerNorm
        y = torch.softmax(y, dim=1) + y.mean(1, keepdim=True) + y.amax(dim=1, keepdim=True)
        z = torch.flatten(y.transpose(2, 3), 0, 1)                         # (N*C, W, H): rows now the last axis
        return z.transpose(1, 2).sum(0, keepdim=True), y.argmax(1)


def test_every_listed_operator_is_local_and_exact():
    torch.manual_seed(0)
    model, x = _EveryListedOperator().eval(), torch.randn(1, 3, 17, 13)
    graph = capture(model, x)
    assert all(op.local for op in graph.ops), graph.summary()
    with torch.inference_mode():
        ref = list(model(x))
    starts, ends = split_points(graph)
    ran = 0
    for a, b in [(0, ends[0][-1]), (starts[len(starts) // 2], ends[starts[len(starts) // 2]][-1])]:
        grid = Segment(graph, a, b).grid
        for rows, rt, et in [(1, 1, 3), (grid // 3, 2, 2), (grid // 2, 3, 1), (grid - 1, 4, 4), (0, 1, 5)]:
            ran += _check(graph, Plan("prop", 17, 13, a, b, rows, rt, et), x, ref)
    assert ran >= 8     # (the circular pad's bottom rows read the top ones: some edge shares are refused)


def test_a_tile_function_that_is_wrong_for_the_model_is_refused_at_start_up_naming_the_op():
    from intradp_ros.engine.graph import GraphCaptureError
    torch.manual_seed(0)
    model, x = _CatThenAsymmetricPad().eval(), torch.randn(1, 3, 13, 11)
    graph = capture(model, x)
    assert verify_tiles(graph, x) >= 3                                     # the convolutions and the pad
    pad = next(op for op in graph.ops if op.node.target is F.pad)
    right = pad.tile_fn
    pad.tile_fn = lambda t, a, lo, hi, h: right(t, a, lo, hi, h) + (lo == 0)   # wrong on the top rows only
    with pytest.raises(GraphCaptureError, match="pad.*differ"):
        verify_tiles(graph, x)
