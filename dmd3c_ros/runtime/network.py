"""Network pre- and post-processing shared by the ONNX Runtime, PyTorch and TensorRT backends.

Pre-processing (per frame, through :class:`~dmd3c_ros.core.input_transform.InputTransform`):
    rgb (H, W, 3) uint8 -> crop/resize -> (rgb - mean) / std      -> (N, 3, h, w) float32
        (zeros, made once, for a spec with ``rgb_used: false``: its output does not depend on
        the image)
    sparse (H, W) metres -> crop/z-buffer scatter -> / depth_scale -> (N, 1, h, w) float32
    classical (models whose spec names ``inputs.classical``): the network-size sparse map ->
        ``core.classical.complete_classical`` (pivot = the spec's maximum depth) -> / depth_scale,
        0 = no value -> (N, 1, h, w) float32 (``classical_resolution: image``: the completion
        of the camera-size map, nearest-resized to the input; see :class:`ClassicalFrame`).
        This is the residual student's pre-step, the same for every runtime (its median blur
        has no standard ONNX operator).
Post-processing:
    depth (N, 1, h, w) or (N, h, w) network units -> * depth_scale (metres) -> non-finite to NaN ->
    clip to depth_range -> restore to (H, W) with NaN outside the crop box (a residual model
    with ``classical_resolution: image``: the classical completion there, see
    :class:`ClassicalFrame`). For a model with a classical input, a depth <= 0 (no classical
    value there) is NaN, not the range minimum.
    uncertainty likewise (std in metres, negatives -> 0, NaN where depth is NaN), never clipped
    to the depth range.
"""
from __future__ import annotations

import abc
import time

import numpy as np

from dmd3c_ros.core.classical import classical_units, complete_classical
from dmd3c_ros.core.features import FEATURES, residual_features
from dmd3c_ros.core.input_transform import InputTransform
from dmd3c_ros.runtime.base import Backend, BackendError, Prediction
from dmd3c_ros.runtime.spec import ModelSpec

STAGES = ("preprocess", "inference", "postprocess")  # NetworkBackend.last_timings_ms keys


class ClassicalFrame:
    """The transform of one frame of a residual model with ``classical_resolution: image``:
    maps are restored as the camera-size classical completion times the network's correction
    (network map / network classical input, resized back), so that the correction is applied
    at the camera's resolution. Outside the network's crop of the image the depth is the
    classical completion itself (no correction; no uncertainty), so an untrained (identity)
    student is the classical completion of the camera-size sparse map exactly, everywhere."""

    def __init__(self, transform: InputTransform, full: np.ndarray, small: np.ndarray) -> None:
        self.transform = transform
        self.full = full      # (H, W) float32 metres, NaN = no value
        self.small = small    # (h, w) float32 metres, 0 = no value

    def restore(self, values: np.ndarray, *, classical_outside: bool = False) -> np.ndarray:
        """``values`` (h, w) metres -> (H, W); outside the crop box the classical completion
        (``classical_outside``: the depth) or NaN (the uncertainty)."""
        ratio = np.full(values.shape, np.nan, dtype=np.float32)
        np.divide(values, self.small, out=ratio, where=self.small > 0)
        restored = self.transform.restore(ratio, outside=1.0 if classical_outside else np.nan)
        return np.multiply(self.full, restored, out=restored)


