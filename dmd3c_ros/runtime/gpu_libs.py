"""The GPU libraries of the TensorRT backend: TensorRT and a CUDA driver API.

The backend and its INT8 calibrator use a small part of ``pycuda.driver``: ``init``,
``Device`` (``count``, ``name``, ``compute_capability``, ``retain_primary_context`` with ``push``
/ ``detach``), ``Context.pop``, ``Stream`` (``handle``, ``synchronize``), ``mem_alloc`` (an
allocation whose ``int()`` is the device address, with ``free``), ``pagelocked_empty``,
``memcpy_htod``, ``memcpy_htod_async`` and ``memcpy_dtoh_async``. :func:`cuda_api` returns
``pycuda.driver`` where it imports, else :class:`CudaPythonDriver`, the same part written over
NVIDIA's ``cuda-python`` driver bindings (``cuda.bindings.driver``). cuda-python installs from
binary wheels on a machine that has only the NVIDIA driver; pycuda is built by pip and needs the
CUDA toolkit (``nvcc``, ``cuda.h``), which JetPack has and a bare server often has not.
"""
from __future__ import annotations

import importlib
from typing import Sequence

import numpy as np

from dmd3c_ros.runtime.base import BackendUnavailableError

INSTALL = ("pip install 'dmd3c_ros[tensorrt]' (TensorRT and cuda-python) or tensorrt with "
           "pycuda; on Jetson JetPack's python3-libnvinfer")


class CudaError(RuntimeError):
    """A CUDA driver call that did not return CUDA_SUCCESS."""


def cuda_api():
    """``pycuda.driver``, else :class:`CudaPythonDriver` over ``cuda.bindings.driver``.

    Raises:
        ImportError: neither imports.
    """
    try:
        return importlib.import_module("pycuda.driver")
    except ImportError as pycuda_error:
        try:
            bindings = importlib.import_module("cuda.bindings.driver")
        except ImportError:
            raise ImportError(f"neither pycuda nor cuda-python imports ({pycuda_error})"
                              ) from pycuda_error
        return CudaPythonDriver(bindings)


def import_tensorrt():
    """(tensorrt, the CUDA driver API of :func:`cuda_api`), or BackendUnavailableError saying
    what to install."""
    try:
        import tensorrt as trt
        cuda = cuda_api()
    except ImportError as error:
        raise BackendUnavailableError(
            f"backend 'tensorrt' needs TensorRT 10's Python package and CUDA bindings: "
            f"{INSTALL}; or use backend 'onnxruntime' ({error})") from error
    if int(trt.__version__.split(".")[0]) < 10:
        raise BackendUnavailableError(f"backend 'tensorrt' needs TensorRT 10 or newer, found "
                                      f"{trt.__version__}")
    return trt, cuda


