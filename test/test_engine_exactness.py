"""Collaborative output == monolithic output (fp32, max |diff| <= 1e-4) for every supported model and a spread
of split fractions and tile counts, every packet going through encode/decode."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from intradp_ros.engine.executor import run_collaborative
from intradp_ros.engine.graph import GraphCaptureError, capture
from intradp_ros.engine.plan import Plan
from intradp_ros.engine.rows import Segment
from intradp_ros.engine.search import split_points
from intradp_ros.models import build_model

TOL = 1e-4
# (robot fraction of the segment's rows, robot tiles, edge tiles)
SPLITS = [(0.1, 2, 8), (0.3, 3, 5), (0.5, 4, 4), (0.7, 6, 3), (0.9, 8, 2)]


def _max_err(graph, out, ref):
    errs = []
    for name in graph.outputs:
        t = out.tensor(name, graph.value_row_axis(name) if graph.value_row_axis(name) is not None else 0)
        errs.append((t - ref[name]).abs().max().item())
    return max(errs)


def _plans(graph, model):
    n = len(graph.ops)
    starts, ends = split_points(graph)
    first = starts[0]
    longest = ends[first][-1]
    mid_start = starts[len(starts) // 2]
    mid_end = ends[mid_start][-1]
    plans = [Plan.local(graph, model), Plan.offload(graph, model), Plan.cut(graph, model, mid_start, "lz4")]
    for (a, b), (frac, rt, et) in zip([(first, longest)] * 3 + [(mid_start, mid_end)] * 2, SPLITS):
        grid = Segment(graph, a, b).grid
        plans.append(Plan(model, *graph.input_shape[2:], a, b, max(1, min(grid - 1, round(frac * grid))), rt, et))
    # the same fractions on the longest segment with the other tile counts, and a zstd-encoded one
    for frac, rt, et in SPLITS[::2]:
        grid = Segment(graph, first, longest).grid
        plans.append(Plan(model, *graph.input_shape[2:], first, longest, round(frac * grid), et, rt, "zstd"))
    assert all(p.seg_end <= n for p in plans)
    return plans


MODELS = [("yolov3_tiny", 416), ("vgg19_bn", 224), ("resnet18", 224), ("resnet50", 224), ("resnet152", 224),
          ("mobilenet_v2", 224), ("densenet121", 224), ("convnext_tiny_blocks", 224), ("unet_small", 256)]


@pytest.mark.parametrize("name,size", MODELS, ids=[m for m, _ in MODELS])
def test_collaborative_equals_monolithic(name, size):
    torch.manual_seed(0)
    model = build_model(name, **({"weights": None} if name == "yolov3_tiny" else {}))
    x = torch.rand(1, 3, size, size)
    g = capture(model, x)
    with torch.inference_mode():
        ref = {k: v.clone() for k, v in g.run(x).items()}
        eager = model(x)
    eager = eager if isinstance(eager, tuple) else (eager,)
    for name_out, e in zip(g.outputs, eager):
        assert torch.equal(ref[name_out], e)
    for plan in _plans(g, name):
        out = run_collaborative(g, plan, x)
        err = _max_err(g, out, ref)
        assert err <= TOL, f"{plan.spec()} ({plan.describe(g)}): max |diff| {err:.2e}"


class _Exotic(nn.Module):
    """Every local-operator variant the engine claims, at awkward sizes."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 1, 1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.c2 = nn.Conv2d(8, 8, 5, 2, 2)
        self.avg = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
        self.c3 = nn.Conv2d(8, 8, 3, 1, 2, dilation=2, groups=2)
        self.c4 = nn.Conv2d(8, 8, (3, 1), padding="same")
        self.avg2 = nn.AvgPool2d(3, 1, 1, count_include_pad=True)
        self.pad = nn.ZeroPad2d((1, 0, 2, 1))
        self.c5 = nn.Conv2d(8, 4, 4, 2, 0)
        self.up = nn.Upsample(scale_factor=3, mode="nearest")
        self.ln = nn.LayerNorm(4)
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        y = F.leaky_relu(self.bn(self.c1(x)), 0.1)
        y = self.pool(y)
        z = self.avg(self.c2(y))
        w = self.c3(z) + z
        w = self.avg2(self.c4(w)) * torch.sigmoid(w)
        w = F.interpolate(w, scale_factor=2, mode="nearest")
        w = F.max_pool2d(F.pad(w, (0, 1, 0, 1), mode="replicate"), 2, 1)
        v = self.c5(self.pad(w))
        v = self.up(v)
        v = self.lin(self.ln(v.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return torch.cat([v, v * 2.0], 1), z


@pytest.mark.parametrize("h,w", [(67, 45), (64, 64), (101, 33)])
def test_exotic_local_operators(h, w):
    torch.manual_seed(1)
    m = _Exotic().eval()
    m.bn.running_mean.uniform_(-1, 1)
    m.bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, h, w)
    g = capture(m, x)
    assert all(op.local for op in g.ops), g.summary()
    ref = g.run(x)
    seg = Segment(g, 0, len(g.ops))
    for frac, rt, et in SPLITS + [(0.0, 1, 3), (1.0, 3, 1)]:
        plan = Plan("exotic", h, w, 0, len(g.ops), round(frac * seg.grid), rt, et)
        err = _max_err(g, run_collaborative(g, plan, x), ref)
        assert err <= TOL, f"{plan.spec()}: {err:.2e}"


def test_barriers_are_classified():
    g = capture(build_model("resnet18"), torch.zeros(1, 3, 64, 64))
    kinds = {op.name: op.local for op in g.ops}
    assert kinds["conv1"] and kinds["maxpool"] and kinds["add"]
    assert not kinds["avgpool"] and not kinds["flatten"] and not kinds["fc"]


def test_untraceable_model_names_the_construct():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:          # data-dependent control flow: fx cannot trace it
                return x
            return -x

    with pytest.raises(GraphCaptureError, match="cannot trace Branchy"):
        capture(Branchy().eval(), torch.zeros(1, 3, 8, 8))


def test_training_mode_is_refused():
    with pytest.raises(GraphCaptureError, match="eval mode"):
        capture(nn.Conv2d(3, 3, 3).train(), torch.zeros(1, 3, 8, 8))


def test_frame_outputs_report_the_robots_compute_and_bytes_to_the_edge_for_every_plan_kind():
    """FrameTiming's robot_compute_ms and bytes_robot_to_edge come from FrameOutputs: under a cut the robot's
    compute and bytes reach the aggregator only through the edge (it sends the aggregator nothing itself)."""
    from intradp_ros.engine.assembly import Assembler
    from intradp_ros.engine.executor import EdgeWorker, RobotWorker
    torch.manual_seed(0)
    model, x = build_model("resnet18"), torch.rand(1, 3, 224, 224)
    g = capture(model, x)
    starts, ends = split_points(g)
    mid = starts[len(starts) // 2]
    plans = {"offload": Plan.offload(g, "r"), "cut": Plan.cut(g, "r", mid),
             "split": Plan("r", 224, 224, mid, ends[mid][-1], 2, 2, 2), "local": Plan.local(g, "r")}
    for kind, plan in plans.items():
        robot, edge, agg = RobotWorker(g), EdgeWorker(g), Assembler(g)
        sent: list = []
        busy = robot.run_frame(7, plan, x, sent.append)
        to_edge = [p for p in sent if p.dest == "edge"]
        out = [q for p in to_edge for q in edge.on_packet(p)] + [p for p in sent if p.dest == "aggregator"]
        fo = [r for p in out if (r := agg.add(p)) is not None][0]
        assert fo.bytes_to_edge == sum(len(p.payload) for p in to_edge)
        if kind in ("cut", "split", "local"):      # the robot computed ops: their time is reported
            assert 0.5 * (robot.last_whole_ms + robot.last_tiles_ms) <= fo.robot_ms <= busy + 1e-6, kind
        assert (fo.bytes_to_edge > 0) == (kind != "local") and (fo.edge_ms > 0) == (kind != "local")
