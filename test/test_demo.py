"""intradp_ros.tools.demo (`./intradp run`): the annotated frames it writes as JPEG files."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from intradp_ros.tools.demo import save_jpeg


def _image(arr: np.ndarray, encoding: str, pad: int = 0) -> SimpleNamespace:
    """A sensor_msgs/Image stand-in holding ``arr``, each row padded by ``pad`` bytes."""
    h, w = arr.shape[:2]
    rows = arr.reshape(h, -1)
    data = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1).tobytes()
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=rows.shape[1] + pad, data=data,
                           is_bigendian=0)


@pytest.mark.parametrize("encoding,pad", [("bgr8", 0), ("rgb8", 6), ("mono8", 3)])
def test_jpeg_decodes_to_the_frame_size_and_colours(tmp_path, encoding, pad):
    h, w = 48, 80
    bgr = np.zeros((h, w, 3), np.uint8)
    bgr[:, : w // 2] = (0, 0, 255)          # left half red, right half blue (BGR)
    bgr[:, w // 2:] = (255, 0, 0)
    arr = {"bgr8": bgr, "rgb8": bgr[:, :, ::-1].copy(), "mono8": bgr[:, :, 2].copy()}[encoding]
    path = tmp_path / "frame_001.jpg"
    save_jpeg(_image(arr, encoding, pad), path)
    back = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert back is not None and back.shape == (h, w, 3)
    want = bgr if encoding != "mono8" else np.repeat(bgr[:, :, 2:3], 3, axis=2)
    assert np.abs(back.astype(int) - want.astype(int)).mean() < 8   # JPEG is lossy, colours must not swap

