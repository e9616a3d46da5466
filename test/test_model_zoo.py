"""Model zoo: standard sizes, seeded init, fx-traceable with results identical to eager mode.

Every registry model except yolov3_tiny (which needs darknet weights) is built once per test; the whole file
runs in well under a minute on 2 CPU cores.
"""
import operator

import pytest
import torch
from torch import fx, nn

from intradp_ros.models import build_model, get_spec, model_names

# Published parameter counts of the standard architectures at 1000 classes.
EXPECTED_PARAMS = {
    "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "resnet152": 60_192_808,
    "mobilenet_v2": 3_504_872,
    "densenet121": 7_978_856,
    "convnext_tiny_blocks": 28_589_128,  # ConvNeXt-Tiny
}
ZOO = [n for n in model_names() if get_spec(n).task == "classification"]

# What the engine's op classifier must know about: module types and functions the traced graphs may contain.
ALLOWED_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.GELU, nn.MaxPool2d, nn.AvgPool2d,
                   nn.AdaptiveAvgPool2d, nn.LayerNorm, nn.Linear, nn.Dropout)
ALLOWED_FUNCTIONS = {operator.add, operator.mul, torch.cat, torch.flatten}
ALLOWED_METHODS = {"permute"}


def _input() -> torch.Tensor:
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))


pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.mark.parametrize("name", ZOO)
def test_model_size_trace_and_output(name):
    model = build_model(name)
    assert not model.training
    assert name in EXPECTED_PARAMS, f"add the published parameter count of {name!r} to EXPECTED_PARAMS"
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - EXPECTED_PARAMS[name]) <= 0.01 * EXPECTED_PARAMS[name], n_params

    traced = fx.symbolic_trace(model)
    x = _input()
    with torch.no_grad():
        y = model(x)
        y_traced = traced(x)
    assert y.shape == (1, 1000)
    assert torch.isfinite(y).all()
    assert 1e-3 < y.std().item() < 1e3, f"{name}: output std {y.std().item():.3g} (activations exploded/vanished)"
    assert (y - y_traced).abs().max().item() <= 1e-5

    modules = dict(traced.named_modules())
    for node in traced.graph.nodes:
        if node.op == "call_module":
            assert isinstance(modules[node.target], ALLOWED_MODULES), node.format_node()
        elif node.op == "call_function":
            assert node.target in ALLOWED_FUNCTIONS, node.format_node()
        elif node.op == "call_method":
            assert node.target in ALLOWED_METHODS, node.format_node()
    # exactly one flatten separates the spatial part from the classifier head
    assert sum(n.op == "call_function" and n.target is torch.flatten for n in traced.graph.nodes) == 1


def test_seeded_init_is_deterministic_and_batchnorm_is_not_identity():
    a, b, c = build_model("resnet18"), build_model("resnet18", seed=0), build_model("resnet18", seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])
    bn = a.bn1
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))


def test_num_classes_kwarg():
    model = build_model("mobilenet_v2", num_classes=10)
    with torch.no_grad():
        assert model(_input()).shape == (1, 10)


@pytest.mark.parametrize("name", model_names())
def test_normalisation_eps_is_positive(name):
    """torch >= 2.11 refuses batch norm with eps <= 0 (seen on the GPU edge's torch 2.11): every model, yolov3_tiny
    with its darknet-equivalent batch norm included, must build with a positive eps."""
    model = build_model(name, **({"weights": None} if name == "yolov3_tiny" else {}))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))]
    assert all(m.eps > 0 for m in norms)


def test_unet_small_is_dense_and_local_throughout():
    """The dense-output model: a class score per pixel at the input's size, and every operator local (the
    decoder's shape-computed pads folded at capture), so one segment spans the network."""
    from intradp_ros.engine.graph import capture
    model, again = build_model("unet_small"), build_model("unet_small")
    state = again.state_dict()        # seeded throughout (transposed convolutions too): robot and edge build one
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 21, 256, 256) and torch.isfinite(y).all()
    g = capture(model, torch.zeros(1, 3, 256, 256))
    assert all(op.local for op in g.ops), g.summary()
    assert torch.equal(g.run(x)[g.outputs[0]], y)
