"""YOLO post-processing split in two: a local decode per row tile, and one global finalize (threshold + NMS).

Decoding depends only on each grid cell's own outputs, so it runs wherever a row tile of a head is computed and
only compact candidates travel; NMS needs all candidates and runs once per frame. Decoding follows darknet's
yolo layer: ``x = (sigmoid(tx) + col) * stride``, ``w = exp(tw) * anchor_w`` (network-input pixels),
objectness and class probabilities are sigmoids, and a (box, class) pair scores ``objectness * class_prob``.

``finalize`` keeps pairs scoring above the threshold and suppresses per class (``cv2.dnn.NMSBoxesBatched``,
greedy by score, IoU > nms_threshold), which is what darknet's ``do_nms_sort`` does for ``detector test``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np

from .coco_names import COCO_CLASSES
from .preprocess import LetterboxGeometry, size_wh

__all__ = ["CANDIDATE_COLUMNS", "Detection", "YoloHead", "decode_rows", "draw_detections", "finalize"]

CANDIDATE_COLUMNS = ("x1", "y1", "x2", "y2", "score", "class_id", "objectness")   # decode_rows output, (K, 7)


@dataclasses.dataclass(frozen=True)
class YoloHead:
    """What one raw head output means: its stride and the anchors (w, h in input pixels) of its channels."""
    stride: int
    anchors: tuple[tuple[float, float], ...]
    num_classes: int = 80

    @property
    def channels(self) -> int:
        return len(self.anchors) * (5 + self.num_classes)


@dataclasses.dataclass
class Detection:
    """One detection in original-image pixels (centre and size, as in vision_msgs' BoundingBox2D)."""
    class_id: int
    class_name: str
    score: float        # objectness * class probability
    center_x: float
    center_y: float
    size_x: float
    size_y: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        hx, hy = self.size_x / 2, self.size_y / 2
        return self.center_x - hx, self.center_y - hy, self.center_x + hx, self.center_y + hy


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def decode_rows(head_output_rows, row_start: int, head: YoloHead, input_size: int | tuple[int, int],
                floor: float = 0.005) -> np.ndarray:
    """Decode rows ``row_start ..`` of one raw head output into box candidates.

    Args:
        head_output_rows: ``(1, A*(5+C), h, W)`` or ``(A*(5+C), h, W)`` array (or CPU tensor), ``h`` grid rows
            starting at absolute grid row ``row_start``, all ``W`` columns.
        row_start: absolute grid row of the first row.
        head: the head's metadata (``model.heads[i]``).
        input_size: network input side (int) or ``(w, h)``, to check the grid and place boxes.
        floor: keep (box, class) pairs with score > floor; must be <= the final threshold.

    Returns:
        ``(K, 7)`` float32 rows ``x1, y1, x2, y2, score, class_id, objectness`` in network-input pixels, ordered
        by (row, column, anchor, class), so decoding row tiles and concatenating equals decoding everything.
    """
    x = np.asarray(head_output_rows, dtype=np.float32)
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"decode_rows decodes one image at a time, got batch {x.shape[0]}")
        x = x[0]
    in_w, in_h = size_wh(input_size, 32)
    n_a, n_e = len(head.anchors), 5 + head.num_classes
    grid_w, grid_h = in_w // head.stride, in_h // head.stride
    if x.ndim != 3 or x.shape[0] != n_a * n_e or x.shape[2] != grid_w:
        raise ValueError(f"head rows of shape {tuple(x.shape)} do not fit a {grid_w}-column grid with {n_a} anchors "
                         f"x {n_e} entries (stride {head.stride}, input {in_w}x{in_h})")
    rows = x.shape[1]
    if row_start < 0 or row_start + rows > grid_h:
        raise ValueError(f"rows {row_start}..{row_start + rows - 1} are outside the {grid_h}-row grid "
                         f"(stride {head.stride}, input {in_w}x{in_h})")
    p = x.reshape(n_a, n_e, rows, grid_w).transpose(2, 3, 0, 1)     # (h, W, A, 5+C)
    obj = _sigmoid(np.ascontiguousarray(p[..., 4]))                 # (h, W, A)
    r, c, a = np.nonzero(obj > floor)                               # cells worth decoding, row-major
    sel = p[r, c, a]                                                # (M, 5+C)
    scores = obj[r, c, a][:, None] * _sigmoid(np.ascontiguousarray(sel[:, 5:]))   # (M, C)
    m, cls = np.nonzero(scores > floor)                             # (box, class) pairs, (K,)
    if m.size == 0:
        return np.zeros((0, 7), np.float32)
    anchor_wh = np.asarray(head.anchors, np.float32)[a[m]]           # (K, 2)
    t = sel[m]                                                      # (K, 5+C)
    stride = np.float32(head.stride)
    cx = (_sigmoid(t[:, 0]) + c[m].astype(np.float32)) * stride
    cy = (_sigmoid(t[:, 1]) + (r[m] + row_start).astype(np.float32)) * stride
    with np.errstate(over="ignore"):
        bw, bh = np.exp(t[:, 2]) * anchor_wh[:, 0], np.exp(t[:, 3]) * anchor_wh[:, 1]
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, scores[m, cls],
                     cls.astype(np.float32), obj[r, c, a][m]], axis=1).astype(np.float32)   # (K, 7)


