"""Mapping between a camera image of any size and a network's fixed input size, and back.

Policy (one crop, then one resize; no padding, no aspect distortion beyond integer rounding):

1. Crop the image to the aspect ratio of the network input:
   - image relatively *taller* than the input (``W / H < w / h``, e.g. KITTI 1242x375 into
     1216x256): keep the full width and the **bottom** rows. In road scenes the top of the image
     is sky, which carries no LiDAR return and no useful depth (KITTI evaluates only the bottom
     352 rows for the same reason).
   - image relatively *wider* (``W / H > w / h``): keep the full height and crop the width
     **centrally**.
   - equal aspect: no crop.
2. Resize the crop to ``(w, h)``: RGB with ``cv2.INTER_AREA`` when shrinking by more than 1.5x
   and ``cv2.INTER_LINEAR`` otherwise; sparse depth is never interpolated (each valid pixel is
   scattered to the nearest target pixel through a z-buffer keeping the nearest depth).
3. ``restore`` maps a network output of size ``(h, w)`` back to the full ``(W, H)`` image:
   resized to the crop size without blending valid depth with NaN and placed in the crop box;
   everything outside the crop box is NaN (no value).

Pixel convention as cv2.resize and ``PinholeCamera.resized``: pixel centres are aligned, so a
source pixel column ``u`` maps to the continuous target column ``(u + 0.5) * sx - 0.5``.
Sizes are given OpenCV-style as (width, height) throughout this module.
"""
from __future__ import annotations

import cv2
import numpy as np

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import zbuffer


def _size(value, name: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (width, height), got {value!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"{name} must be positive, got {width}x{height}")
    return width, height


def _resize_into(src: np.ndarray, dst: np.ndarray, interpolation: int) -> None:
    """cv2.resize of ``src`` to the size of ``dst`` (a float32 view), written into ``dst``."""
    result = cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=interpolation)
    if not np.shares_memory(result, dst):  # OpenCV made a new array after all: copy it over
        dst[...] = result


