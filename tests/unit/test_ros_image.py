"""sensor_msgs/Image ⇄ depth in metres, numpy only: encodings, byte order, row padding, refusals."""

from __future__ import annotations

import array
import types

import numpy as np
import pytest

from sim2real.contracts.preprocessing import PreprocessSpec, pixel_states
from sim2real.runtime.ros_image import ImageError, RawImage, decode_depth, encode_depth, fill_image_msg

SPEC = PreprocessSpec(width=16, height=16)


def _depth(height=5, width=7):
    depth = np.linspace(0.3, 4.5, height * width, dtype=np.float32).reshape(height, width)
    depth[0, 0], depth[1, 2], depth[2, 3], depth[3, 4] = np.nan, np.inf, 0.0, -np.inf
    return depth


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("row_padding", [0, 3, 8])
def test_32fc1_round_trip_any_byte_order_and_padding(big_endian, row_padding):
    depth = _depth()
    raw = encode_depth(depth, "32FC1", big_endian=big_endian, row_padding=row_padding)
    assert raw.step == depth.shape[1] * 4 + row_padding and len(raw.data) == raw.step * raw.height
    out = decode_depth(raw)
    assert out.dtype == np.float32 and out.shape == depth.shape
    returned = ~np.isnan(depth) & (depth != 0)
    np.testing.assert_array_equal(out[returned], depth[returned])          # ±inf kept: too far / too near
    assert np.isnan(out[~returned]).all()
    np.testing.assert_array_equal(pixel_states(out, SPEC), pixel_states(depth, SPEC))


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("row_padding", [0, 2, 5])
def test_16uc1_millimetres_zero_is_no_return(big_endian, row_padding):
    depth = _depth()
    out = decode_depth(encode_depth(depth, "16UC1", big_endian=big_endian, row_padding=row_padding))
    valid = np.isfinite(depth) & (depth > 0)
    np.testing.assert_allclose(out[valid], np.round(depth[valid] * 1000) / 1000, atol=1e-6)
    assert np.isnan(out[np.isnan(depth) | (depth == 0)]).all()
    assert out[1, 2] == np.float32(65.535) and out[3, 4] == np.float32(0.001), "+inf saturates, -inf is 1 mm"
    np.testing.assert_array_equal(pixel_states(out, SPEC), pixel_states(depth, SPEC))


def test_big_endian_bytes_are_read_as_big_endian():
    values = np.array([[1.5, 2.25]], dtype=">f4")
    raw = RawImage(height=1, width=2, encoding="32FC1", is_bigendian=1, step=8, data=values.tobytes())
    np.testing.assert_array_equal(decode_depth(raw), [[1.5, 2.25]])
    millimetres = np.array([[1234, 0, 65535]], dtype=">u2")
    raw = RawImage(height=1, width=3, encoding="16UC1", is_bigendian=1, step=6, data=millimetres.tobytes())
    np.testing.assert_allclose(decode_depth(raw), [[1.234, np.nan, 65.535]])


def test_reads_message_like_objects_with_array_data():
    """rclpy gives ``data`` as array.array('B'); rosbags as a numpy uint8 array."""
    raw = encode_depth(_depth(), "32FC1", row_padding=4)
    expected = decode_depth(raw)
    for data in (array.array("B", raw.data), np.frombuffer(raw.data, np.uint8), bytearray(raw.data)):
        msg = fill_image_msg(types.SimpleNamespace(), raw)
        msg.data = data
        np.testing.assert_array_equal(decode_depth(msg), expected)


@pytest.mark.parametrize("change, reason", [
    ({"encoding": "rgb8"}, "encoding 'rgb8' is not a depth encoding"),
    ({"encoding": "mono16"}, "not a depth encoding"),
    ({"step": 7 * 4 - 1}, "shorter than a row"),
    ({"height": 6}, "data holds"),
    ({"data": b"\x00" * 10}, "data holds 10 bytes"),
    ({"width": 0}, "empty"),
])
def test_unusable_images_raise_image_error(change, reason):
    fields = {**encode_depth(_depth(), "32FC1").__dict__, **change}
    with pytest.raises(ImageError, match=reason):
        decode_depth(RawImage(**fields))


def test_encode_refuses_bad_arguments():
    with pytest.raises(ValueError, match="2-D"):
        encode_depth(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="encoding"):
        encode_depth(np.zeros((2, 2), np.float32), "8UC1")
    with pytest.raises(ValueError, match="row_padding"):
        encode_depth(np.zeros((2, 2), np.float32), row_padding=-1)