def finalize(candidates: np.ndarray, geometry: LetterboxGeometry, conf_threshold: float = 0.25,
             nms_threshold: float = 0.45, class_names: Sequence[str] | None = None) -> list[Detection]:
    """Threshold, per-class NMS and mapping to original-image pixels (boxes clipped to the image).

    Args:
        candidates: ``(K, 7)`` rows from :func:`decode_rows`, all heads and tiles of one frame concatenated.
        geometry: the frame's letterbox placement (:func:`~intradp_ros.vision.preprocess.letterbox_geometry`).
        conf_threshold: keep pairs with ``objectness * class_prob > conf_threshold`` (darknet's ``-thresh``).
        nms_threshold: suppress a same-class box whose IoU with a better one is > this (darknet: 0.45).
        class_names: id -> name; defaults to COCO's 80 names.

    Returns:
        Detections sorted by descending score; boxes left with no area after clipping are dropped.
    """
    cand = np.asarray(candidates, dtype=np.float32).reshape(-1, 7)
    cand = cand[cand[:, 4] > conf_threshold]
    if len(cand) == 0:
        return []
    xywh = np.stack([cand[:, 0], cand[:, 1], cand[:, 2] - cand[:, 0], cand[:, 3] - cand[:, 1]], 1)
    keep = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.astype(np.float64), cand[:, 4].tolist(),
                                              cand[:, 5].astype(np.int32).tolist(), float(conf_threshold),
                                              float(nms_threshold)), dtype=np.int64).reshape(-1)
    keep = keep[np.argsort(-cand[keep, 4], kind="stable")]
    boxes = geometry.to_original(cand[keep, :4])                     # (k, 4) x1, y1, x2, y2, clipped
    names = COCO_CLASSES if class_names is None else class_names
    dets = []
    for (x1, y1, x2, y2), row in zip(boxes, cand[keep], strict=True):
        if x2 <= x1 or y2 <= y1:
            continue
        cid = int(row[5])
        dets.append(Detection(cid, names[cid] if cid < len(names) else f"class_{cid}", float(row[4]),
                              float(x1 + x2) / 2, float(y1 + y2) / 2, float(x2 - x1), float(y2 - y1)))
    return dets


def _class_color(class_id: int) -> tuple[int, int, int]:
    """A stable BGR colour per class; hue steps of 47 (of OpenCV's 180) keep neighbouring ids apart."""
    hsv = np.array([[[class_id * 47 % 180, 220, 255]]], np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_detections(image_bgr: np.ndarray, detections: Sequence[Detection], thickness: int = 2) -> np.ndarray:
    """A copy of ``image_bgr`` with each detection's box and a 'name score' label (for the annotated topic).

    Weaker detections are drawn first so the best ones stay on top; labels of several classes on one box are
    stacked instead of overwriting each other.
    """
    out = np.ascontiguousarray(image_bgr).copy()
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    stacked: dict[tuple[int, int], int] = {}
    for d in sorted(detections, key=lambda d: d.score):
        x1, y1, x2, y2 = (round(v) for v in d.xyxy)
        color = _class_color(d.class_id)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        label = f"{d.class_name} {d.score:.2f}"
        (tw, th), base = cv2.getTextSize(label, font, font_scale, 1)
        step = th + base + 2
        ty = y1 - 2 if y1 - step >= 0 else y1 + step         # above the box, or inside at the top
        ty += step * stacked.get((x1, y1), 0)
        stacked[(x1, y1)] = stacked.get((x1, y1), 0) + 1
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + base // 2), color, cv2.FILLED)
        cv2.putText(out, label, (x1 + 1, ty - base // 2), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def overlay_mask(image_bgr: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A copy of ``image_bgr`` with a (H, W) class-id mask blended over it, one colour per class (class 0, the
    background by convention, left clear)."""
    lut = np.array([(0, 0, 0)] + [_class_color(c) for c in range(1, 256)], np.float32)
    colour = lut[mask]
    out = image_bgr.astype(np.float32)
    fg = (mask > 0)[:, :, None]
    return np.where(fg, (1.0 - alpha) * out + alpha * colour, out).round().astype(np.uint8)