class CudaPythonDriver:
    """The part of ``pycuda.driver`` the backend uses (module docstring), over ``cuda-python``'s
    driver bindings, whose calls return ``(CUresult, value, ...)``; a result other than
    CUDA_SUCCESS raises :class:`CudaError` with the driver's own message."""

    def __init__(self, bindings) -> None:
        self.cu = bindings
        driver = self

        class Device:
            def __init__(self, index: int) -> None:
                self.handle = driver.call("cuDeviceGet", int(index))

            @staticmethod
            def count() -> int:
                return int(driver.call("cuDeviceGetCount"))

            def name(self) -> str:
                raw = driver.call("cuDeviceGetName", 256, self.handle)
                return bytes(raw).split(b"\0", 1)[0].decode(errors="replace").strip()

            def compute_capability(self) -> tuple[int, int]:
                attribute = driver.cu.CUdevice_attribute
                return tuple(int(driver.call("cuDeviceGetAttribute", getattr(
                    attribute, f"CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{part}"), self.handle))
                    for part in ("MAJOR", "MINOR"))

            def retain_primary_context(self) -> "PrimaryContext":
                return PrimaryContext(self.handle, driver.call("cuDevicePrimaryCtxRetain",
                                                               self.handle))

        class PrimaryContext:
            def __init__(self, device, context) -> None:
                self.device, self.context = device, context

            def push(self) -> None:
                driver.call("cuCtxPushCurrent", self.context)

            def detach(self) -> None:
                driver.call("cuDevicePrimaryCtxRelease", self.device)

        class Context:
            @staticmethod
            def pop() -> None:
                driver.call("cuCtxPopCurrent")

        class Stream:
            def __init__(self) -> None:
                self.stream = driver.call("cuStreamCreate", 0)
                self.handle = int(self.stream)

            def synchronize(self) -> None:
                driver.call("cuStreamSynchronize", self.stream)

        self.Device, self.Context, self.Stream = Device, Context, Stream

    def call(self, name: str, *args):
        """``cuda.bindings.driver.<name>(*args)``: its value(s) after the result, checked."""
        result = getattr(self.cu, name)(*args)
        status, values = result[0], result[1:]
        if status != self.cu.CUresult.CUDA_SUCCESS:
            message = self.cu.cuGetErrorString(status)
            text = message[1].decode() if message[0] == self.cu.CUresult.CUDA_SUCCESS else ""
            raise CudaError(f"{name} failed: {status!r} {text}".rstrip())
        return values[0] if len(values) == 1 else (values or None)

    def init(self) -> None:
        self.call("cuInit", 0)

    def mem_alloc(self, nbytes: int) -> "DeviceAllocation":
        return DeviceAllocation(self, self.call("cuMemAlloc", int(nbytes)))

    def pagelocked_empty(self, shape: Sequence[int], dtype) -> np.ndarray:
        """An array in page-locked host memory; freed when the array is garbage collected."""
        return np.asarray(HostBuffer(self, shape, np.dtype(dtype)))

    def memcpy_htod(self, allocation, array: np.ndarray) -> None:
        self.call("cuMemcpyHtoD", allocation.pointer, _address(array), array.nbytes)

    def memcpy_htod_async(self, allocation, array: np.ndarray, stream) -> None:
        self.call("cuMemcpyHtoDAsync", allocation.pointer, _address(array), array.nbytes,
                  stream.stream)

    def memcpy_dtoh_async(self, array: np.ndarray, allocation, stream) -> None:
        self.call("cuMemcpyDtoHAsync", _address(array), allocation.pointer, array.nbytes,
                  stream.stream)


def _address(array: np.ndarray) -> int:
    if not array.flags["C_CONTIGUOUS"]:
        raise ValueError("CUDA copies need C-contiguous arrays")
    return int(array.ctypes.data)


class DeviceAllocation:
    """Device memory: ``int()`` is its address (what TensorRT's tensor addresses take)."""

    def __init__(self, driver: CudaPythonDriver, pointer) -> None:
        self.driver, self.pointer = driver, pointer

    def __int__(self) -> int:
        return int(self.pointer)

    def free(self) -> None:
        if self.pointer is not None:
            self.driver.call("cuMemFree", self.pointer)
            self.pointer = None


class HostBuffer:
    """Page-locked host memory exposed to numpy (``__array_interface__``): the array made of it
    keeps it alive, and it is freed with the last array that uses it."""

    def __init__(self, driver: CudaPythonDriver, shape: Sequence[int], dtype: np.dtype) -> None:
        self.driver, self.shape, self.dtype = driver, tuple(int(d) for d in shape), dtype
        nbytes = max(int(np.prod(self.shape)) * dtype.itemsize, 1)
        self.pointer = int(driver.call("cuMemHostAlloc", nbytes, 0))

    @property
    def __array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                "data": (self.pointer, False)}

    def __del__(self) -> None:
        try:
            self.driver.call("cuMemFreeHost", self.pointer)
        except Exception:  # interpreter shutdown: the driver may already be gone
            pass


__all__ = ["CudaError", "CudaPythonDriver", "cuda_api", "import_tensorrt"]
