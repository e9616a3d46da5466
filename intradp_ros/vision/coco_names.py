"""The 80 COCO class names in the order of darknet's COCO-trained heads (class id = index).

Shipped in the package so detections are always named, with or without the weights package. The spelling is
darknet's (``motorbike``, ``aeroplane``, ``sofa``, ``pottedplant``, ``diningtable``, ``tvmonitor``), so our
labels read exactly like ``darknet detector test`` output.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["COCO_CLASSES", "load_class_names"]

COCO_CLASSES: tuple[str, ...] = (
    # 0-9: people and vehicles
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat", "traffic light",
    # 10-23: street objects and animals
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe",
    # 24-38: accessories and sports
    "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    # 39-55: kitchen and food
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    # 56-79: furniture, electronics, household
    "chair", "sofa", "pottedplant", "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
assert len(COCO_CLASSES) == 80


def load_class_names(path: str | Path | None = None) -> tuple[str, ...]:
    """Class names from a darknet ``.names`` file (one per line), or the built-in COCO list for ``None``."""
    if path is None:
        return COCO_CLASSES
    names = tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    if not names:
        raise ValueError(f"{path}: no class names found (expected one name per line)")
    return names
