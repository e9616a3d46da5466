"""intradp_ros.vision.image_convert: sensor_msgs/Image fields <-> NumPy, no ROS needed."""
import array
import sys

import numpy as np
import pytest

from intradp_ros.vision.image_convert import (
    ENCODINGS,
    ImageConversionError,
    array_to_image_fields,
    from_bgr8,
    image_to_array,
    to_rgb8,
)

RNG = np.random.default_rng(7)

# encoding -> (channels, dtype)
SHAPES = {
    'bgr8': (3, np.uint8), 'rgb8': (3, np.uint8), 'bgra8': (4, np.uint8), 'rgba8': (4, np.uint8),
    'mono8': (1, np.uint8), 'mono16': (1, np.uint16), '16UC1': (1, np.uint16),
    '8UC1': (1, np.uint8), '8UC3': (3, np.uint8),
}


def _random(encoding, height=5, width=7):
    channels, dtype = SHAPES[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _to_array(fields):
    return image_to_array(fields['encoding'], fields['height'], fields['width'], fields['step'],
                          fields['data'], fields['is_bigendian'])


def test_every_encoding_is_tested():
    assert set(SHAPES) == set(ENCODINGS)


@pytest.mark.parametrize('encoding', sorted(SHAPES))
def test_round_trip(encoding):
    arr = _random(encoding)
    fields = array_to_image_fields(arr, encoding)
    channels, dtype = SHAPES[encoding]
    assert fields['encoding'] == encoding
    assert (fields['height'], fields['width']) == (5, 7)
    assert fields['step'] == 7 * channels * np.dtype(dtype).itemsize
    assert isinstance(fields['data'], bytes) and len(fields['data']) == fields['step'] * 5
    back = _to_array(fields)
    assert back.dtype == dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize('kind', [bytes, memoryview, bytearray, lambda b: array.array('B', b),
                                  lambda b: np.frombuffer(b, np.uint8)])
def test_data_containers(kind):
    """Whatever rclpy hands over for uint8[] (array.array) or a user builds."""
    arr = _random('rgb8')
    fields = array_to_image_fields(arr, 'rgb8')
    fields['data'] = kind(fields['data'])
    np.testing.assert_array_equal(_to_array(fields), arr)


def test_zero_copy_view():
    arr = _random('bgr8')
    data = array_to_image_fields(arr, 'bgr8')['data']
    view = image_to_array('bgr8', 5, 7, 21, data)
    assert np.shares_memory(view, np.frombuffer(data, np.uint8))
    assert not view.flags.writeable


@pytest.mark.parametrize('encoding', ['bgr8', 'mono8', 'mono16', 'rgba8'])
def test_padded_step(encoding):
    arr = _random(encoding, height=4, width=3)
    packed = array_to_image_fields(arr, encoding)
    pad = 6  # bytes of padding per row, a multiple of every sample size
    step = packed['step'] + pad
    rows = [packed['data'][r * packed['step']:(r + 1) * packed['step']] + b'\xee' * pad for r in range(4)]
    data = b''.join(rows)
    back = image_to_array(encoding, 4, 3, step, data)
    np.testing.assert_array_equal(back, arr)
    assert np.shares_memory(back, np.frombuffer(data, np.uint8))  # padding skipped by strides, not copied


@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
def test_big_endian_16bit(encoding):
    arr = np.array([[0x0102, 0xA0B0, 0xFFFF], [0, 1, 0x8000]], np.uint16)
    data = arr.astype('>u2').tobytes()
    back = image_to_array(encoding, 2, 3, 6, data, is_bigendian=True)
    assert back.dtype == np.uint16 and back.dtype.isnative
    np.testing.assert_array_equal(back, arr)
    little = image_to_array(encoding, 2, 3, 6, arr.astype('<u2').tobytes(), is_bigendian=False)
    np.testing.assert_array_equal(little, arr)


def test_fields_report_byte_order():
    fields = array_to_image_fields(np.zeros((1, 1), np.uint16), 'mono16')
    assert fields['is_bigendian'] == (sys.byteorder == 'big')
    assert array_to_image_fields(np.zeros((1, 1), np.uint8), 'mono8')['is_bigendian'] is False


def test_non_native_input_array_is_written_native():
    arr = np.array([[1, 258]], dtype='>u2')
    fields = array_to_image_fields(arr, 'mono16')
    np.testing.assert_array_equal(_to_array(fields), [[1, 258]])


def test_mono_accepts_trailing_channel_axis():
    arr = _random('mono8')
    fields = array_to_image_fields(arr[:, :, None], 'mono8')
    np.testing.assert_array_equal(_to_array(fields), arr)


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize('encoding', ['yuv422', 'bayer_rggb8', '32FC1', 'BGR8', ''])
def test_unsupported_encoding(encoding):
    with pytest.raises(ImageConversionError, match='unsupported image encoding') as info:
        image_to_array(encoding, 2, 2, 6, bytes(12))
    assert 'bgr8' in str(info.value)  # lists what is supported
    with pytest.raises(ImageConversionError, match='unsupported image encoding'):
        array_to_image_fields(np.zeros((2, 2, 3), np.uint8), encoding)
    with pytest.raises(ImageConversionError, match='unsupported image encoding'):
        to_rgb8(np.zeros((2, 2, 3), np.uint8), encoding)


def test_error_is_a_value_error():
    assert issubclass(ImageConversionError, ValueError)


@pytest.mark.parametrize('height,width', [(0, 4), (4, 0), (0, 0), (-1, 4)])
def test_empty_image(height, width):
    with pytest.raises(ImageConversionError, match='must be > 0'):
        image_to_array('mono8', height, width, max(width, 1), b'')


def test_empty_array():
    with pytest.raises(ImageConversionError, match='must be > 0'):
        array_to_image_fields(np.zeros((0, 3, 3), np.uint8), 'bgr8')


def test_step_too_small():
    with pytest.raises(ImageConversionError, match='step 8 is shorter than one row \\(9 bytes\\)'):
        image_to_array('bgr8', 2, 3, 8, bytes(16))


def test_step_not_multiple_of_sample():
    with pytest.raises(ImageConversionError, match='not a multiple'):
        image_to_array('mono16', 2, 3, 7, bytes(14))


@pytest.mark.parametrize('size', [17, 19, 0, 36])
def test_data_length_mismatch(size):
    with pytest.raises(ImageConversionError, match=f'data has {size} bytes, step\\*height is 18'):
        image_to_array('bgr8', 2, 3, 9, bytes(size))


@pytest.mark.parametrize('arr,encoding', [
    (np.zeros((2, 3), np.uint8), 'bgr8'),            # mono array, colour encoding
    (np.zeros((2, 3, 4), np.uint8), 'rgb8'),         # wrong channel count
    (np.zeros((2, 3, 3), np.uint8), 'mono8'),
    (np.zeros((2, 3), np.uint16), 'mono8'),          # wrong dtype
    (np.zeros((2, 3), np.uint8), 'mono16'),
    (np.zeros((2, 3, 3), np.float32), 'bgr8'),
])
def test_array_does_not_fit_encoding(arr, encoding):
    with pytest.raises(ImageConversionError, match=encoding):
        array_to_image_fields(arr, encoding)


# ------------------------------------------------------------------ to_rgb8 / from_bgr8

def test_to_rgb8_colour_orders():
    bgr = _random('bgr8')
    rgb = bgr[:, :, ::-1]
    for encoding, arr in {
        'bgr8': bgr, '8UC3': bgr, 'rgb8': np.ascontiguousarray(rgb),
        'bgra8': np.concatenate([bgr, np.zeros((5, 7, 1), np.uint8)], axis=2),
        'rgba8': np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2),
    }.items():
        out = to_rgb8(arr, encoding)
        assert out.dtype == np.uint8 and out.shape == (5, 7, 3) and out.flags.c_contiguous, encoding
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)


