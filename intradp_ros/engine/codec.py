"""Tile payload encodings, and the validation every received payload goes through.

- ``raw``: float32 bytes. ``fp16``: half precision (lossy, opt-in). ``lz4`` / ``zstd``: lossless compression of
  the float32 bytes. ``u8``: the network input, which is exactly ``uint8 / 255``: lossless at a quarter of the
  size (see :func:`is_u8_exact`).
"""
from __future__ import annotations

import io

import numpy as np
import torch

__all__ = ["ENCODINGS", "CodecError", "encode", "decode", "elements", "is_u8_exact", "MAX_ELEMENTS"]

ENCODINGS = ("raw", "fp16", "u8", "lz4", "zstd")
MAX_ELEMENTS = 1 << 28           # 1 GiB of float32: anything larger is a corrupt or hostile header
_WIRE_DTYPE = {"raw": "float32", "fp16": "float16", "u8": "uint8", "lz4": "float32", "zstd": "float32"}


class CodecError(ValueError):
    """A payload that cannot be a tensor of the declared shape/dtype/encoding."""


def _compressors():
    import lz4.frame
    import zstandard
    return lz4.frame, zstandard


def elements(shape) -> int:
    """Elements of a tensor of ``shape`` (negative sizes count as 0)."""
    n = 1
    for s in shape:
        n *= max(int(s), 0)
    return n


def is_u8_exact(x: torch.Tensor) -> bool:
    """True if ``x`` equals ``round(x * 255) / 255`` exactly (a uint8 image scaled to 0..1)."""
    q = torch.round(x * 255.0)
    return bool(((q >= 0) & (q <= 255)).all()) and torch.equal(q / 255.0, x)


def encode(x: torch.Tensor, encoding: str) -> tuple[bytes, str]:
    """Encode a float32 tensor (or, as ``u8``, a uint8 one as it is); returns (payload, wire dtype)."""
    if encoding not in ENCODINGS:
        raise CodecError(f"unknown encoding {encoding!r}; use one of {ENCODINGS}")
    x = x.detach().cpu().contiguous()
    if x.dtype == torch.uint8:
        if encoding != "u8":
            raise CodecError(f"a uint8 tensor travels as u8, not {encoding!r}")
        return x.numpy().tobytes(), "uint8"      # already the bytes: the image as letterboxed, or class ids
    if encoding == "fp16":
        return x.to(torch.float16).numpy().tobytes(), "float16"
    if encoding == "u8":
        return torch.round(x * 255.0).clamp_(0, 255).to(torch.uint8).numpy().tobytes(), "uint8"
    raw = x.to(torch.float32).numpy().tobytes()
    if encoding == "lz4":
        return _compressors()[0].compress(raw, compression_level=0), "float32"
    if encoding == "zstd":
        return _compressors()[1].ZstdCompressor(level=1).compress(raw), "float32"
    return raw, "float32"


def _decompress(data: bytes, encoding: str, expected: int) -> bytes:
    """At most ``expected`` + 1 bytes of the decompressed payload: a small payload that expands to gigabytes (a
    decompression bomb) costs no more memory or time than an honest one, and one byte over says it is wrong."""
    lz4_frame, zstandard = _compressors()
    try:
        if encoding == "lz4":
            d = lz4_frame.LZ4FrameDecompressor()
            out = d.decompress(data, max_length=expected + 1)
            if len(out) == expected and not d.eof:
                out += d.decompress(b"", max_length=1)      # the frame may still end here, or carry one byte more
            return out
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as r:
            return r.read(expected + 1)
    except Exception as e:  # noqa: BLE001 - both libraries raise their own error types
        raise CodecError(f"{encoding} payload does not decompress: {e}") from e


def decode(payload: bytes | memoryview, encoding: str, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Decode and validate a payload into a float32 tensor of ``shape``.

    Raises:
        CodecError: unknown encoding or dtype, absurd shape, or payload size disagreeing with shape and dtype.
    """
    if encoding not in ENCODINGS:
        raise CodecError(f"unknown encoding {encoding!r}")
    if dtype != _WIRE_DTYPE[encoding]:
        raise CodecError(f"encoding {encoding!r} carries {_WIRE_DTYPE[encoding]}, message says {dtype!r}")
    if not shape or any(int(s) < 0 for s in shape):
        raise CodecError(f"invalid shape {tuple(shape)}")
    n = 1
    for s in shape:
        n *= int(s)
        if n > MAX_ELEMENTS:
            raise CodecError(f"shape {tuple(shape)} exceeds {MAX_ELEMENTS} elements")
    itemsize = np.dtype(dtype).itemsize
    data = bytes(payload) if not isinstance(payload, (bytes, bytearray)) else payload
    if encoding in ("lz4", "zstd"):
        data = _decompress(data, encoding, n * itemsize)
    if len(data) != n * itemsize:
        raise CodecError(f"payload has {len(data)} bytes, shape {tuple(shape)} x {dtype} needs {n * itemsize}")
    arr = np.frombuffer(data, dtype=dtype).reshape(tuple(int(s) for s in shape))
    t = torch.from_numpy(arr.copy())   # received buffers are read-only; tensors must own their memory
    if encoding == "u8":
        return t.to(torch.float32) / 255.0
    return t.to(torch.float32)
