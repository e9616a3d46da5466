"""nodes.cdr: a camera image read from its serialized bytes equals what rclpy deserializes, pixels in place."""
import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from intradp_ros.nodes.cdr import CdrError, image_from_cdr
from intradp_ros.vision.image_convert import array_to_image_fields


def _message(arr, encoding, frame_id, sec=1712345678, nanosec=987654321, pad=0):
    f = array_to_image_fields(arr, encoding)
    m = Image(height=f["height"], width=f["width"], encoding=encoding, is_bigendian=f["is_bigendian"])
    m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = sec, nanosec, frame_id
    rows = np.frombuffer(f["data"], np.uint8).reshape(f["height"], -1)
    m.step = f["step"] + pad
    m.data = np.pad(rows, ((0, 0), (0, pad))).tobytes()
    return m


@pytest.mark.parametrize("frame_id", ["", "c", "cam", "camera_optical_frame", "é" * 5])
@pytest.mark.parametrize("encoding,shape,dtype", [("bgr8", (5, 7, 3), np.uint8), ("mono16", (4, 3), np.uint16),
                                                   ("rgba8", (3, 2, 4), np.uint8), ("mono8", (1, 1), np.uint8)])
@pytest.mark.parametrize("pad", [0, 3])
def test_fields_equal_rclpys(frame_id, encoding, shape, dtype, pad):
    rng = np.random.default_rng(len(frame_id) + pad)
    arr = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    m = _message(arr, encoding, frame_id, pad=pad)
    raw = serialize_message(m)
    img = image_from_cdr(raw)
    assert (img.sec, img.nanosec, img.frame_id) == (m.header.stamp.sec, m.header.stamp.nanosec, frame_id)
    assert (img.height, img.width, img.encoding, img.is_bigendian, img.step) == (
        m.height, m.width, encoding, bool(m.is_bigendian), m.step)
    assert bytes(img.data) == bytes(m.data)
    assert img.data.obj is raw                     # a view of the serialized bytes, not a copy


def test_negative_seconds_read_signed():
    img = image_from_cdr(serialize_message(_message(np.zeros((1, 1, 3), np.uint8), "bgr8", "x", sec=-5)))
    assert img.sec == -5


def test_truncated_or_absurd_bytes_are_errors():
    raw = serialize_message(_message(np.zeros((4, 4, 3), np.uint8), "bgr8", "camera"))
    for cut in (5, 12, 20, 30, len(raw) - 1):
        with pytest.raises(CdrError):
            image_from_cdr(raw[:cut])
    huge = bytearray(raw)
    huge[12:16] = (1 << 30).to_bytes(4, "little")         # frame_id length (after 4 + 8 bytes)
    with pytest.raises(CdrError):
        image_from_cdr(bytes(huge))


def test_other_encapsulations_are_left_to_rclpy():
    assert image_from_cdr(b"\x00\x00\x00\x00" + b"\x00" * 40) is None     # big-endian CDR
    assert image_from_cdr(b"") is None
