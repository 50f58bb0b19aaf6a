"""runtime.gpu_libs: the CUDA driver API over cuda-python, against a stand-in for
``cuda.bindings.driver`` that keeps real host and device memory (no GPU here)."""
import ctypes
import enum
import gc
import sys
import types

import numpy as np
import pytest

from dmd3c_ros.runtime import gpu_libs
from dmd3c_ros.runtime.base import BackendUnavailableError


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_OUT_OF_MEMORY = 2


class FakeBindings(types.ModuleType):
    """cuda.bindings.driver as the shim calls it: every call returns (CUresult, values...)."""

    CUresult = CUresult
    CUdevice_attribute = types.SimpleNamespace(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR=75,
                                               CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR=76)

    def __init__(self):
        super().__init__("cuda.bindings.driver")
        self.memory = {}          # address -> ctypes buffer (device and page-locked host alike)
        self.calls = []
        self.contexts = []        # the context stack
        self.fail = None          # the name of a call to fail with out of memory

    def _alloc(self, nbytes):
        buffer = ctypes.create_string_buffer(nbytes)
        self.memory[ctypes.addressof(buffer)] = buffer
        return ctypes.addressof(buffer)

    def __getattr__(self, name):
        if not name.startswith("cu"):
            raise AttributeError(name)

        def call(*args):
            self.calls.append((name, args))
            if name == self.fail:
                return (CUresult.CUDA_ERROR_OUT_OF_MEMORY,)
            return getattr(self, "_" + name)(*args)
        return call

    _cuInit = staticmethod(lambda flags: (CUresult.CUDA_SUCCESS,))
    _cuDeviceGetCount = staticmethod(lambda: (CUresult.CUDA_SUCCESS, 1))
    _cuDeviceGet = staticmethod(lambda index: (CUresult.CUDA_SUCCESS, 100 + index))
    _cuDeviceGetName = staticmethod(lambda n, dev: (CUresult.CUDA_SUCCESS,
                                                    b"NVIDIA Fake GPU\0\0\0"))

    def _cuDeviceGetAttribute(self, attribute, dev):
        return CUresult.CUDA_SUCCESS, {75: 8, 76: 9}[attribute]

    def _cuGetErrorString(self, status):
        return CUresult.CUDA_SUCCESS, b"out of memory"

    def _cuDevicePrimaryCtxRetain(self, dev):
        return CUresult.CUDA_SUCCESS, f"ctx{dev}"

    def _cuDevicePrimaryCtxRelease(self, dev):
        return (CUresult.CUDA_SUCCESS,)

    def _cuCtxPushCurrent(self, ctx):
        self.contexts.append(ctx)
        return (CUresult.CUDA_SUCCESS,)

    def _cuCtxPopCurrent(self):
        return CUresult.CUDA_SUCCESS, self.contexts.pop()

    def _cuStreamCreate(self, flags):
        return CUresult.CUDA_SUCCESS, 7

    def _cuStreamSynchronize(self, stream):
        return (CUresult.CUDA_SUCCESS,)

    def _cuMemAlloc(self, nbytes):
        return CUresult.CUDA_SUCCESS, self._alloc(nbytes)

    _cuMemHostAlloc = lambda self, nbytes, flags: (CUresult.CUDA_SUCCESS, self._alloc(nbytes))

    def _cuMemFree(self, pointer):
        del self.memory[int(pointer)]
        return (CUresult.CUDA_SUCCESS,)

    _cuMemFreeHost = _cuMemFree

    def _copy(self, destination, source, nbytes, stream=None):
        ctypes.memmove(int(destination), int(source), nbytes)
        return (CUresult.CUDA_SUCCESS,)

    _cuMemcpyHtoD = _cuMemcpyHtoDAsync = _cuMemcpyDtoHAsync = _copy


@pytest.fixture
def bindings():
    return FakeBindings()


def test_device_context_and_stream(bindings):
    cuda = gpu_libs.CudaPythonDriver(bindings)
    cuda.init()
    assert cuda.Device.count() == 1
    device = cuda.Device(0)
    assert device.name() == "NVIDIA Fake GPU" and device.compute_capability() == (8, 9)
    context = device.retain_primary_context()
    context.push()
    assert bindings.contexts == ["ctx100"]
    cuda.Context.pop()
    assert bindings.contexts == []
    context.detach()
    stream = cuda.Stream()
    assert stream.handle == 7
    stream.synchronize()
    assert ("cuDevicePrimaryCtxRelease", (100,)) in bindings.calls


def test_copies_round_trip_through_device_memory(bindings):
    cuda = gpu_libs.CudaPythonDriver(bindings)
    host = cuda.pagelocked_empty((2, 3), np.float32)
    assert host.shape == (2, 3) and host.dtype == np.float32
    assert int(host.ctypes.data) in bindings.memory          # the page-locked allocation itself
    host[...] = np.arange(6, dtype=np.float32).reshape(2, 3)
    device = cuda.mem_alloc(host.nbytes)
    stream = cuda.Stream()
    cuda.memcpy_htod_async(device, host, stream)
    back = cuda.pagelocked_empty((2, 3), np.float32)
    cuda.memcpy_dtoh_async(back, device, stream)
    np.testing.assert_array_equal(back, host)
    calibration = np.full((4,), 2.5, np.float32)
    cuda.memcpy_htod(device, calibration)                    # what the calibrator does
    cuda.memcpy_dtoh_async(back, device, stream)
    np.testing.assert_array_equal(back.reshape(-1), [2.5] * 4 + [4.0, 5.0])
    assert int(device) in bindings.memory
    device.free()
    device.free()                                            # a second free is a no-op
    assert int(host.ctypes.data) in bindings.memory
    with pytest.raises(ValueError, match="C-contiguous"):
        cuda.memcpy_htod_async(cuda.mem_alloc(8), host[:, ::2], stream)


def test_page_locked_memory_is_freed_with_its_last_array(bindings):
    cuda = gpu_libs.CudaPythonDriver(bindings)
    host = cuda.pagelocked_empty((4, 5), np.float16)
    address = int(host.ctypes.data)
    view = host[1:]
    del host
    gc.collect()
    assert address in bindings.memory                        # the view still holds it
    del view
    gc.collect()
    assert address not in bindings.memory


def test_a_failed_call_raises_with_the_driver_message(bindings):
    cuda = gpu_libs.CudaPythonDriver(bindings)
    bindings.fail = "cuMemAlloc"
    with pytest.raises(gpu_libs.CudaError, match="cuMemAlloc failed: .*out of memory"):
        cuda.mem_alloc(1 << 40)


def test_cuda_api_prefers_pycuda_then_cuda_python(monkeypatch, bindings):
    pycuda_driver = types.ModuleType("pycuda.driver")
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = pycuda_driver
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda_driver)
    assert gpu_libs.cuda_api() is pycuda_driver
    monkeypatch.setitem(sys.modules, "pycuda", None)          # import pycuda -> ImportError
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    cuda_pkg, bindings_pkg = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    cuda_pkg.bindings, bindings_pkg.driver = bindings_pkg, bindings
    for name, module in (("cuda", cuda_pkg), ("cuda.bindings", bindings_pkg),
                         ("cuda.bindings.driver", bindings)):
        monkeypatch.setitem(sys.modules, name, module)
    api = gpu_libs.cuda_api()
    assert isinstance(api, gpu_libs.CudaPythonDriver) and api.cu is bindings
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", None)
    with pytest.raises(ImportError, match="neither pycuda nor cuda-python"):
        gpu_libs.cuda_api()


def test_import_tensorrt_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="TensorRT and cuda-python"):
        gpu_libs.import_tensorrt()
