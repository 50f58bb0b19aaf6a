"""TensorRT backend (TensorRT 10 Python API + pycuda): the vehicle path on NVIDIA GPUs.

The engine is built from the spec's ONNX file for fp32, fp16 or int8 (int8 needs a calibrator,
an ``trt.IInt8Calibrator`` fed with representative frames) and cached as
``engine_cache_dir/<key>.engine``, where the key hashes the ONNX file's sha256, the TensorRT
version, the GPU (name and compute capability), the precision and the input shapes. A cached
engine is only ever loaded under the key it was built for, so it is never stale; one that fails to
deserialize is rebuilt. Engines are build artefacts: never commit them.

Inference: page-locked host buffers and device buffers are allocated once for ``max_batch``
frames; each call copies inputs host-to-device asynchronously, runs ``execute_async_v3`` with
tensor addresses bound through ``set_tensor_address``, copies outputs back and synchronizes one
CUDA stream. The device's primary CUDA context is pushed around every call, so any thread (a
ROS worker) may call :meth:`infer`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

from dmd3c_ros.core.config import PRECISIONS
from dmd3c_ros.runtime.base import BackendError, BackendUnavailableError
from dmd3c_ros.runtime.network import NetworkBackend
from dmd3c_ros.runtime.spec import ModelSpec, sha256_file

LOG = logging.getLogger(__name__)
_TRT_LOGGER = None


def default_engine_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dmd3c_ros/engines`` (``~/.cache/dmd3c_ros/engines`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dmd3c_ros" / "engines"


def engine_key(onnx_sha256: str, tensorrt_version: str, gpu: str, precision: str,
               input_shapes: dict[str, tuple[int, ...]]) -> str:
    """Cache key (24 hex characters) of an engine; any change of an argument changes it."""
    material = json.dumps({"onnx_sha256": onnx_sha256.lower(), "tensorrt": tensorrt_version,
                           "gpu": gpu, "precision": precision,
                           "inputs": {k: [int(d) for d in v]
                                      for k, v in sorted(input_shapes.items())}},
                          sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def import_tensorrt():
    """(tensorrt, pycuda.driver), or BackendUnavailableError saying what to install."""
    try:
        import tensorrt as trt
        import pycuda.driver as cuda
    except ImportError as error:
        raise BackendUnavailableError(
            "backend 'tensorrt' needs TensorRT 10's Python package and pycuda: "
            "pip install tensorrt pycuda (on Jetson: JetPack's python3-libnvinfer), or use "
            f"backend 'onnxruntime' ({error})") from error
    if int(trt.__version__.split(".")[0]) < 10:
        raise BackendUnavailableError(f"backend 'tensorrt' needs TensorRT 10 or newer, found "
                                      f"{trt.__version__}")
    return trt, cuda


class TensorRTBackend(NetworkBackend):
    """Runs the spec's network as a cached TensorRT engine on one CUDA GPU.

    Args:
        spec: the model spec.
        precision: "fp32", "fp16" or "int8".
        engine_cache_dir: folder of cached engines; None = :func:`default_engine_cache_dir`.
        max_batch: most frames per call (the engine's optimisation profile maximum when the ONNX
            batch dimension is dynamic; a static batch dimension wins).
        calibrator: a ``trt.IInt8Calibrator``; required for int8.
        workspace_mib: builder workspace memory pool limit in MiB.
        device_index: CUDA device ordinal.
    """

    name = "tensorrt"

    def __init__(self, spec: ModelSpec, *, precision: str = "fp32", engine_cache_dir=None,
                 max_batch: int = 1, calibrator=None, workspace_mib: int = 2048,
                 device_index: int = 0) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "int8" and calibrator is None:
            raise BackendError("TensorRT int8 needs a calibrator (a trt.IInt8Calibrator such as "
                               "IInt8EntropyCalibrator2 fed with representative frames); pass "
                               "calibrator=..., or use precision 'fp16'")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        super().__init__(spec)
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
        h, w = spec.input_size
        self._shapes = {spec.rgb_input: (max_batch, 3, h, w),
                        spec.sparse_input: (max_batch, 1, h, w)}
        self.key = engine_key(sha256_file(spec.onnx), trt.__version__, self.gpu, precision,
                              self._shapes)
        cache_dir = Path(engine_cache_dir) if engine_cache_dir else default_engine_cache_dir()
        self.engine_path = cache_dir / f"{self.key}.engine"
        self._lock = threading.Lock()
        self._buffers: dict[str, tuple[np.ndarray, object]] = {}
        self._cuda_context = device.retain_primary_context()
        self._cuda_context.push()
        try:
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._load_or_build(calibrator, workspace_mib)
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
    def _load_or_build(self, calibrator, workspace_mib: int):
        if self.engine_path.is_file():
            engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is not None:
                self.engine_source = "cache"
                return engine
            LOG.warning("cached engine %s could not be deserialized; rebuilding", self.engine_path)
        data = self._build(calibrator, workspace_mib)
        self.engine_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.engine_path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, self.engine_path)  # atomic: readers never see half an engine
        self.engine_path.with_suffix(".json").write_text(json.dumps(
            {"onnx": str(self.spec.onnx), "tensorrt": self._trt.__version__, "gpu": self.gpu,
             "precision": self.precision,
             "inputs": {k: list(v) for k, v in self._shapes.items()}}, indent=2))
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError(f"TensorRT could not deserialize the engine it just built "
                               f"from {self.spec.onnx}")
        self.engine_source = "built"
        return engine

    def _build(self, calibrator, workspace_mib: int) -> bytes:
        trt, spec = self._trt, self.spec
        LOG.info("building a %s TensorRT engine from %s (minutes on a Jetson)", self.precision,
                 spec.onnx)
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
        profile = builder.create_optimization_profile()
        dynamic = False
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
        if dynamic:
            config.add_optimization_profile(profile)
        if self.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = calibrator
            if dynamic:
                config.set_calibration_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT failed to build an engine from {spec.onnx} "
                               "(see the TensorRT log above)")
        return bytes(serialized)

    def _allocate(self) -> None:
        trt, cuda, engine, spec = self._trt, self._cuda, self._engine, self.spec
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [spec.depth_output] + ([spec.uncertainty_output]
                                               if spec.uncertainty_output else [])
        missing = [n for n in self._outputs + [spec.rgb_input, spec.sparse_input]
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
