"""sensor_msgs/Image ⇄ numpy depth in metres, with numpy only (no cv_bridge, no rclpy).

Decoding reads any object with the Image fields (``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data``): an rclpy message, a rosbags message or :class:`RawImage`.

- ``32FC1``: float32 metres; NaN is no return, ±inf too far / too near (REP 117; the contract's
  ``pixel_states`` decides).
- ``16UC1``: uint16 millimetres; 0 is no return (becomes NaN).

Rows may be padded (``step`` larger than ``width`` × pixel size) and either byte order is read.
Anything else raises :class:`ImageError` with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim2real.contracts.preprocessing import depth_from_millimetres, depth_to_millimetres, has_return

_PIXEL = {"32FC1": np.dtype(np.float32), "16UC1": np.dtype(np.uint16)}
ENCODINGS: tuple[str, ...] = tuple(_PIXEL)


class ImageError(ValueError):
    """The image cannot be used as depth: wrong encoding or inconsistent size fields."""


@dataclass(frozen=True)
class RawImage:
    """The fields of a sensor_msgs/Image that carry pixels."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


def decode_depth(msg) -> np.ndarray:
    """Image-like message → (height, width) float32 metres, NaN where the pixel is invalid.

    Zero-copy for a native-order 32FC1 image without row padding (the array is read-only then).
    """
    encoding = msg.encoding
    pixel = _PIXEL.get(encoding)
    if pixel is None:
        shown = repr(str(encoding)[:40])      # repr: a message field never breaks a log line
        raise ImageError(f"encoding {shown} is not a depth encoding (expected one of {', '.join(ENCODINGS)})")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image is empty ({width}x{height})")
    row_bytes = width * pixel.itemsize
    if step < row_bytes:
        raise ImageError(f"step {step} is shorter than a row of {width} {encoding} pixels ({row_bytes} bytes)")
    buffer = memoryview(msg.data).cast("B")
    if buffer.nbytes != height * step:
        raise ImageError(f"data holds {buffer.nbytes} bytes, expected step × height = {step} × {height} "
                         f"= {height * step}")
    dtype = pixel.newbyteorder(">" if msg.is_bigendian else "<")
    if step == row_bytes:
        pixels = np.frombuffer(buffer, dtype=dtype).reshape(height, width)
    else:
        rows = np.frombuffer(buffer, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
    if encoding == "16UC1":
        return depth_from_millimetres(pixels.astype(np.uint16, copy=False))
    return pixels.astype(np.float32, copy=False)


def encode_depth(depth_m: np.ndarray, encoding: str = "32FC1", *, big_endian: bool = False,
                 row_padding: int = 0) -> RawImage:
    """(H, W) metres → :class:`RawImage` in ``encoding``; invalid pixels become NaN or 0 mm.

    ``row_padding`` adds that many zero bytes at the end of every row (``step`` grows with it).
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"depth image must be 2-D (H, W), got shape {depth.shape}")
    if encoding not in _PIXEL:
        raise ValueError(f"encoding '{encoding}' is not one of {', '.join(ENCODINGS)}")
    if row_padding < 0:
        raise ValueError(f"row_padding must be ≥ 0, got {row_padding}")
    if encoding == "16UC1":
        pixels = depth_to_millimetres(depth.astype(np.float32, copy=False))
    else:
        with np.errstate(invalid="ignore"):
            pixels = np.where(has_return(depth), depth, np.nan).astype(np.float32)
    pixels = pixels.astype(_PIXEL[encoding].newbyteorder(">" if big_endian else "<"), copy=False)
    height, width = pixels.shape
    rows = pixels.view(np.uint8).reshape(height, width * pixels.itemsize)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((height, row_padding), np.uint8)], axis=1)
    return RawImage(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian),
                    step=rows.shape[1], data=rows.tobytes())


def fill_image_msg(msg, raw: RawImage):
    """Copy the pixel fields of ``raw`` into an Image message (header untouched); return ``msg``."""
    msg.height, msg.width, msg.encoding = raw.height, raw.width, raw.encoding
    msg.is_bigendian, msg.step, msg.data = raw.is_bigendian, raw.step, raw.data
    return msg
