"""Inference backends behind one small interface, model spec files and the engine cache.

    from dmd3c_ros.runtime import create_backend
    backend = create_backend("auto", "models/student.yaml")
    prediction = backend.infer(rgb, sparse)   # depth (H, W) float32 metres, NaN = no value

Backend modules (TensorRT, ONNX Runtime, PyTorch) are imported only when created.
"""
from dmd3c_ros.runtime.base import (Backend, BackendError, BackendUnavailableError,
                                    MonoNotSupportedError, Prediction, validate_inputs)
from dmd3c_ros.runtime.factory import (BACKEND_NAMES, PRECISIONS, create_backend,
                                       resolve_backend_name, tensorrt_available)
from dmd3c_ros.runtime.spec import ModelSpec, ModelSpecError, TorchSpec, load_spec, sha256_file
from dmd3c_ros.runtime.spec_write import write_spec

__all__ = [
    "BACKEND_NAMES", "PRECISIONS", "Backend", "BackendError", "BackendUnavailableError",
    "ModelSpec", "ModelSpecError", "MonoNotSupportedError", "Prediction", "TorchSpec",
    "create_backend", "load_spec", "resolve_backend_name", "sha256_file", "tensorrt_available",
    "validate_inputs", "write_spec",
]
