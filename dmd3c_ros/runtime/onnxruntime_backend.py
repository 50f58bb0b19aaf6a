"""ONNX Runtime backend: the CPU path (and CUDA when onnxruntime-gpu is installed).

The session uses every graph optimisation, the CUDA execution provider first when this
onnxruntime build has it and the CPU provider always, and ``intra_op_threads`` threads (default:
the number of CPU cores), with ONNX Runtime's worker threads spinning only while a run lasts
(``spinning="run"``: ``session.intra_op.allow_spinning`` and ``session.force_spinning_stop``):
between an operator's parallel parts they wait spinning, not sleeping, and after the run they
sleep, so that a frame's Python and OpenCV steps (projection, the classical pre-step, publishing)
and the node's message handling have the cores between network runs. Workers spinning after a run
too (``"always"``, ONNX Runtime's own default) took those cores: on 2 cores that halved the
completion node's latency (docs/benchmarks.md, "Spinning"). Sleeping workers (``"off"``, the
default until round 8) cost the node's network stage 1.8-3.6 ms a frame more than ``"run"`` in
six alternating node runs (docs/benchmarks.md, "Round 8"; round 4 had found ``"run"`` slower, but
then numpy's OpenBLAS spun on the second core after every frame, ``core/blas.py``).
``python -m dmd3c_ros.deploy.ort_tuning`` times the three. ``graph_optimization``, ``spinning``
and ``session_config`` (ONNX Runtime session config entries, which win over ``spinning``)
override them.

Several frames in one call (the views of a sweep): on the CPU they run as single frames on
``view_workers`` threads (default: the CPU cores), each through a second, one-thread session;
ONNX Runtime releases the GIL while it runs and so do OpenCV and numpy's big operations, so
one view's pre-step overlaps another's network. On 2 cores the six views of the nuScenes
keyframe took 0.66-0.69x the time of six single frames this way, while one batched call took
1.05-1.2x (docs/benchmarks.md). With the CUDA provider, a static batch size or
``view_workers=1``, frames are batched into one ``run`` call when the ONNX batch dimension is
dynamic, in chunks of the static batch size otherwise.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from dmd3c_ros.core.machine import cpu_cores
from dmd3c_ros.runtime.base import BackendError, BackendUnavailableError
from dmd3c_ros.runtime.network import STAGES, NetworkBackend
from dmd3c_ros.runtime.spec import ModelSpec

SPINNING = "session.intra_op.allow_spinning"  # ONNX Runtime's session config keys
SPINNING_STOP = "session.force_spinning_stop"
SPINNING_MODES = {"off": {SPINNING: "0"},                        # workers sleep when idle
                  "run": {SPINNING: "1", SPINNING_STOP: "1"},    # spin while a run lasts
                  "always": {SPINNING: "1"}}                     # ONNX Runtime's own default


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
        spinning: when ONNX Runtime's idle worker threads spin instead of sleeping: "run"
            (ours: while a run lasts), "always" (ONNX Runtime's own default) or "off".
        session_config: ONNX Runtime session config entries {key: value}; they win over
            ``spinning`` (a ``session.intra_op.allow_spinning`` entry replaces its entries).
        view_workers: threads that run the frames of one call side by side on the CPU
            (module docstring); None = the CPU cores, 1 = one batched call.
    """

    name = "onnxruntime"

    def __init__(self, spec: ModelSpec, *, intra_op_threads: int | None = None,
                 providers: list[str] | None = None, max_batch: int | None = None,
                 graph_optimization: str = "all", spinning: str = "run",
                 session_config: dict[str, str] | None = None,
                 view_workers: int | None = None) -> None:
        super().__init__(spec)
        ort = self._ort = _import_onnxruntime()
        levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if graph_optimization not in levels:
            raise ValueError(f"graph_optimization must be one of {sorted(levels)}, got "
                             f"{graph_optimization!r}")
        self._level = levels[graph_optimization]
        if spinning not in SPINNING_MODES:
            raise ValueError(f"spinning must be one of {sorted(SPINNING_MODES)}, got "
                             f"{spinning!r}")
        given = {str(k): str(v) for k, v in (session_config or {}).items()}
        # An explicit allow_spinning entry replaces the mode's entries altogether.
        entries = {} if SPINNING in given else dict(SPINNING_MODES[spinning])
        entries.update(given)
        self.session_config = entries
        threads = int(intra_op_threads) if intra_op_threads else cpu_cores()  # None/0: all
        if threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        workers = cpu_cores() if view_workers is None else int(view_workers)
        if workers < 1:
            raise ValueError(f"view_workers must be >= 1, got {view_workers}")
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider",) if p in available]
            providers.append("CPUExecutionProvider")
        self.session = self._new_session(threads, providers)
        self.providers = self.session.get_providers()
        self.intra_op_threads = threads
        self.graph_optimization = graph_optimization
        self._check_io()
        static = self._static_batch()
        self.max_batch = min(max_batch, static) if (max_batch and static) else (max_batch or static)
        cpu_only = self.providers == ["CPUExecutionProvider"]
        self.view_workers = workers if cpu_only and static in (None, 1) else 1
        self._views: tuple | None = None  # (one-thread session, thread pool), made when needed

    def _new_session(self, threads: int, providers: list[str]):
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._level
        for key, value in self.session_config.items():
            options.add_session_config_entry(key, value)
        options.intra_op_num_threads = threads
        try:
            return self._ort.InferenceSession(str(self.spec.onnx), sess_options=options,
                                              providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise BackendError(f"ONNX Runtime could not load {self.spec.onnx}: {error}") from error

    def _infer_many(self, rgbs: list[np.ndarray], sparses: list[np.ndarray], *,
                    uncertainty: bool = True):
        if self.view_workers < 2 or len(rgbs) < 2:
            return super()._infer_many(rgbs, sparses, uncertainty=uncertainty)
        if self._views is None:
            self._views = (self._new_session(1, self.providers),
                           ThreadPoolExecutor(self.view_workers, thread_name_prefix="dmd3c-view"))
        session, pool = self._views
        run = partial(self._run, session=session)
        # One view a worker, its classical pre-step in that worker alone (no strips).
        done = list(pool.map(lambda i: self._infer_chunk([rgbs[i]], [sparses[i]], uncertainty,
                                                         run, classical_threads=1),
                             range(len(rgbs))))
        # Milliseconds per stage summed over the views (they overlap: more than the wall time).
        self.last_timings_ms = {key: sum(spent[k] for _, spent in done)
                                for k, key in enumerate(STAGES)}
        return [predictions[0] for predictions, _ in done]

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

    def _run(self, feeds: dict[str, np.ndarray], session=None) -> dict[str, np.ndarray]:
        count = next(iter(feeds.values())).shape[0]
        static = self._static_batch()
        if static and count < static:  # static batch: pad with copies of the first frame
            feeds = {k: np.concatenate([v, np.repeat(v[:1], static - count, axis=0)])
                     for k, v in feeds.items()}
        try:
            values = (session or self.session).run(self._output_names, feeds)
        except Exception as error:
            raise BackendError(f"ONNX Runtime failed on {self.spec.onnx}: {error}") from error
        return {name: value[:count] for name, value in zip(self._output_names, values)}

    def close(self) -> None:
        if self._views is not None:
            self._views[1].shutdown(wait=True)
            self._views = None
        self.session = None
