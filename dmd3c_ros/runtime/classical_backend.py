"""Classical backend: the image-processing completion baseline (no network, no model spec).

It fills the sparse LiDAR depth with morphological operations (``core.classical``); the RGB
image is only validated. It needs LiDAR (no mono mode) and predicts no uncertainty.
"""
from __future__ import annotations

import numpy as np

from dmd3c_ros.runtime.base import (Backend, BackendError, BackendUnavailableError,
                                     Prediction)


class ClassicalBackend(Backend):
    """Wraps :func:`dmd3c_ros.core.classical.complete_classical`.

    Args:
        max_depth: metres; sparse values beyond it are ignored and the output never exceeds it.
    """

    name = "classical"
    supports_mono = False

    def __init__(self, *, max_depth: float = 100.0) -> None:
        if not max_depth > 0:
            raise ValueError(f"max_depth must be positive metres, got {max_depth}")
        self.max_depth = float(max_depth)
        try:  # imported lazily so that the runtime package imports without it
            from dmd3c_ros.core.classical import complete_classical
        except ImportError as error:
            raise BackendUnavailableError(
                f"backend 'classical' needs dmd3c_ros.core.classical: {error}") from error
        self._complete = complete_classical

    def _infer(self, rgb: np.ndarray, sparse: np.ndarray) -> Prediction:
        # sparse: clean (H, W) float32 metres, 0 = no value; the output is metres, NaN = no value.
        depth = np.asarray(self._complete(sparse, max_depth=self.max_depth), dtype=np.float32)
        if depth.shape != sparse.shape:
            raise BackendError(f"complete_classical returned shape {depth.shape} for a "
                               f"{sparse.shape} input")
        return Prediction(depth=depth, uncertainty=None)
