"""The backend interface every inference engine implements, its result type, errors and input checks.

Array conventions (all backends):
    rgb:         (H, W, 3) uint8, RGB order.
    sparse:      (H, W) float32 depth in metres along the optical axis, 0 = no value; NaN, inf and
                 negative values are treated as no value. ``None`` or all-zero means *mono* mode
                 (no LiDAR for this frame).
    depth:       (H, W) float32 metres, NaN = no value; same size as the input image.
    uncertainty: (H, W) float32 standard deviation in metres (NaN = no value), or None.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import numpy as np


class BackendError(RuntimeError):
    """An inference backend failed to load or run."""


class BackendUnavailableError(BackendError):
    """A backend's libraries or hardware are missing; the message says what to install."""


class MonoNotSupportedError(BackendError):
    """The backend needs LiDAR (a non-empty sparse depth) and got none."""


@dataclass
class Prediction:
    """One dense depth prediction at the input image's size.

    Attributes:
        depth: (H, W) float32 metres, NaN = no value.
        uncertainty: (H, W) float32 standard deviation in metres, or None when the model has none.
    """

    depth: np.ndarray
    uncertainty: np.ndarray | None = None


def sanitize_sparse(sparse: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W) float32 sparse map in metres where NaN, inf and negatives are 0 (no value).

    ``None`` gives all zeros (mono mode). The input is never modified: a clean float32 input
    (what ``project_to_depth`` makes) comes back as it is, anything else as a cleaned copy. Backends
    only read it.
    """
    if sparse is None:
        return np.zeros(shape, dtype=np.float32)
    array = np.asarray(sparse, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        bad = ~((array >= 0) & (array < np.inf))  # NaN fails both
    if not bad.any():
        return array
    clean = array.copy()
    clean[bad] = 0.0
    return clean


def validate_inputs(rgb, sparse=None) -> tuple[np.ndarray, np.ndarray]:
    """Check one frame and return (rgb, clean sparse); the inputs are not modified.

    Raises:
        ValueError: rgb is not (H, W, 3) uint8, or sparse is not a real-valued (H, W) array of
            the same height and width.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be an (H, W, 3) uint8 RGB image, got shape {rgb.shape} "
                         f"dtype {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb is empty: shape {rgb.shape}")
    if sparse is not None:
        sparse = np.asarray(sparse)
        if sparse.ndim == 3 and sparse.shape[2] == 1:
            sparse = sparse[:, :, 0]
        if sparse.shape != rgb.shape[:2]:
            raise ValueError(f"sparse depth must be (H, W) = {rgb.shape[:2]} like the rgb image, "
                             f"got shape {sparse.shape}")
        if not np.issubdtype(sparse.dtype, np.floating):
            raise ValueError(f"sparse depth must be float metres, got dtype {sparse.dtype} (a raw "
                             "KITTI uint16 PNG must be divided by 256.0 first)")
    return rgb, sanitize_sparse(sparse, rgb.shape[:2])


def is_mono(sparse: np.ndarray) -> bool:
    """True when a sanitised sparse map holds no LiDAR value at all."""
    return not bool(np.any(sparse > 0))


class Backend(abc.ABC):
    """A depth-completion engine: an RGB image plus sparse LiDAR depth in, dense depth out.

    Subclasses implement :meth:`_infer` (and may override :meth:`_infer_many` to run one batched
    call); the public methods validate inputs and enforce the mono contract first.
    """

    name: str = "backend"
    supports_mono: bool = False

    def infer(self, rgb: np.ndarray, sparse: np.ndarray | None = None, *,
              uncertainty: bool = True) -> Prediction:
        """Complete one frame; see the module docstring for shapes, dtypes and units.

        ``uncertainty=False`` skips mapping the uncertainty back to the image (its
        Prediction.uncertainty is None): for callers nobody asks for it, e.g. a node whose
        ``depth/uncertainty`` topic has no subscriber.

        Raises:
            ValueError: malformed inputs.
            MonoNotSupportedError: sparse is None or empty and the backend needs LiDAR.
            BackendError: the engine failed.
        """
        return self.infer_batch([rgb], [sparse], uncertainty=uncertainty)[0]

    def infer_batch(self, rgbs: Sequence[np.ndarray],
                    sparses: Sequence[np.ndarray | None] | None = None, *,
                    uncertainty: bool = True) -> list[Prediction]:
        """Complete several frames (e.g. the cameras of one sweep); one Prediction per frame.

        ``sparses`` may be None (all mono) or hold None entries. Images may differ in size.
        ``uncertainty`` as for :meth:`infer`.
        """
        rgbs = list(rgbs)
        sparses = [None] * len(rgbs) if sparses is None else list(sparses)
        if len(sparses) != len(rgbs):
            raise ValueError(f"got {len(rgbs)} rgb images and {len(sparses)} sparse maps")
        checked = [validate_inputs(rgb, sparse) for rgb, sparse in zip(rgbs, sparses)]
        if not self.supports_mono:
            for index, (_, sparse) in enumerate(checked):
                if is_mono(sparse):
                    raise MonoNotSupportedError(
                        f"backend '{self.name}' needs LiDAR depth, but frame {index} has no "
                        "sparse value (mono mode); use a model whose spec says "
                        "supports_mono: true")
        if not checked:
            return []
        return self._infer_many([c[0] for c in checked], [c[1] for c in checked],
                                uncertainty=uncertainty)

    def _infer_many(self, rgbs: list[np.ndarray], sparses: list[np.ndarray], *,
                    uncertainty: bool = True) -> list[Prediction]:
        """Validated frames in, predictions out; the default runs them one at a time (and
        leaves the uncertainty to :meth:`_infer`)."""
        return [self._infer(rgb, sparse) for rgb, sparse in zip(rgbs, sparses)]

    @abc.abstractmethod
    def _infer(self, rgb: np.ndarray, sparse: np.ndarray) -> Prediction:
        """One validated frame: (H, W, 3) uint8 rgb, clean (H, W) float32 sparse metres."""

    def close(self) -> None:
        """Release engine resources (GPU memory, sessions); the backend is unusable afterwards."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} supports_mono={self.supports_mono}>"