class NetworkIO:
    """Turns frames into the network's input tensors and its outputs into Predictions."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        # (x - mean) / std as (x - mean) * (1 / std), per channel, 0-255 scale.
        self._mean = [np.float32(v) for v in spec.rgb_mean]
        self._inv_std = [np.float32(1.0) / np.float32(v) for v in spec.rgb_std]
        self._inv_scale = np.float32(1.0) / np.float32(spec.depth_scale)
        self._transforms: dict[tuple[int, int], InputTransform] = {}
        self._zeros: np.ndarray | None = None  # the rgb input of a model that does not use it

    def transform(self, width: int, height: int) -> InputTransform:
        """The (cached) transform for a camera image of width x height pixels."""
        key = (int(width), int(height))
        if key not in self._transforms:
            self._transforms[key] = InputTransform(key, self.spec.input_wh)
        return self._transforms[key]

    def prepare(self, rgbs: list[np.ndarray], sparses: list[np.ndarray], *,
                classical_threads: int | None = None
                ) -> tuple[dict[str, np.ndarray], list[InputTransform]]:
        """Validated frames -> ({input name: NCHW float32 array}, one transform per frame).

        rgbs: (H_i, W_i, 3) uint8 RGB; sparses: (H_i, W_i) float32 metres, 0 = no value.
        classical_threads: the classical pre-step's and the feature maps' ``threads`` (None:
        one per core; 1 where the caller already runs frames side by side).
        """
        h, w = self.spec.input_size
        count = len(rgbs)
        rgb_used = self.spec.rgb_used
        if rgb_used:
            rgb_batch = np.empty((count, 3, h, w), dtype=np.float32)
        else:  # never written: the same zeros serve every call of this batch size
            if self._zeros is None or self._zeros.shape[0] != count:
                self._zeros = np.zeros((count, 3, h, w), dtype=np.float32)
            rgb_batch = self._zeros
        sparse_batch = np.empty((count, 1, h, w), dtype=np.float32)
        classical_batch = (np.empty((count, 1, h, w), dtype=np.float32)
                           if self.spec.classical_input else None)
        features_batch = (np.empty((count, FEATURES, h, w), dtype=np.float32)
                          if self.spec.features_input else None)
        transforms = []
        for index, (rgb, sparse) in enumerate(zip(rgbs, sparses)):
            transform = self.transform(rgb.shape[1], rgb.shape[0])
            transforms.append(transform)
            if rgb_used:
                small = transform.apply_rgb(rgb)
                for channel in range(3):  # in place, one plane at a time: no temporaries
                    plane = rgb_batch[index, channel]
                    plane[...] = small[:, :, channel]
                    plane -= self._mean[channel]
                    plane *= self._inv_std[channel]
            # metres -> network units: the network sees depth / depth_scale.
            small_sparse = transform.apply_sparse(sparse)
            np.multiply(small_sparse, self._inv_scale, out=sparse_batch[index, 0])
            if classical_batch is not None and self.spec.classical_resolution == "image":
                full = complete_classical(sparse, max_depth=float(self.spec.depth_range[1]),
                                          threads=classical_threads)
                small = transform.apply_dense(np.nan_to_num(full, nan=0.0))
                np.multiply(small, self._inv_scale, out=classical_batch[index, 0])
                transforms[-1] = ClassicalFrame(transform, full, small)
            elif classical_batch is not None:
                classical_batch[index, 0] = classical_units(
                    small_sparse, max_depth=float(self.spec.depth_range[1]),
                    depth_scale=self.spec.depth_scale, threads=classical_threads)
            if features_batch is not None:
                residual_features(sparse_batch[index, 0], classical_batch[index, 0],
                                  out=features_batch[index], threads=classical_threads)
        feeds = {self.spec.rgb_input: rgb_batch}
        if features_batch is not None:
            feeds[self.spec.features_input] = features_batch
        else:
            feeds[self.spec.sparse_input] = sparse_batch
        if classical_batch is not None:
            feeds[self.spec.classical_input] = classical_batch
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

    def finish(self, outputs: dict[str, np.ndarray], transforms: list[InputTransform], *,
               uncertainty: bool = True) -> list[Prediction]:
        """Network outputs {name: (N, 1, h, w) array} -> one full-size Prediction per frame
        (without its uncertainty when ``uncertainty`` is False)."""
        spec = self.spec
        count = len(transforms)
        low, high = spec.depth_range
        # network units -> metres (new arrays, then changed in place).
        depth = self._maps(outputs, spec.depth_output, count) * np.float32(spec.depth_scale)
        depth[np.isinf(depth)] = np.nan
        if spec.classical_input:  # 0 where the classical pre-step had no value: no depth
            depth[depth <= 0] = np.nan
        np.clip(depth, low, high, out=depth)  # NaN stays NaN
        sigma = None
        if spec.uncertainty_output and uncertainty:
            # network units -> metres (a standard deviation scales like depth).
            sigma = self._maps(outputs, spec.uncertainty_output, count) * np.float32(
                spec.depth_scale)
            sigma[np.isinf(sigma) | np.isnan(depth)] = np.nan
            np.maximum(sigma, 0.0, out=sigma)  # NaN stays NaN
        predictions = []
        for index, transform in enumerate(transforms):
            if isinstance(transform, ClassicalFrame):
                full_depth = transform.restore(depth[index], classical_outside=True)
                np.clip(full_depth, low, high, out=full_depth)  # NaN stays NaN
            else:
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
    After each call :attr:`last_timings_ms` holds the milliseconds it spent per stage
    (``preprocess``, ``inference``, ``postprocess``), summed over its batches.
    """

    max_batch: int | None = None
    last_timings_ms: dict[str, float] = {}

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.io = NetworkIO(spec)
        self.supports_mono = bool(spec.supports_mono)

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{input name: NCHW float32} -> {output name: array}; N <= max_batch."""

    def _infer(self, rgb: np.ndarray, sparse: np.ndarray) -> Prediction:
        return self._infer_many([rgb], [sparse])[0]

    def _infer_many(self, rgbs: list[np.ndarray], sparses: list[np.ndarray], *,
                    uncertainty: bool = True) -> list[Prediction]:
        step = self.max_batch or len(rgbs)
        predictions: list[Prediction] = []
        timings = dict.fromkeys(STAGES, 0.0)
        for start in range(0, len(rgbs), step):
            chunk, spent = self._infer_chunk(rgbs[start:start + step],
                                             sparses[start:start + step], uncertainty)
            predictions.extend(chunk)
            for key, ms in zip(STAGES, spent):
                timings[key] += ms
        self.last_timings_ms = timings
        return predictions

    def _infer_chunk(self, rgbs: list[np.ndarray], sparses: list[np.ndarray],
                     uncertainty: bool, run=None, classical_threads: int | None = None
                     ) -> tuple[list[Prediction], tuple]:
        """Frames of one network call -> (their predictions, milliseconds per STAGES).
        ``run``: the call (default :meth:`_run`); ``classical_threads``: as for
        :meth:`NetworkIO.prepare`."""
        t0 = time.perf_counter()
        feeds, transforms = self.io.prepare(rgbs, sparses, classical_threads=classical_threads)
        t1 = time.perf_counter()
        outputs = (run or self._run)(feeds)
        t2 = time.perf_counter()
        predictions = self.io.finish(outputs, transforms, uncertainty=uncertainty)
        t3 = time.perf_counter()
        return predictions, tuple((b - a) * 1000.0 for a, b in ((t0, t1), (t1, t2), (t2, t3)))
