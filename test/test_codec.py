"""Payload encodings round-trip, and every malformed payload is refused with a clear error."""
import numpy as np
import pytest
import torch

from intradp_ros.engine.codec import MAX_ELEMENTS, CodecError, decode, encode, is_u8_exact


@pytest.mark.parametrize("encoding", ["raw", "lz4", "zstd"])
def test_lossless_round_trip(encoding):
    x = torch.relu(torch.randn(1, 16, 9, 7))          # activations: many zeros, like real ones
    payload, dtype = encode(x, encoding)
    assert torch.equal(decode(payload, encoding, dtype, tuple(x.shape)), x)


def test_compression_shrinks_sparse_activations():
    x = torch.relu(torch.randn(1, 64, 32, 32) - 1.0)
    assert len(encode(x, "lz4")[0]) < 0.8 * x.numel() * 4


def test_fp16_is_close_and_half_size():
    x = torch.randn(2, 3, 5, 5)
    payload, dtype = encode(x, "fp16")
    assert len(payload) == x.numel() * 2 and dtype == "float16"
    assert (decode(payload, "fp16", dtype, tuple(x.shape)) - x).abs().max() < 1e-2


def test_u8_is_exact_for_every_level():
    levels = torch.arange(256, dtype=torch.float32).reshape(1, 1, 16, 16)
    x = levels / 255.0                                   # what pre-processing produces
    assert is_u8_exact(x)
    payload, dtype = encode(x, "u8")
    assert len(payload) == 256 and torch.equal(decode(payload, "u8", dtype, (1, 1, 16, 16)), x)
    assert not is_u8_exact(x + 1e-3)


@pytest.mark.parametrize("payload,encoding,dtype,shape,match", [
    (b"\0" * 10, "raw", "float32", (1, 1, 1, 3), "10 bytes"),
    (b"\0" * 12, "raw", "float32", (10 ** 6, 10 ** 6), "exceeds"),
    (b"\0" * 12, "raw", "float64", (1, 3), "carries float32"),
    (b"\0" * 12, "gzip", "float32", (1, 3), "unknown encoding"),
    (b"not lz4 at all", "lz4", "float32", (1, 3), "does not decompress"),
    (b"\0" * 12, "raw", "float32", (), "invalid shape"),
    (b"\0" * 12, "raw", "float32", (-1, 3), "invalid shape"),
])
def test_malformed_payloads_are_refused(payload, encoding, dtype, shape, match):
    with pytest.raises(CodecError, match=match):
        decode(payload, encoding, dtype, shape)


def test_decompression_bomb_is_bounded():
    big = encode(torch.zeros(1, 1, 1024, 1024), "zstd")[0]     # 4 MiB of zeros, a few hundred bytes on the wire
    with pytest.raises(CodecError):
        decode(big, "zstd", "float32", (1, 1, 1, 16))
    assert MAX_ELEMENTS >= 1 << 26


def test_decoded_tensor_owns_its_memory():
    x = torch.randn(1, 2, 3, 4)
    y = decode(bytearray(encode(x, "raw")[0]), "raw", "float32", (1, 2, 3, 4))
    y += 1.0                                             # must not raise (read-only buffer) or alias the payload
    assert np.allclose(y.numpy(), x.numpy() + 1.0)
