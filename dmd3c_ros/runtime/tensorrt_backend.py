"""TensorRT backend (TensorRT 10 Python API + CUDA bindings, :mod:`.gpu_libs`): the vehicle path
on NVIDIA GPUs.

The engine is built from the spec's ONNX file for fp32, fp16 or int8 and cached as
``engine_cache_dir/<key>.engine``, where the key hashes the ONNX file's sha256, the TensorRT
version, the GPU (name and compute capability), the precision and the input shapes. A cached
engine is only ever loaded under the key it was built for, so it is never stale; one that fails to
deserialize is rebuilt. Engines are build artefacts: never commit them.

Files next to the engines:
    ``timing-<tensorrt version>-<gpu>.cache``: TensorRT's layer timing cache, loaded into every
        build and written back after it, so that rebuilding (another precision, batch size or a
        retrained model of the same architecture) skips the tactic timings already measured.
    ``calibration-<onnx sha256 prefix>-<h>x<w>.cache``: the INT8 calibration cache the
        :class:`EntropyCalibrator` writes. With it, an int8 engine is rebuilt (e.g. after a
        TensorRT upgrade) without calibration frames; a changed ONNX file has another name.

INT8 needs a calibrator (``EntropyCalibrator`` fed with frames like the deployment's, see
``dmd3c engine --calibration``) or an existing calibration cache.

Inference: page-locked host buffers and device buffers are allocated once for ``max_batch``
frames; each call copies inputs host-to-device asynchronously, runs ``execute_async_v3`` with
tensor addresses bound through ``set_tensor_address``, copies outputs back and synchronizes one
CUDA stream. The device's primary CUDA context is pushed around every call, so any thread (a
ROS worker) may call :meth:`infer`.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dmd3c_ros.core.config import PRECISIONS
from dmd3c_ros.runtime.base import BackendError, BackendUnavailableError
from dmd3c_ros.runtime.network import NetworkBackend
from dmd3c_ros.runtime.spec import ModelSpec, sha256_file
from dmd3c_ros.runtime.engine_cache import (calibration_cache_path, default_engine_cache_dir,
                                            engine_key, timing_cache_path, write_atomic)
from dmd3c_ros.runtime.gpu_libs import import_tensorrt
from dmd3c_ros.runtime.tensorrt_calibration import entropy_calibrator_class, rebatch_feeds

LOG = logging.getLogger(__name__)
_TRT_LOGGER = None


def __getattr__(name: str):
    # ``tensorrt_backend.EntropyCalibrator`` without importing TensorRT with this module.
    if name == "EntropyCalibrator":
        return entropy_calibrator_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TensorRTBackend(NetworkBackend):
    """Runs the spec's network as a cached TensorRT engine on one CUDA GPU.

    Args:
        spec: the model spec.
        precision: "fp32", "fp16" or "int8".
        engine_cache_dir: folder of cached engines; None = :func:`default_engine_cache_dir`.
        max_batch: most frames per call (the engine's optimisation profile maximum when the ONNX
            batch dimension is dynamic; a static batch dimension wins).
        calibrator: a ``trt.IInt8Calibrator`` such as :class:`EntropyCalibrator`, used when int8
            builds; None = the calibration cache :attr:`calibration_cache_path` (written by
            ``dmd3c engine --precision int8 --calibration DIR``), which int8 then requires.
        workspace_mib: builder workspace memory pool limit in MiB.
        device_index: CUDA device ordinal.
        timing_cache: load and update the builder's timing cache :attr:`timing_cache_path`.
        rebuild: build even when the engine is cached (the cached one is replaced).
        progress: called with a line before and after a build (and when the cached engine is
            loaded); None = this module's logger at INFO.

    After construction :attr:`engine_source` is "cache" or "built", :attr:`build_seconds` the
    build's wall time in seconds (None for a cached engine) and :attr:`engine_path` the engine.
    """

    name = "tensorrt"

    def __init__(self, spec: ModelSpec, *, precision: str = "fp32", engine_cache_dir=None,
                 max_batch: int = 1, calibrator=None, workspace_mib: int = 2048,
                 device_index: int = 0, timing_cache: bool = True, rebuild: bool = False,
                 progress: Callable[[str], None] | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.cache_dir = Path(engine_cache_dir) if engine_cache_dir else default_engine_cache_dir()
        onnx_sha256 = sha256_file(spec.onnx)
        self.calibration_cache_path = calibration_cache_path(self.cache_dir, onnx_sha256,
                                                             spec.input_size)
        if precision == "int8" and calibrator is None \
                and not self.calibration_cache_path.is_file():
            raise BackendError(
                f"TensorRT int8 needs a calibrator or the calibration cache "
                f"{self.calibration_cache_path}: build the engine once with `dmd3c engine "
                f"{spec.path or spec.onnx} --precision int8 --calibration DIR` (DIR: frames like "
                "your deployment's), pass calibrator=..., or use precision 'fp16'")
        super().__init__(spec)
        self._progress = progress or LOG.info
        trt, cuda = import_tensorrt()
        self._trt, self._cuda = trt, cuda
        cuda.init()
        if cuda.Device.count() <= device_index:
            raise BackendUnavailableError(f"backend 'tensorrt' needs a CUDA GPU; found "
                                          f"{cuda.Device.count()} device(s)")
        global _TRT_LOGGER
        if _TRT_LOGGER is None:  # TensorRT expects one logger per process
            _TRT_LOGGER = trt.Logger(trt.Logger.WARNING)
        self._logger = _TRT_LOGGER
        device = cuda.Device(device_index)
        major, minor = device.compute_capability()
        self.gpu = f"{device.name()} (sm_{major}{minor})"
        self.precision = precision
        self.tensorrt_version = trt.__version__
        h, w = spec.input_size
        self._shapes = {name: (max_batch, channels, h, w) for name, channels in spec.inputs}
        self.key = engine_key(onnx_sha256, trt.__version__, self.gpu, precision, self._shapes)
        self.engine_path = self.cache_dir / f"{self.key}.engine"
        self.timing_cache_path = (timing_cache_path(self.cache_dir, trt.__version__, self.gpu)
                                  if timing_cache else None)
        self.build_seconds: float | None = None
        self._lock = threading.Lock()
        self._buffers: dict[str, tuple[np.ndarray, object]] = {}
        self._cuda_context = device.retain_primary_context()
        self._cuda_context.push()
        try:
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._load_or_build(calibrator, workspace_mib, rebuild)
            self._context = self._engine.create_execution_context()
            self._stream = cuda.Stream()
            self._allocate()
        except BaseException:
            self._buffers.clear()
            self._context = self._engine = None
            cuda.Context.pop()
            self._cuda_context.detach()
            raise
        cuda.Context.pop()

    # -- engine -----------------------------------------------------------------------------
    def _load_or_build(self, calibrator, workspace_mib: int, rebuild: bool = False):
        if rebuild and self.engine_path.is_file():
            self._progress(f"rebuilding: removing the cached engine {self.engine_path}")
            self.engine_path.unlink()
            self.engine_path.with_suffix(".json").unlink(missing_ok=True)
        if self.engine_path.is_file():
            engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is not None:
                self.engine_source = "cache"
                self._progress(f"loaded the cached {self.precision} TensorRT engine "
                               f"{self.engine_path}")
                return engine
            LOG.warning("cached engine %s could not be deserialized; rebuilding", self.engine_path)
        if self.precision == "int8" and calibrator is None:  # the cache alone: no frames
            calibrator = entropy_calibrator_class()(None, self.calibration_cache_path)
        self._progress(f"building a {self.precision} TensorRT engine for '{self.spec.name}' "
                       f"from {self.spec.onnx} on {self.gpu} (this takes minutes; once per "
                       f"model, precision, GPU and TensorRT version) -> {self.engine_path}")
        start = time.monotonic()
        try:
            data = self._build(calibrator, workspace_mib)
        finally:
            free = getattr(calibrator, "free", None)
            if callable(free):  # its device buffers go while their CUDA context is current
                free()
        self.build_seconds = time.monotonic() - start
        write_atomic(self.engine_path, data)  # readers never see half an engine
        self.engine_path.with_suffix(".json").write_text(json.dumps(
            {"onnx": str(self.spec.onnx), "tensorrt": self._trt.__version__, "gpu": self.gpu,
             "precision": self.precision, "build_seconds": round(self.build_seconds, 1),
             "inputs": {k: list(v) for k, v in self._shapes.items()}}, indent=2))
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError(f"TensorRT could not deserialize the engine it just built "
                               f"from {self.spec.onnx}")
        self.engine_source = "built"
        self._progress(f"built the {self.precision} TensorRT engine in "
                       f"{self.build_seconds:.1f} s: {self.engine_path}")
        return engine

    def _build(self, calibrator, workspace_mib: int) -> bytes:
        trt, spec = self._trt, self.spec
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(spec.onnx)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT could not parse {spec.onnx}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                     int(workspace_mib) << 20)  # MiB -> bytes
        if self.precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: no TF32 matrix maths
        if self.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8 falls back to fp16, not fp32
        timing_cache = self._load_timing_cache(config)
        profile = builder.create_optimization_profile()
        dynamic = False
        calibration_shapes = {}
        for index in range(network.num_inputs):
            tensor = network.get_input(index)
            if tensor.name not in self._shapes:
                raise BackendError(f"{spec.onnx} has an input '{tensor.name}' the spec does not "
                                   f"describe (expected {sorted(self._shapes)})")
            full = self._shapes[tensor.name]
            declared = tuple(tensor.shape)
            if len(declared) != 4 or any(0 <= d != f for d, f in zip(declared[1:], full[1:])):
                raise BackendError(f"input '{tensor.name}' of {spec.onnx} has shape {declared}, "
                                   f"the spec implies {list(full)}")
            if any(d < 0 for d in declared):
                dynamic = True
                profile.set_shape(tensor.name, (1,) + full[1:], full, full)
            # Calibration runs at the profile's opt shape (full), or the static shape.
            calibration_shapes[tensor.name] = tuple(f if d < 0 else d
                                                    for d, f in zip(declared, full))
        if dynamic:
            config.add_optimization_profile(profile)
        if self.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            bind = getattr(calibrator, "bind", None)
            if callable(bind):
                bind(calibration_shapes)
            config.int8_calibrator = calibrator
            if dynamic:
                config.set_calibration_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        error = getattr(calibrator, "error", None) if self.precision == "int8" else None
        if error is not None:
            raise BackendError(f"INT8 calibration failed: {error}") from error
        if serialized is None:
            if self.precision == "int8" and getattr(calibrator, "batches", None) == 0:
                raise BackendError(
                    f"TensorRT failed to build an int8 engine from {spec.onnx}: calibration got "
                    f"no frames and could not use the calibration cache "
                    f"{getattr(calibrator, 'cache_path', '')} (see the TensorRT log above); "
                    f"calibrate again: dmd3c engine {spec.path or spec.onnx} --precision int8 "
                    "--recalibrate --calibration DIR")
            raise BackendError(f"TensorRT failed to build an engine from {spec.onnx} "
                               "(see the TensorRT log above)")
        if timing_cache is not None:
            self._save_timing_cache(config)
        return bytes(serialized)

    def _load_timing_cache(self, config):
        """Attach the timing cache file's content (or an empty cache) to ``config``."""
        path = self.timing_cache_path
        if path is None:
            return None
        data = path.read_bytes() if path.is_file() else b""
        try:
            cache = config.create_timing_cache(data)
            if cache is None or not config.set_timing_cache(cache, False):  # no mismatch
                raise BackendError("TensorRT rejected it")
        except Exception as error:  # a corrupt or foreign file: start afresh
            if not data:
                LOG.warning("no TensorRT timing cache: %s", error)
                return None
            LOG.warning("ignoring the TensorRT timing cache %s (%s); starting a new one", path,
                        error)
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
        return cache

    def _save_timing_cache(self, config) -> None:
        """Write the build's timing cache (what it loaded plus what it timed) back, atomically."""
        try:
            write_atomic(self.timing_cache_path,
                          bytes(config.get_timing_cache().serialize()))
        except Exception as error:  # a cache is an optimisation: the engine is fine without it
            LOG.warning("could not write the TensorRT timing cache %s: %s",
                        self.timing_cache_path, error)

    def _allocate(self) -> None:
        trt, cuda, engine, spec = self._trt, self._cuda, self._engine, self.spec
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [spec.depth_output] + ([spec.uncertainty_output]
                                               if spec.uncertainty_output else [])
        missing = [n for n in self._outputs + [name for name, _ in spec.inputs]
                   if n not in names]
        if missing:
            raise BackendError(f"engine {self.engine_path} lacks the tensors {missing} named in "
                               f"the spec (it has {names})")
        self._dynamic = False
        for name in self._inputs:
            shape = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                self._dynamic = True
                shape = tuple(engine.get_tensor_profile_shape(name, 0)[2])  # profile maximum
            self._set_input_shape(name, shape)
            self.max_batch = int(shape[0])
        for name in names:  # output shapes follow from the input shapes just set
            shape = tuple(self._context.get_tensor_shape(name))
            host = cuda.pagelocked_empty(shape, trt.nptype(engine.get_tensor_dtype(name)))
            device = cuda.mem_alloc(max(host.nbytes, 1))
            self._context.set_tensor_address(name, int(device))
            self._buffers[name] = (host, device)

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(name, shape):
            raise BackendError(f"TensorRT rejected shape {shape} for input '{name}'")

    # -- inference --------------------------------------------------------------------------
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        count = next(iter(feeds.values())).shape[0]
        batch = count if self._dynamic else self.max_batch  # static engines run padded
        with self._lock:
            if self._engine is None:
                raise BackendError("the TensorRT backend was closed")
            self._cuda_context.push()
            try:
                for name in self._inputs:
                    host, device = self._buffers[name]
                    host[:count] = feeds[name]  # casts to the engine's dtype
                    host[count:batch] = feeds[name][:1]
                    if self._dynamic:
                        self._set_input_shape(name, (batch,) + host.shape[1:])
                    cuda.memcpy_htod_async(device, host[:batch], self._stream)
                if not self._context.execute_async_v3(self._stream.handle):
                    raise BackendError("TensorRT execute_async_v3 failed")
                views = {}
                for name in self._outputs:
                    host, device = self._buffers[name]
                    shape = tuple(self._context.get_tensor_shape(name))
                    views[name] = host.reshape(-1)[:int(np.prod(shape))].reshape(shape)
                    cuda.memcpy_dtoh_async(views[name], device, self._stream)
                self._stream.synchronize()
                # Copies: the page-locked buffers are reused by the next call.
                return {name: view[:count].astype(np.float32) for name, view in views.items()}
            finally:
                cuda.Context.pop()

    def close(self) -> None:
        with self._lock:
            if getattr(self, "_engine", None) is None:
                return
            self._cuda_context.push()
            try:
                for _, device in self._buffers.values():
                    device.free()
                self._buffers.clear()
                self._context = self._engine = self._runtime = self._stream = None
            finally:
                self._cuda.Context.pop()
                self._cuda_context.detach()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone
            pass


# The engine cache's names and the calibrator live in their own modules; importers of this one
# find them here too.
__all__ = ["TensorRTBackend", "calibration_cache_path", "default_engine_cache_dir",
           "engine_key", "entropy_calibrator_class", "import_tensorrt", "rebatch_feeds",
           "timing_cache_path"]
