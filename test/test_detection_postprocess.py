"""YOLO post-processing and letterbox pre-processing, on synthetic data (no weights, no network).

Covers: darknet's decode formula on a head that encodes a known box, per-row-tile decoding equal to decoding
everything, threshold and per-class NMS, the letterbox geometry and the exact uint8 -> float input, mapping
boxes back to original-image pixels, drawing, and the COCO names.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from intradp_ros.vision.coco_names import COCO_CLASSES, load_class_names
from intradp_ros.vision.detection import Detection, YoloHead, decode_rows, draw_detections, finalize
from intradp_ros.vision.preprocess import letterbox, letterbox_geometry, to_input

HEAD32 = YoloHead(stride=32, anchors=((81, 82), (135, 169), (344, 319)))
HEAD16 = YoloHead(stride=16, anchors=((10, 14), (23, 27), (37, 58)))


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _empty_head(rows: int, cols: int) -> np.ndarray:
    x = np.zeros((3, 85, rows, cols), np.float32)
    x[:, 4] = -12.0                                       # objectness ~ 6e-6: nothing there
    x[:, 5:] = -12.0
    return x


def _known_box_head() -> np.ndarray:
    """13x13 head with one object: anchor 1, row 5, col 7, dog (16), objectness 0.9, class prob 0.8."""
    x = _empty_head(13, 13)
    x[1, 0:4, 5, 7] = [_logit(0.25), _logit(0.5), np.log(2.0), np.log(0.5)]
    x[1, 4, 5, 7], x[1, 5 + 16, 5, 7] = _logit(0.9), _logit(0.8)
    return x.reshape(1, 255, 13, 13)


def test_decode_known_box():
    cand = decode_rows(_known_box_head(), 0, HEAD32, 416)
    assert cand.shape == (1, 7) and cand.dtype == np.float32
    cx, cy, w, h = (7 + 0.25) * 32, (5 + 0.5) * 32, 2 * 135, 0.5 * 169
    np.testing.assert_allclose(cand[0, :4], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-6)
    np.testing.assert_allclose(cand[0, 4:], [0.9 * 0.8, 16, 0.9], rtol=1e-6)
    # the same cell seen as row 0 of a one-row tile starting at grid row 5
    tile = decode_rows(_known_box_head()[:, :, 5:6], 5, HEAD32, 416)
    np.testing.assert_array_equal(tile, cand)
    # a torch tensor works too, and the floor drops weak (box, class) pairs
    assert decode_rows(torch.from_numpy(_known_box_head()), 0, HEAD32, 416).shape == (1, 7)
    assert decode_rows(_known_box_head(), 0, HEAD32, 416, floor=0.75).shape == (0, 7)


@pytest.mark.parametrize("head, size", [(HEAD32, (416, 416)), (HEAD16, (416, 416)), (HEAD16, (480, 320))])
def test_row_tiles_concatenate_to_the_whole(head, size):
    gw, gh = size[0] // head.stride, size[1] // head.stride
    x = np.random.default_rng(0).normal(0, 2, (1, 255, gh, gw)).astype(np.float32)
    x.reshape(3, 85, gh, gw)[:, 4] -= 2.0             # a realistic mix of empty and busy cells
    whole = decode_rows(x, 0, head, size)
    assert len(whole) > 100
    for cuts in ([0, gh], [0, 1, gh], [0, 3, 4, gh // 2, gh - 1, gh], list(range(gh + 1))):
        parts = [decode_rows(x[:, :, a:b], a, head, size) for a, b in itertools.pairwise(cuts)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_decode_rejects_mismatched_rows():
    x = _known_box_head()
    with pytest.raises(ValueError, match="outside"):
        decode_rows(x[:, :, 10:], 11, HEAD32, 416)         # rows 11..13 of a 13-row grid
    with pytest.raises(ValueError, match="column"):
        decode_rows(x, 0, HEAD32, 320)
    with pytest.raises(ValueError, match="one image"):
        decode_rows(np.concatenate([x, x]), 0, HEAD32, 416)
    with pytest.raises(ValueError, match="multiples of 32"):
        decode_rows(x, 0, HEAD32, 400)


def _cand(x1, y1, x2, y2, score, cls):
    return [x1, y1, x2, y2, score, cls, score]


def test_finalize_threshold_and_per_class_nms():
    geom = letterbox_geometry(416, 416, 416)              # identity mapping
    cand = np.array([
        _cand(100, 100, 200, 200, 0.90, 16),
        _cand(110, 110, 210, 210, 0.80, 16),              # IoU 0.68 with the first: suppressed
        _cand(110, 110, 210, 210, 0.70, 17),              # same box, other class: kept
        _cand(160, 100, 260, 200, 0.60, 16),              # IoU 0.25 with the first: kept
        _cand(300, 300, 350, 350, 0.25, 2),               # exactly the threshold: dropped (darknet: > thresh)
    ], np.float32)
    dets = finalize(cand, geom, conf_threshold=0.25, nms_threshold=0.45)
    assert [(d.class_name, round(d.score, 2)) for d in dets] == [("dog", 0.9), ("horse", 0.7), ("dog", 0.6)]
    assert dets[0] == Detection(16, "dog", pytest.approx(0.9), 150.0, 150.0, 100.0, 100.0)
    assert finalize(np.zeros((0, 7), np.float32), geom) == []
    assert finalize(cand, geom, class_names=["a"])[0].class_name == "class_16"


def test_finalize_maps_to_original_pixels_and_clips():
    # 800x400 image -> 416x208 inside a 416x416 input, 104 grey rows on top
    geom = letterbox_geometry(800, 400, 416)
    assert (geom.new_w, geom.new_h, geom.pad_x, geom.pad_y) == (416, 208, 0, 104)
    s = 416 / 800
    cand = np.array([_cand(104, 156, 208, 260, 0.9, 0),                 # fully inside
                     _cand(380, 80, 460, 140, 0.8, 1)], np.float32)    # sticks out right and top
    a, b = finalize(cand, geom)
    assert a.center_x == pytest.approx(156 / s) and a.center_y == pytest.approx((208 - 104) / s)
    assert a.size_x == pytest.approx(104 / s) and a.size_y == pytest.approx(104 / s)
    assert b.xyxy == pytest.approx((380 / s, 0.0, 800.0, (140 - 104) / s))
    # the synthetic head's box goes through the same path: decode, finalize, back to pixels
    dets = finalize(decode_rows(_known_box_head(), 0, HEAD32, 416), geom)
    assert len(dets) == 1 and dets[0].center_x == pytest.approx(7.25 * 32 / s)
    assert dets[0].center_y == pytest.approx((5.5 * 32 - 104) / s)


def test_letterbox_geometry_follows_darknet():
    g = letterbox_geometry(640, 424, 416)                 # person.jpg: 424 * 416 // 640 = 275
    assert (g.new_w, g.new_h, g.pad_x, g.pad_y) == (416, 275, 0, 70)
    g = letterbox_geometry(300, 900, (320, 416))          # tall image, non-square input
    assert (g.new_w, g.new_h, g.pad_x, g.pad_y) == (138, 416, 91, 0)
    assert g.scale == pytest.approx(416 / 900)
    np.testing.assert_allclose(g.to_original([[91, 0, 91 + 138, 416]]), [[0, 0, 300, 900]])


def test_letterbox_uint8_is_the_exact_network_input():
    rgb = np.random.default_rng(1).integers(0, 256, (120, 200, 3), np.uint8)
    boxed = letterbox(rgb, 416)
    assert boxed.image.shape == (416, 416, 3) and boxed.image.dtype == np.uint8
    g = boxed.geometry
    assert (g.new_w, g.new_h, g.pad_y) == (416, 249, 83)
    assert (boxed.image[:g.pad_y] == 127).all() and (boxed.image[g.pad_y + g.new_h:] == 127).all()
    x = boxed.to_input()
    assert x.shape == (1, 3, 416, 416) and x.dtype == np.float32
    t = torch.from_numpy(boxed.image).permute(2, 0, 1)[None].float() / 255.0      # what a receiver rebuilds
    assert torch.equal(torch.from_numpy(x), t)
    assert np.array_equal(to_input(boxed.image), x)
    np.testing.assert_array_equal(letterbox(rgb[:, :, ::-1].copy(), 416, color_order="bgr").image, boxed.image)
    assert np.array_equal(letterbox(rgb, (416, 128)).image.shape, (128, 416, 3))


def test_corner_aligned_resize():
    """darknet's bilinear resize keeps the corner pixels and interpolates linearly between them."""
    ramp = np.repeat(np.repeat(np.arange(0, 256, 51, dtype=np.uint8)[None, :, None], 6, 0), 3, 2)   # 6x6
    up = letterbox(ramp, (32, 32), pad_value=0).image                     # 6x6 -> 32x32, corner aligned
    row = up[0, :, 0].astype(float)
    np.testing.assert_allclose(row, np.linspace(0, 255, 32), atol=1.0)
    cv = letterbox(ramp, (32, 32), pad_value=0, resize="cv2").image[0, :, 0]
    assert cv[0] == 0 and cv[-1] == 255 and abs(int(cv[1]) - round(255 / 31)) > 1   # centre aligned differs


def test_letterbox_rejects_bad_images():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        letterbox(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        letterbox(np.zeros((10, 10, 3), np.uint16))
    with pytest.raises(ValueError, match="color_order"):
        letterbox(np.zeros((10, 10, 3), np.uint8), color_order="yuv")


def test_draw_detections():
    img = np.zeros((100, 160, 3), np.uint8)
    out = draw_detections(img, [Detection(16, "dog", 0.87, 80.0, 60.0, 60.0, 40.0)])
    assert out.shape == img.shape and out.dtype == np.uint8 and not img.any()     # input untouched
    assert out[80, 70:90].any() and not out[60, 80].any()                         # box edge drawn, inside empty
    assert out[:40, 50:110].any()                                                 # label above the box


def test_coco_names(tmp_path):
    assert len(COCO_CLASSES) == 80 and COCO_CLASSES[16] == "dog" and COCO_CLASSES[79] == "toothbrush"
    darknet = Path("/usr/share/darknet/data/coco.names")
    if darknet.is_file():
        assert load_class_names(darknet) == COCO_CLASSES
    (tmp_path / "two.names").write_text("cat\n\ndog\n")
    assert load_class_names(tmp_path / "two.names") == ("cat", "dog")
    assert load_class_names() is COCO_CLASSES
