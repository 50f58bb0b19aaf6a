"""The one encoding table: sensor_msgs/Image encodings and PointField datatypes as numpy dtypes.

Kept free of message imports so that the table can be read (and tested) on its own;
``dmd3c_ros.ros.adapters`` does the conversions.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class MessageError(ValueError):
    """A message is malformed or uses something this package does not support.

    The text names the message type, the field and the offending value.
    """


class ImageEncoding(NamedTuple):
    """Pixel layout of one sensor_msgs/Image encoding (REP 118 for the depth ones)."""

    dtype: np.dtype     # native-order element type
    channels: int
    colour: bool        # a colour/grey image (True) or a depth image (False)

    @property
    def pixel_bytes(self) -> int:
        return self.dtype.itemsize * self.channels


IMAGE_ENCODINGS: dict[str, ImageEncoding] = {
    "rgb8": ImageEncoding(np.dtype(np.uint8), 3, True),
    "bgr8": ImageEncoding(np.dtype(np.uint8), 3, True),
    "rgba8": ImageEncoding(np.dtype(np.uint8), 4, True),
    "bgra8": ImageEncoding(np.dtype(np.uint8), 4, True),
    "mono8": ImageEncoding(np.dtype(np.uint8), 1, True),
    "16UC1": ImageEncoding(np.dtype(np.uint16), 1, False),   # depth in millimetres (REP 118)
    "32FC1": ImageEncoding(np.dtype(np.float32), 1, False),  # depth in metres (REP 118)
}

# sensor_msgs/PointField datatype constants -> element type (byte order applied per message).
POINTFIELD_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.int8), 2: np.dtype(np.uint8), 3: np.dtype(np.int16), 4: np.dtype(np.uint16),
    5: np.dtype(np.int32), 6: np.dtype(np.uint32), 7: np.dtype(np.float32),
    8: np.dtype(np.float64),
}
POINTFIELD_NAMES = {1: "int8", 2: "uint8", 3: "int16", 4: "uint16", 5: "int32", 6: "uint32",
                    7: "float32", 8: "float64"}
FLOAT32, FLOAT64 = 7, 8


def image_encoding(name: str, allowed: tuple[str, ...] | None = None) -> ImageEncoding:
    """The table entry of ``name``; MessageError naming Image.encoding if unknown or not allowed."""
    allowed = tuple(IMAGE_ENCODINGS) if allowed is None else allowed
    if name not in allowed:
        raise MessageError(f"Image.encoding {name!r} is not supported here "
                           f"(supported: {', '.join(allowed)})")
    return IMAGE_ENCODINGS[name]
