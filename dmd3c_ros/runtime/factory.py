"""Backend selection: ``create_backend(name, spec, ...)`` for auto|tensorrt|onnxruntime|torch|classical.

``auto`` resolves to ``tensorrt`` when :func:`tensorrt_available` (TensorRT and CUDA bindings
importable and a CUDA device present), else ``onnxruntime``. The detection functions are
module-level so that tests can patch them; backend modules are imported only when their backend
is created.
"""
from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path

from dmd3c_ros.core.config import BACKENDS as BACKEND_NAMES
from dmd3c_ros.core.config import PRECISIONS
from dmd3c_ros.paths import default_model_spec, share_dir
from dmd3c_ros.runtime.base import Backend
from dmd3c_ros.runtime.spec import ModelSpec, ModelSpecError, load_spec

LOG = logging.getLogger(__name__)
NETWORK_BACKENDS = ("tensorrt", "onnxruntime", "torch")


def tensorrt_installed() -> bool:
    """True when ``tensorrt`` and CUDA bindings (pycuda or cuda-python, ``gpu_libs``) import."""
    try:
        from dmd3c_ros.runtime.gpu_libs import import_tensorrt
        import_tensorrt()
    except Exception:  # not installed, or a broken install raising OSError at import
        return False
    return True


def cuda_device_count() -> int:
    """Number of CUDA devices the CUDA bindings see (0 without them, the driver or a GPU)."""
    try:
        from dmd3c_ros.runtime.gpu_libs import cuda_api
        cuda = cuda_api()
        cuda.init()
        return int(cuda.Device.count())
    except Exception:
        return 0


def tensorrt_available() -> bool:
    """True when the TensorRT backend can run here: TensorRT, CUDA bindings and a CUDA GPU."""
    return tensorrt_installed() and cuda_device_count() > 0


def resolve_backend_name(name: str) -> str:
    """The concrete backend ``name`` stands for (``auto`` -> tensorrt or onnxruntime).

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    key = str(name).strip().lower()
    if key not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKEND_NAMES)}")
    if key == "auto":
        return "tensorrt" if tensorrt_available() else "onnxruntime"
    return key


def _make_tensorrt(spec, precision, engine_cache_dir, **options) -> Backend:
    from dmd3c_ros.runtime.tensorrt_backend import TensorRTBackend
    return TensorRTBackend(spec, precision=precision, engine_cache_dir=engine_cache_dir,
                           **options)


def _make_onnxruntime(spec, precision, engine_cache_dir, **options) -> Backend:
    from dmd3c_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
    return OnnxRuntimeBackend(spec, **options)


def _make_torch(spec, precision, engine_cache_dir, **options) -> Backend:
    from dmd3c_ros.runtime.torch_backend import TorchBackend
    return TorchBackend(spec, **options)


def _make_classical(spec, precision, engine_cache_dir, **options) -> Backend:
    from dmd3c_ros.runtime.classical_backend import ClassicalBackend
    return ClassicalBackend(**options)


_CLASSES = {"tensorrt": ("tensorrt_backend", "TensorRTBackend"),
            "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeBackend"),
            "torch": ("torch_backend", "TorchBackend"),
            "classical": ("classical_backend", "ClassicalBackend")}


def _accepted(name: str, options: dict) -> dict:
    """For ``auto``: drop options the chosen backend's constructor does not take."""
    module, cls = _CLASSES[name]
    try:
        target = getattr(importlib.import_module(f"dmd3c_ros.runtime.{module}"), cls)
        parameters = inspect.signature(target.__init__).parameters
    except Exception:
        return options
    kept = {k: v for k, v in options.items() if k in parameters}
    if len(kept) != len(options):
        LOG.info("backend '%s' ignores options %s", name, sorted(set(options) - set(kept)))
    return kept


def resolve_spec_path(spec) -> Path:
    """A model spec path as given, or, for a bare file name that does not exist here (e.g.
    ``student_surround.yaml`` in a launch YAML), the shipped one in the package's models/."""
    path = Path(spec).expanduser()
    if not path.exists() and path.parent == Path("."):
        shipped = share_dir() / "models" / path.name
        if shipped.is_file():
            return shipped
    return path


def create_backend(name: str = "auto", spec: ModelSpec | str | None = None,
                   precision: str = "fp32", engine_cache_dir=None, **options) -> Backend:
    """Create an inference backend.

    Args:
        name: auto, tensorrt, onnxruntime, torch or classical.
        spec: a ModelSpec or the path of a model spec YAML for the network backends (tensorrt,
            onnxruntime, torch); None or "" = the shipped student; a bare file name that does
            not exist in the current folder is looked up among the shipped models
            (``resolve_spec_path``). Ignored by classical.
        precision: fp32, fp16 or int8; only TensorRT uses it (the others compute in fp32).
        engine_cache_dir: TensorRT engine cache folder; None = the default cache.
        **options: passed to the backend's constructor (e.g. ``intra_op_threads`` for
            onnxruntime, ``max_batch`` for the network backends, ``module`` for torch,
            ``max_depth`` for classical). With ``auto`` options the chosen backend does not take
            are dropped.

    Raises:
        ValueError: unknown name or precision; ModelSpecError: a network backend without a spec
        or with a bad one; BackendUnavailableError: the backend's libraries or GPU are missing.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    resolved = resolve_backend_name(name)
    if resolved in NETWORK_BACKENDS:
        spec = spec or default_model_spec()
        if spec is None:
            raise ModelSpecError(f"backend '{resolved}' needs a model spec YAML (--model, or the "
                                 "'model' parameter): no default student is installed "
                                 "(share/dmd3c_ros/models/student.yaml); backend 'classical' "
                                 "needs none")
        if not isinstance(spec, ModelSpec):
            spec = load_spec(resolve_spec_path(spec))
    if resolved in ("onnxruntime", "torch") and precision != "fp32":
        # Expected with auto on a machine without a GPU; a surprise when asked for by name.
        (LOG.info if str(name).strip().lower() == "auto" else LOG.warning)("precision %s applies only to TensorRT; backend '%s' runs in fp32",
                    precision, resolved)
    if options and str(name).strip().lower() == "auto":
        options = _accepted(resolved, options)
    maker = globals()[f"_make_{resolved}"]  # looked up at call time so tests can patch it
    backend = maker(spec, precision, engine_cache_dir, **options)
    if resolved in NETWORK_BACKENDS and spec.mono_model is not None:
        # A LiDAR-only model (the residual student) with a camera-only model for frames
        # without LiDAR: the same backend kind and options for both.
        from dmd3c_ros.runtime.mono_fallback import MonoFallbackBackend
        mono_spec = load_spec(spec.mono_model)
        if mono_spec.mono_model is not None:
            raise ModelSpecError(f"{spec.mono_model}: a mono model cannot name a mono model")
        mono_options = {k: v for k, v in options.items() if k != "module"}
        backend = MonoFallbackBackend(
            backend, maker(mono_spec, precision, engine_cache_dir, **mono_options))
    LOG.info("created backend %s", backend)
    return backend