class InputTransform:
    """Crop + resize between an image of ``image_size`` and a network input of ``input_size``.

    Args:
        image_size: (W, H) of the camera image in pixels.
        input_size: (w, h) of the network input in pixels.

    Attributes:
        crop: (x0, y0, width, height) of the crop box in image pixels.
        is_identity: True when the image already has the input size (no crop, no resize).
    """

    def __init__(self, image_size, input_size) -> None:
        self.image_size = _size(image_size, "image_size")
        self.input_size = _size(input_size, "input_size")
        W, H = self.image_size
        w, h = self.input_size
        if W * h < w * H:  # image relatively taller: full width, keep the bottom rows
            crop_h = min(H, max(1, round(W * h / w)))
            self.crop = (0, H - crop_h, W, crop_h)
        elif W * h > w * H:  # image relatively wider: full height, centred columns
            crop_w = min(W, max(1, round(H * w / h)))
            self.crop = ((W - crop_w) // 2, 0, crop_w, H)
        else:
            self.crop = (0, 0, W, H)
        self.is_identity = self.image_size == self.input_size

    def __repr__(self) -> str:
        return (f"InputTransform(image_size={self.image_size}, input_size={self.input_size}, "
                f"crop={self.crop})")

    def _check(self, array: np.ndarray, name: str) -> None:
        W, H = self.image_size
        if array.shape[:2] != (H, W):
            raise ValueError(f"{name} has shape {array.shape}, expected height {H} and width {W} "
                             f"for this transform")

    def _cropped(self, array: np.ndarray) -> np.ndarray:
        x0, y0, cw, ch = self.crop
        return array[y0:y0 + ch, x0:x0 + cw]

    def apply_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB image -> new (h, w, 3) uint8 RGB network-size image."""
        rgb = np.asarray(rgb)
        self._check(rgb, "rgb")
        if self.is_identity:
            return rgb.copy()
        _, _, cw, ch = self.crop
        w, h = self.input_size
        # Area averaging only when shrinking by more than 1.5x; a mild change of size (KITTI's
        # 1242 -> 1216 columns) is bilinear, as good there and ~4x faster.
        strong_shrink = w * 1.5 <= cw and h * 1.5 <= ch
        interpolation = cv2.INTER_AREA if strong_shrink else cv2.INTER_LINEAR
        return cv2.resize(np.ascontiguousarray(self._cropped(rgb)), (w, h),
                          interpolation=interpolation)

    def apply_sparse(self, sparse: np.ndarray) -> np.ndarray:
        """(H, W) sparse depth in metres (0 = no value) -> new (h, w) float32 metres, 0 = no value.

        Depth values are never interpolated: every valid (finite, > 0) pixel of the crop goes to
        the target pixel containing its centre, and where several land on one target pixel the
        nearest (smallest) depth wins, as a z-buffer would. NaN, inf and negative values count as
        no value.
        """
        sparse = np.asarray(sparse)
        self._check(sparse, "sparse")
        crop = self._cropped(sparse)
        if self.is_identity:
            crop = crop.astype(np.float32)  # astype copies: the input is untouched
            crop[~(crop > 0) | ~np.isfinite(crop)] = 0.0  # NaN, inf and negatives: no value
            return crop
        _, _, cw, ch = self.crop
        w, h = self.input_size
        crop = np.ascontiguousarray(crop)  # a view when the crop keeps whole rows
        with np.errstate(invalid="ignore"):
            flat = np.flatnonzero(crop > 0)  # NaN compares False
        depth = crop.reshape(-1)[flat].astype(np.float32)
        finite = depth < np.inf
        if not finite.all():
            flat, depth = flat[finite], depth[finite]
        rows, cols = np.divmod(flat, cw)
        # Target pixel holding the source pixel centre: floor((u + 0.5) * sx), as cv2.resize.
        u = np.minimum(((cols + 0.5) * (w / cw)).astype(np.int64), w - 1)
        v = np.minimum(((rows + 0.5) * (h / ch)).astype(np.int64), h - 1)
        return zbuffer(v * w + u, depth, h, w)

    def apply_dense(self, depth: np.ndarray) -> np.ndarray:
        """(H, W) dense map in metres -> new (h, w) float32 network-size map, nearest-neighbour
        (values are copied as they are, 0 or NaN for no value alike: a depth edge stays an
        edge)."""
        depth = np.asarray(depth, dtype=np.float32)
        self._check(depth, "depth")
        if self.is_identity:
            return depth.copy()
        return cv2.resize(np.ascontiguousarray(self._cropped(depth)), self.input_size,
                          interpolation=cv2.INTER_NEAREST)

    def apply_camera(self, camera: PinholeCamera) -> PinholeCamera:
        """The camera of the network input: ``camera`` cropped to the crop box, then resized."""
        if camera.size != self.image_size:
            raise ValueError(f"camera is {camera.width}x{camera.height}, this transform expects "
                             f"{self.image_size[0]}x{self.image_size[1]}")
        if self.is_identity:
            return camera
        x0, y0, cw, ch = self.crop
        return camera.cropped(x0, y0, cw, ch).resized(*self.input_size)

    def restore(self, depth: np.ndarray, *, outside: float = np.nan) -> np.ndarray:
        """(h, w) network-size map (metres, NaN = no value) -> new (H, W) float32 full-size map.

        Bilinear (area when shrinking) resize to the crop size by normalised convolution: NaN
        pixels get zero weight, so valid values are never blended with NaN; a target pixel whose
        valid weight is below one half is NaN. Pixels outside the crop box are ``outside``
        (default NaN: no value).
        """
        depth = np.asarray(depth)
        w, h = self.input_size
        if depth.shape != (h, w):
            raise ValueError(f"network output has shape {depth.shape}, expected ({h}, {w})")
        if self.is_identity:
            return depth.astype(np.float32)  # a copy: the input is untouched
        depth = np.asarray(depth, dtype=np.float32)  # read only below
        x0, y0, cw, ch = self.crop
        interpolation = cv2.INTER_AREA if (cw <= w and ch <= h) else cv2.INTER_LINEAR
        W, H = self.image_size
        full = np.empty((H, W), dtype=np.float32)
        box = full[y0:y0 + ch, x0:x0 + cw]  # the resize writes straight into the crop box
        valid = np.isfinite(depth)
        if valid.all():
            _resize_into(depth, box, interpolation)
        else:
            weight = cv2.resize(valid.astype(np.float32), (cw, ch), interpolation=interpolation)
            _resize_into(np.where(valid, depth, np.float32(0.0)), box, interpolation)
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(box, weight, out=box)
            box[~(weight >= 0.5)] = np.nan
        full[:y0] = outside
        full[y0 + ch:] = outside
        full[y0:y0 + ch, :x0] = outside
        full[y0:y0 + ch, x0 + cw:] = outside
        return full
