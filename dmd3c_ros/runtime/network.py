"""Network pre- and post-processing shared by the ONNX Runtime, PyTorch and TensorRT backends.

Pre-processing (per frame, through :class:`~dmd3c_ros.core.input_transform.InputTransform`):
    rgb (H, W, 3) uint8 -> crop/resize -> (rgb - mean) / std      -> (N, 3, h, w) float32
    sparse (H, W) metres -> crop/z-buffer scatter -> / depth_scale -> (N, 1, h, w) float32
Post-processing:
    depth (N, 1, h, w) or (N, h, w) network units -> * depth_scale (metres) -> non-finite to NaN ->
    clip to depth_range -> restore to (H, W) with NaN outside the crop box.
    uncertainty likewise (std in metres, negatives -> 0, NaN where depth is NaN), never clipped
    to the depth range.
"""
from __future__ import annotations

import abc

import numpy as np

from dmd3c_ros.core.input_transform import InputTransform
from dmd3c_ros.runtime.base import Backend, BackendError, Prediction
from dmd3c_ros.runtime.spec import ModelSpec


class NetworkIO:
    """Turns frames into the network's input tensors and its outputs into Predictions."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._mean = np.asarray(spec.rgb_mean, dtype=np.float32).reshape(3, 1, 1)  # 0-255 scale
        self._std = np.asarray(spec.rgb_std, dtype=np.float32).reshape(3, 1, 1)    # 0-255 scale
        self._transforms: dict[tuple[int, int], InputTransform] = {}

    def transform(self, width: int, height: int) -> InputTransform:
        """The (cached) transform for a camera image of width x height pixels."""
        key = (int(width), int(height))
        if key not in self._transforms:
            self._transforms[key] = InputTransform(key, self.spec.input_wh)
        return self._transforms[key]

    def prepare(self, rgbs: list[np.ndarray], sparses: list[np.ndarray]
                ) -> tuple[dict[str, np.ndarray], list[InputTransform]]:
        """Validated frames -> ({input name: NCHW float32 array}, one transform per frame).

        rgbs: (H_i, W_i, 3) uint8 RGB; sparses: (H_i, W_i) float32 metres, 0 = no value.
        """
        h, w = self.spec.input_size
        count = len(rgbs)
        rgb_batch = np.empty((count, 3, h, w), dtype=np.float32)
        sparse_batch = np.empty((count, 1, h, w), dtype=np.float32)
        transforms = []
        for index, (rgb, sparse) in enumerate(zip(rgbs, sparses)):
            transform = self.transform(rgb.shape[1], rgb.shape[0])
            transforms.append(transform)
            chw = transform.apply_rgb(rgb).transpose(2, 0, 1).astype(np.float32)
            rgb_batch[index] = (chw - self._mean) / self._std
            # metres -> network units: the network sees depth / depth_scale.
            sparse_batch[index, 0] = transform.apply_sparse(sparse) / np.float32(
                self.spec.depth_scale)
        feeds = {self.spec.rgb_input: rgb_batch, self.spec.sparse_input: sparse_batch}
        return feeds, transforms

    def _maps(self, outputs: dict[str, np.ndarray], name: str, count: int) -> np.ndarray:
        if name not in outputs:
            raise BackendError(f"model '{self.spec.name}' produced no output '{name}' "
                               f"(got {sorted(outputs)})")
        array = np.asarray(outputs[name], dtype=np.float32)
        h, w = self.spec.input_size
        if array.ndim == 4 and array.shape[1] == 1:
            array = array[:, 0]
        if array.shape != (count, h, w):
            raise BackendError(f"output '{name}' of model '{self.spec.name}' has shape "
                               f"{np.shape(outputs[name])}, expected ({count}, 1, {h}, {w})")
        return array

    def finish(self, outputs: dict[str, np.ndarray], transforms: list[InputTransform]
               ) -> list[Prediction]:
        """Network outputs {name: (N, 1, h, w) array} -> one full-size Prediction per frame."""
        spec = self.spec
        count = len(transforms)
        low, high = spec.depth_range
        # network units -> metres.
        depth = self._maps(outputs, spec.depth_output, count) * np.float32(spec.depth_scale)
        depth[~np.isfinite(depth)] = np.nan
        depth = np.clip(depth, low, high)  # NaN stays NaN
        sigma = None
        if spec.uncertainty_output:
            # network units -> metres (a standard deviation scales like depth).
            sigma = self._maps(outputs, spec.uncertainty_output, count) * np.float32(
                spec.depth_scale)
            sigma[~np.isfinite(sigma) | np.isnan(depth)] = np.nan
            sigma = np.maximum(sigma, 0.0)  # NaN stays NaN
        predictions = []
        for index, transform in enumerate(transforms):
            full_depth = transform.restore(depth[index])
            full_sigma = None
            if sigma is not None:
                full_sigma = transform.restore(sigma[index])
                full_sigma[np.isnan(full_depth)] = np.nan
            predictions.append(Prediction(full_depth, full_sigma))
        return predictions


class NetworkBackend(Backend):
    """A backend that runs a network described by a ModelSpec; frames are batched.

    Subclasses implement :meth:`_run` and may set :attr:`max_batch` (None = unlimited).
    """

    max_batch: int | None = None

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.io = NetworkIO(spec)
        self.supports_mono = bool(spec.supports_mono)

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{input name: NCHW float32} -> {output name: array}; N <= max_batch."""

    def _infer(self, rgb: np.ndarray, sparse: np.ndarray) -> Prediction:
        return self._infer_many([rgb], [sparse])[0]

    def _infer_many(self, rgbs: list[np.ndarray], sparses: list[np.ndarray]) -> list[Prediction]:
        step = self.max_batch or len(rgbs)
        predictions: list[Prediction] = []
        for start in range(0, len(rgbs), step):
            feeds, transforms = self.io.prepare(rgbs[start:start + step],
                                                sparses[start:start + step])
            predictions.extend(self.io.finish(self._run(feeds), transforms))
        return predictions
