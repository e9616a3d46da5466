"""sensor_msgs/Image read straight from its serialized CDR bytes, without building the message.

rclpy's deserialization of a camera image copies its pixels into an ``array.array`` (0.6-0.9 ms for a 768x576
bgr8 image on this project's host) only for robot_node to view them as an array again. :func:`image_from_cdr`
reads the scalar fields with ``struct`` and returns ``data`` as a view of the serialized buffer (zero-copy).

Layout (XCDR1, what rmw_fastrtps writes for ROS messages): a 4-byte encapsulation header (``00 01``:
little-endian CDR), then, aligned relative to the byte after it: header.stamp (int32 sec, uint32 nanosec),
header.frame_id (uint32 length with the NUL, bytes), height, width (uint32), encoding (string), is_bigendian
(uint8), step (uint32), data (uint32 length, bytes). A buffer in another encapsulation returns None: the caller
deserializes it the usual way.
"""
from __future__ import annotations

import dataclasses
import struct

__all__ = ["CdrImage", "CdrError", "image_from_cdr", "tile_session"]

MAX_STRING = 4096               # frame_id / encoding longer than this are a corrupt or hostile message


class CdrError(ValueError):
    """Bytes that cannot be a serialized sensor_msgs/Image."""


@dataclasses.dataclass(frozen=True)
class CdrImage:
    sec: int
    nanosec: int
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int
    data: memoryview                # a view of the serialized buffer: keep that alive while using it


class _Reader:
    def __init__(self, raw):
        self.buf, self.off = memoryview(raw), 4

    def _align(self, n: int) -> None:
        self.off = 4 + (self.off - 4 + n - 1) // n * n

    def u32(self, fmt: str = "<I") -> int:
        self._align(4)
        if self.off + 4 > len(self.buf):
            raise CdrError("truncated")
        v = struct.unpack_from(fmt, self.buf, self.off)[0]
        self.off += 4
        return v

    def u8(self) -> int:
        if self.off >= len(self.buf):
            raise CdrError("truncated")
        self.off += 1
        return self.buf[self.off - 1]

    def string(self, max_len: int = MAX_STRING, codec: str = "utf-8") -> str:
        n = self.u32()
        if not 0 < n <= max_len or self.off + n > len(self.buf):
            raise CdrError(f"string of {n} bytes")
        s = bytes(self.buf[self.off:self.off + n - 1])
        self.off += n
        try:
            return s.decode(codec)
        except UnicodeDecodeError as e:
            raise CdrError(f"string is not UTF-8: {e}") from None

    def octets(self) -> memoryview:
        n = self.u32()
        if self.off + n > len(self.buf):
            raise CdrError(f"data of {n} bytes in a {len(self.buf)}-byte message")
        self.off += n
        return self.buf[self.off - n:self.off]


def _little_endian(raw) -> bool:
    return len(raw) >= 4 and bytes(raw[:2]) == b"\x00\x01"


def tile_session(raw) -> str | None:
    """The ``session`` of a serialized TensorTile, read without deserializing it (None if it cannot be read): a
    receiver that serves one session drops other sessions' messages for ~1 us instead of ~25 us plus the queue,
    which on a CPU-capped robot is the difference between a flood of garbage slowing its frames or not.
    TensorTile starts with std_msgs/Header (as Image does), then the string ``session``."""
    if not _little_endian(raw):
        return None
    r = _Reader(raw)
    try:
        r.u32(), r.u32(), r.string(codec="latin-1")       # header: stamp, frame_id (skipped)
        return r.string(max_len=64, codec="ascii")
    except CdrError:
        return None


def image_from_cdr(raw) -> CdrImage | None:
    """The fields of a serialized sensor_msgs/Image (``data`` zero-copy), None if not little-endian CDR.

    Raises:
        CdrError: the bytes are truncated or hold absurd lengths.
    """
    if not _little_endian(raw):
        return None
    r = _Reader(raw)
    sec, nanosec = r.u32("<i"), r.u32()
    frame_id = r.string()
    height, width = r.u32(), r.u32()
    encoding = r.string()
    is_bigendian = bool(r.u8())
    step = r.u32()
    return CdrImage(sec, nanosec, frame_id, height, width, encoding, is_bigendian, step, r.octets())
