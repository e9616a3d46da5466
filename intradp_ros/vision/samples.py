"""Where the sample frames live: darknet's sample images, put in ``.cache/samples`` by ``./intradp setup``
(taken from Debian's darknet package) or installed system-wide by that package. ROS-free, so the demo, the
camera player and the tests share one search order."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

__all__ = ["IMAGE_SUFFIXES", "images_in", "find_samples", "load_sample"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
DARKNET_DATA = Path("/usr/share/darknet/data")


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _candidates() -> list[Path]:
    out = []
    for var, sub in (("INTRADP_SAMPLES", ""), ("INTRADP_ROOT", ".cache/samples")):
        if os.environ.get(var):
            out.append(Path(os.environ[var]) / sub)
    # this file is <checkout>/intradp_ros/vision/samples.py, or a symlink to it in a symlink install
    out.append(Path(__file__).resolve().parents[2] / ".cache" / "samples")
    try:
        from ament_index_python.packages import get_package_share_directory
        out.append(Path(get_package_share_directory("intradp_ros")) / ".cache" / "samples")
    except Exception:  # noqa: BLE001 - no ament index (pip-only, not built): skip that place
        pass
    out.append(DARKNET_DATA)
    return out


def find_samples() -> Path | None:
    """The first folder holding sample images, or None."""
    for folder in _candidates():
        if folder.is_dir() and images_in(folder):
            return folder
    return None


def load_sample(name: str) -> np.ndarray | None:
    """A sample image as BGR uint8 (as cv2 reads it), or None when no sample folder has it."""
    for folder in _candidates():
        if (folder / name).is_file():
            return cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
    return None
