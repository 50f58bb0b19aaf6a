"""INT8 calibration for TensorRT builds: the calibration frames regrouped to the engine's batch
(:func:`rebatch_feeds`) and TensorRT's entropy calibrator over them
(:func:`entropy_calibrator_class`, ``tensorrt_backend.EntropyCalibrator``), with its cache file
(``engine_cache``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from dmd3c_ros.runtime.engine_cache import write_atomic
from dmd3c_ros.runtime.gpu_libs import import_tensorrt

LOG = logging.getLogger("dmd3c_ros.runtime.tensorrt_backend")


def rebatch_feeds(feeds: Iterable[dict[str, np.ndarray]], shapes: dict[str, tuple[int, ...]]
                  ) -> Iterator[dict[str, np.ndarray]]:
    """Feeds of any batch size -> feeds of exactly ``shapes`` (the engine's input shapes).

    ``feeds`` yields {input name: (n, C, h, w) float32}, e.g.
    :func:`dmd3c_ros.deploy.calibration.calibration_feeds`; the frames are regrouped in order
    into batches of ``shapes[name][0]`` frames, and a last partial batch is completed with the
    first frames of the stream (an engine's calibration batch is fixed). Inputs not in ``shapes``
    are ignored.

    Raises:
        ValueError: a feed lacks an input of ``shapes``, its inputs hold different numbers of
            frames, or a frame's (C, h, w) differs from the engine's.
    """
    sizes = {int(shape[0]) for shape in shapes.values()}
    if len(sizes) != 1 or min(sizes) < 1:
        raise ValueError(f"the inputs must share one positive batch size, got shapes {shapes}")
    size = sizes.pop()
    names = sorted(shapes)
    first: list[dict[str, np.ndarray]] = []    # the stream's first frames, to complete the last
    frames: list[dict[str, np.ndarray]] = []   # the batch being filled
    for feed in feeds:
        missing = [name for name in names if name not in feed]
        if missing:
            raise ValueError(f"calibration feed lacks the inputs {missing} (it has "
                             f"{sorted(feed)})")
        counts = {int(np.shape(feed[name])[0]) for name in names}
        if len(counts) != 1:
            raise ValueError(f"calibration feed inputs hold different numbers of frames: "
                             f"{ {name: np.shape(feed[name]) for name in names} }")
        for name in names:
            if tuple(np.shape(feed[name])[1:]) != tuple(shapes[name][1:]):
                raise ValueError(f"calibration input '{name}' has frames of shape "
                                 f"{tuple(np.shape(feed[name])[1:])}, the engine takes "
                                 f"{tuple(shapes[name][1:])}")
        for index in range(counts.pop()):
            frame = {name: np.asarray(feed[name][index], dtype=np.float32) for name in names}
            if len(first) < size:
                first.append(frame)
            frames.append(frame)
            if len(frames) == size:
                yield {name: np.stack([f[name] for f in frames]) for name in names}
                frames = []
    if frames:
        frames += [first[i % len(first)] for i in range(size - len(frames))]
        yield {name: np.stack([f[name] for f in frames]) for name in names}


_CALIBRATOR_CLASS = None


def entropy_calibrator_class():
    """The :class:`EntropyCalibrator` class (a ``trt.IInt8EntropyCalibrator2``), made on first use.

    The class derives from a TensorRT type, so it can only exist where TensorRT imports; the
    module attribute ``EntropyCalibrator`` calls this function.

    Raises:
        BackendUnavailableError: TensorRT or the CUDA bindings are missing.
    """
    global _CALIBRATOR_CLASS
    if _CALIBRATOR_CLASS is not None:
        return _CALIBRATOR_CLASS
    trt, cuda = import_tensorrt()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """INT8 entropy calibration (TensorRT's IInt8EntropyCalibrator2) over network feeds.

        Args:
            feeds: iterable of {input name: (n, C, h, w) float32} in network units, as the runtime
                prepares frames (:func:`dmd3c_ros.deploy.calibration.calibration_feeds`); None =
                no frames (the calibration cache must exist). Iterated once, lazily: frames are
                only read when TensorRT asks for them, i.e. when no valid cache exists.
            cache_path: the calibration cache file (see :func:`calibration_cache_path`); read
                when present (TensorRT then skips the frames), written after calibrating.

        The backend calls :meth:`bind` with the engine's calibration input shapes before a build;
        the frames are then regrouped to that batch size (:func:`rebatch_feeds`). One device
        buffer per input is allocated at the first batch and reused; :meth:`free` releases them.
        After a build, :attr:`batches` is the number of batches TensorRT took, :attr:`cache_read`
        whether it used the cache and :attr:`error` the exception that stopped the frames, if any.
        """

        def __init__(self, feeds: Iterable[dict[str, np.ndarray]] | None, cache_path) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # the binding needs the base initialised
            self.cache_path = Path(cache_path)
            self._feeds = feeds if feeds is not None else ()
            self._shapes: dict[str, tuple[int, ...]] | None = None
            self._batches: Iterator[dict[str, np.ndarray]] | None = None
            self._device: dict[str, tuple[object, int]] = {}  # name -> (allocation, bytes)
            self.batches = 0
            self.cache_read = False
            self.error: Exception | None = None

        def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
            """Give the engine's calibration input shapes {name: (N, C, h, w)}."""
            self._shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}

        def get_batch_size(self) -> int:
            # Explicit-batch networks (all of TensorRT 10's) take the batch size from the
            # tensors' shapes; this value is ignored and 1 is the documented convention.
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            """Copy the next batch to the device; its pointers in the order of ``names``, or
            None when the frames are exhausted (or failed: see :attr:`error`)."""
            try:
                if self._batches is None:
                    self._batches = iter(rebatch_feeds(self._feeds, self._shapes)
                                         if self._shapes else self._feeds)
                feed = next(self._batches, None)
                if feed is None:
                    return None
                pointers = []
                for name in names:
                    if name not in feed:
                        raise ValueError(f"calibration feed lacks input '{name}' (it has "
                                         f"{sorted(feed)})")
                    array = np.ascontiguousarray(feed[name], dtype=np.float32)
                    if name not in self._device:
                        self._device[name] = (cuda.mem_alloc(max(array.nbytes, 1)),
                                              array.nbytes)
                    allocation, nbytes = self._device[name]
                    if array.nbytes != nbytes:
                        raise ValueError(f"calibration input '{name}' changed size: "
                                         f"{array.shape} after batches of {nbytes} bytes")
                    cuda.memcpy_htod(allocation, array)
                    pointers.append(int(allocation))
                self.batches += 1
                return pointers
            except Exception as error:  # TensorRT cannot take a Python exception: keep it
                self.error = error
                LOG.error("INT8 calibration stopped after %d batches: %s", self.batches, error)
                return None

        def read_calibration_cache(self) -> bytes | None:
            if self.cache_path.is_file() and self.cache_path.stat().st_size > 0:
                self.cache_read = True
                LOG.info("using the INT8 calibration cache %s", self.cache_path)
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            write_atomic(self.cache_path, bytes(cache))
            LOG.info("wrote the INT8 calibration cache %s", self.cache_path)

        def free(self) -> None:
            """Release the device buffers (with the CUDA context they were made in current)."""
            for allocation, _ in self._device.values():
                allocation.free()
            self._device.clear()

    _CALIBRATOR_CLASS = EntropyCalibrator
    return EntropyCalibrator


__all__ = ["entropy_calibrator_class", "rebatch_feeds"]
