"""Pinhole camera model (image_geometry's PinholeCameraModel semantics) with intrinsics updates.

Conventions (REP 103/104, OpenCV): the camera frame is the rectified optical frame (x right, y down,
z forward, metres); pixel (u, v) = (column, row) with the centre of the top-left pixel at (0, 0).
A point X projects as ``[u*w, v*w, w] = P @ [X; 1]``; ``w`` is the depth along the optical axis of
this camera (for KITTI's P2, whose last row carries the camera's small offset along z, too).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class CalibrationError(ValueError):
    """A camera or LiDAR-camera calibration is missing, malformed or unusable."""


def _matrix(value, shape: tuple[int, int], name: str) -> np.ndarray:
    array = np.array(value, dtype=np.float64)
    if array.size != shape[0] * shape[1]:
        raise CalibrationError(f"{name} must have {shape[0] * shape[1]} values, got {array.size}")
    array = array.reshape(shape)
    if not np.all(np.isfinite(array)):
        raise CalibrationError(f"{name} contains NaN or inf: {array.tolist()}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of one (rectified) camera image.

    Attributes:
        width, height: image size in pixels.
        K: (3, 3) float64 intrinsic matrix of the raw (distorted) image.
        P: (3, 4) float64 projection matrix of the rectified image; used for projection.
        R: (3, 3) rectification rotation (identity for monocular cameras).
        D: distortion coefficients of ``distortion_model`` (kept for CameraInfo round trips).
    """

    width: int
    height: int
    K: np.ndarray
    P: np.ndarray
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    D: tuple[float, ...] = ()
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CalibrationError(f"camera size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "K", _matrix(self.K, (3, 3), "K"))
        object.__setattr__(self, "P", _matrix(self.P, (3, 4), "P"))
        object.__setattr__(self, "R", _matrix(self.R, (3, 3), "R"))
        object.__setattr__(self, "D", tuple(float(d) for d in self.D))
        if not self.is_valid():
            raise CalibrationError(
                "camera intrinsics are unusable (focal lengths must be positive, the left 3x3 "
                f"of P invertible): K={self.K.tolist()} P={self.P.tolist()}")

    @classmethod
    def from_intrinsics(cls, fx: float, fy: float, cx: float, cy: float,
                        width: int, height: int) -> "PinholeCamera":
        """A distortion-free camera whose K and P share the given intrinsics."""
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(width, height, K, np.hstack([K, np.zeros((3, 1))]))

    @classmethod
    def from_projection(cls, P, width: int, height: int) -> "PinholeCamera":
        """A camera from a rectified (3, 4) projection matrix (K is its left 3x3 block)."""
        P = np.asarray(P, dtype=np.float64).reshape(3, 4)
        return cls(width, height, P[:, :3].copy(), P)

    def is_valid(self) -> bool:
        """Positive focal lengths in K and P, and an invertible left 3x3 block of P (pixels are
        lifted back to rays through it, e.g. for depth/points)."""
        if not (self.P[0, 0] > 0 and self.P[1, 1] > 0 and self.K[0, 0] > 0 and self.K[1, 1] > 0):
            return False
        return bool(np.linalg.matrix_rank(self.P[:, :3]) == 3)  # SVD, float64 tolerance

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @property
    def fx(self) -> float:
        return float(self.P[0, 0])

    @property
    def fy(self) -> float:
        return float(self.P[1, 1])

    @property
    def cx(self) -> float:
        return float(self.P[0, 2])

    @property
    def cy(self) -> float:
        return float(self.P[1, 2])

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project (N, 3) points of the rectified optical frame (metres).

        Returns:
            uv: (N, 2) float64 continuous pixel coordinates (column, row); rows with depth <= 0
                are NaN.
            depth: (N,) float64 depth along the optical axis in metres.
        """
        points = np.asarray(points, dtype=np.float64)
        homogeneous = points[:, :3] @ self.P[:, :3].T + self.P[:, 3]
        depth = homogeneous[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = homogeneous[:, :2] / depth[:, None]
        uv[depth <= 0] = np.nan
        return uv, depth

    def _transformed(self, A: np.ndarray, width: int, height: int) -> "PinholeCamera":
        return PinholeCamera(width, height, A @ self.K, A @ self.P, self.R, self.D,
                             self.distortion_model)

    def resized(self, width: int, height: int) -> "PinholeCamera":
        """The camera of this image resized to (width, height) as cv2.resize does.

        cv2.resize aligns pixel centres: u' = (u + 0.5) * sx - 0.5, hence the half-pixel terms.
        """
        sx, sy = width / self.width, height / self.height
        A = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        return self._transformed(A, width, height)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> "PinholeCamera":
        """The camera of ``image[y0:y0 + height, x0:x0 + width]`` (the principal point shifts)."""
        if x0 < 0 or y0 < 0 or x0 + width > self.width or y0 + height > self.height:
            raise ValueError(f"crop ({x0}, {y0}, {width}, {height}) outside the "
                             f"{self.width}x{self.height} image")
        A = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        return self._transformed(A, width, height)