@pytest.mark.parametrize('encoding', ['mono8', '8UC1'])
def test_to_rgb8_mono_replicated(encoding):
    grey = _random('mono8')
    out = to_rgb8(grey, encoding)
    assert out.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
def test_to_rgb8_16bit_keeps_high_byte(encoding):
    arr = np.array([[0x0000, 0x00FF, 0x0100], [0x7F80, 0xFF00, 0xFFFF]], np.uint16)
    out = to_rgb8(arr, encoding)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 1], [[0, 0, 1], [0x7F, 0xFF, 0xFF]])


def test_to_rgb8_of_a_padded_message_view():
    arr = _random('rgb8', height=3, width=2)
    data = b''.join(arr[r].tobytes() + b'\0\0' for r in range(3))
    out = to_rgb8(image_to_array('rgb8', 3, 2, 8, data), 'rgb8')
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize('encoding', sorted(SHAPES))
def test_from_bgr8_then_to_rgb8(encoding):
    bgr = _random('bgr8')
    arr = from_bgr8(bgr, encoding)
    channels, dtype = SHAPES[encoding]
    assert arr.dtype == dtype
    assert arr.shape == ((5, 7) if channels == 1 else (5, 7, channels))
    array_to_image_fields(arr, encoding)  # fits the encoding
    rgb = to_rgb8(arr, encoding)
    if channels == 1:  # grey: the three channels agree and follow BT.601 luma
        luma = (0.114 * bgr[..., 0] + 0.587 * bgr[..., 1] + 0.299 * bgr[..., 2]).round()
        assert np.abs(rgb[..., 0].astype(int) - luma).max() <= 1
    else:
        np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])


def test_from_bgr8_16bit_spans_full_range():
    bgr = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    np.testing.assert_array_equal(from_bgr8(bgr, 'mono16'), [[0, 65535]])


def test_from_bgr8_rejects_non_bgr8():
    with pytest.raises(ImageConversionError, match='from_bgr8'):
        from_bgr8(np.zeros((2, 2), np.uint8), 'mono8')
