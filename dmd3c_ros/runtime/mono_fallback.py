"""A backend pair: a LiDAR model, and the camera-only model its spec names for frames without LiDAR.

The residual student (``training/residual.py``) corrects the classical completion, so it needs
LiDAR; its spec names a camera-only student (``mono_model``) that frames without any return run
instead. :func:`dmd3c_ros.runtime.factory.create_backend` builds both with the same backend kind
and options and returns this wrapper, so nodes, the pipeline and the tools see one backend that
supports mono mode. One batch of mixed frames becomes (at most) one call of each model; the
predictions come back in the frames' order.
"""
from __future__ import annotations

from dmd3c_ros.runtime.base import Backend, Prediction, is_mono


class MonoFallbackBackend(Backend):
    """``primary`` for frames with LiDAR, ``mono`` (which must support mono mode) for the rest.

    Attributes not defined here (``spec``, ``max_batch``, ``precision``, ``gpu``, ``key`` ...) are
    the primary's; ``last_timings_ms`` sums both models' stages of the last call.
    """

    supports_mono = True

    def __init__(self, primary: Backend, mono: Backend) -> None:
        if not mono.supports_mono:
            raise ValueError(f"mono fallback backend {mono!r} does not support mono mode")
        self.primary, self.mono = primary, mono
        self.name = primary.name
        self.last_timings_ms: dict[str, float] = {}

    def __getattr__(self, attribute):
        if attribute in ("primary", "mono"):  # not set yet (e.g. during unpickling)
            raise AttributeError(attribute)
        return getattr(self.primary, attribute)

    def _infer(self, rgb, sparse) -> Prediction:
        return self._infer_many([rgb], [sparse])[0]

    def _infer_many(self, rgbs, sparses, *, uncertainty: bool = True) -> list[Prediction]:
        groups = {True: [], False: []}   # mono? -> frame indices
        for index, sparse in enumerate(sparses):
            groups[is_mono(sparse)].append(index)
        predictions: list[Prediction | None] = [None] * len(rgbs)
        timings: dict[str, float] = {}
        for mono, backend in ((False, self.primary), (True, self.mono)):
            indices = groups[mono]
            if not indices:
                continue
            got = backend.infer_batch([rgbs[i] for i in indices],
                                      [None if mono else sparses[i] for i in indices],
                                      uncertainty=uncertainty)
            for index, prediction in zip(indices, got):
                predictions[index] = prediction
            for key, value in (getattr(backend, "last_timings_ms", None) or {}).items():
                timings[key] = timings.get(key, 0.0) + value
        self.last_timings_ms = timings
        return predictions

    def close(self) -> None:
        self.primary.close()
        self.mono.close()

    def __repr__(self) -> str:
        return f"<MonoFallbackBackend {self.primary!r} mono={self.mono!r}>"
