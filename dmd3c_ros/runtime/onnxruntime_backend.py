"""ONNX Runtime backend: the CPU path (and CUDA when onnxruntime-gpu is installed).

The session uses every graph optimisation, the CUDA execution provider first when this
onnxruntime build has it and the CPU provider always, and ``intra_op_threads`` threads (default:
the number of CPU cores), with ONNX Runtime's spinning worker threads: the settings that measured
fastest for the shipped student on 2 cores (``python -m dmd3c_ros.deploy.ort_tuning``,
docs/benchmarks.md). ``graph_optimization`` and ``session_config`` (ONNX Runtime session config
entries, e.g. ``{"session.intra_op.allow_spinning": "0"}``) override them. Frames are batched
into one ``run`` call when the ONNX batch dimension is dynamic, in chunks of the static batch
size otherwise.
"""
from __future__ import annotations

import os

import numpy as np

from dmd3c_ros.runtime.base import BackendError, BackendUnavailableError
from dmd3c_ros.runtime.network import NetworkBackend
from dmd3c_ros.runtime.spec import ModelSpec


def cpu_cores() -> int:
    """CPU cores this process may use (the affinity mask, e.g. a container's quota)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendUnavailableError(
            "backend 'onnxruntime' needs the onnxruntime package: pip install onnxruntime "
            "(or onnxruntime-gpu for CUDA)") from error
    return onnxruntime


class OnnxRuntimeBackend(NetworkBackend):
    """Runs the spec's ONNX file with ONNX Runtime.

    Args:
        spec: the model spec (its ONNX file is the one run).
        intra_op_threads: threads inside one operator; None or 0 = the CPU cores this process
            may use.
        providers: execution providers in order of preference; None = CUDA first when available,
            then CPU.
        max_batch: most frames per ``run`` call; None = as many as given (dynamic batch) or the
            model's static batch size.
        graph_optimization: "basic", "extended" or "all" (ONNX Runtime's graph optimisation
            levels; "all" adds the layout transformations, NCHWc on x86).
        session_config: ONNX Runtime session config entries {key: value}.
    """

    name = "onnxruntime"

    def __init__(self, spec: ModelSpec, *, intra_op_threads: int | None = None,
                 providers: list[str] | None = None, max_batch: int | None = None,
                 graph_optimization: str = "all",
                 session_config: dict[str, str] | None = None) -> None:
        super().__init__(spec)
        ort = _import_onnxruntime()
        levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if graph_optimization not in levels:
            raise ValueError(f"graph_optimization must be one of {sorted(levels)}, got "
                             f"{graph_optimization!r}")
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[graph_optimization]
        for key, value in (session_config or {}).items():
            options.add_session_config_entry(str(key), str(value))
        threads = int(intra_op_threads) if intra_op_threads else cpu_cores()  # None/0: all
        if threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        options.intra_op_num_threads = threads
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider",) if p in available]
            providers.append("CPUExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(spec.onnx), sess_options=options,
                                                providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise BackendError(f"ONNX Runtime could not load {spec.onnx}: {error}") from error
        self.providers = self.session.get_providers()
        self.intra_op_threads = threads
        self.graph_optimization = graph_optimization
        self.session_config = dict(session_config or {})
        self._check_io()
        static = self._static_batch()
        self.max_batch = min(max_batch, static) if (max_batch and static) else (max_batch or static)

    def _check_io(self) -> None:
        spec = self.spec
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        wanted_out = [spec.depth_output] + ([spec.uncertainty_output]
                                            if spec.uncertainty_output else [])
        wanted_in = [name for name, _ in spec.inputs]
        missing = ([n for n in wanted_in if n not in inputs]
                   + [n for n in wanted_out if n not in outputs])
        if missing:
            raise BackendError(f"{spec.onnx} lacks the tensors {missing} named in its spec "
                               f"(inputs {sorted(inputs)}, outputs {sorted(outputs)})")
        extra = sorted(set(inputs) - set(wanted_in))
        if extra:
            raise BackendError(f"{spec.onnx} has inputs {extra} the spec does not describe")
        h, w = spec.input_size
        for name, channels in spec.inputs:
            shape = inputs[name].shape
            expected = (None, channels, h, w)
            if len(shape) != 4 or any(isinstance(s, int) and e is not None and s != e
                                      for s, e in zip(shape, expected)):
                raise BackendError(f"input '{name}' of {spec.onnx} has shape {shape}, the spec "
                                   f"implies [N, {channels}, {h}, {w}]")
        self._output_names = wanted_out

    def _static_batch(self) -> int | None:
        batch = self.session.get_inputs()[0].shape[0]
        return batch if isinstance(batch, int) and batch > 0 else None

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = next(iter(feeds.values())).shape[0]
        static = self._static_batch()
        if static and count < static:  # static batch: pad with copies of the first frame
            feeds = {k: np.concatenate([v, np.repeat(v[:1], static - count, axis=0)])
                     for k, v in feeds.items()}
        try:
            values = self.session.run(self._output_names, feeds)
        except Exception as error:
            raise BackendError(f"ONNX Runtime failed on {self.spec.onnx}: {error}") from error
        return {name: value[:count] for name, value in zip(self._output_names, values)}

    def close(self) -> None:
        self.session = None
