"""Rolling latency statistics (milliseconds) for diagnostics and benchmarks."""
from __future__ import annotations

import threading
from collections import deque

import numpy as np


class RollingStats:
    """The last ``window`` samples; percentiles on demand. Thread-safe."""

    def __init__(self, window: int = 200) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.count = 0  # samples ever added

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(float(value))
            self.count += 1

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) of the window; NaN when empty."""
        with self._lock:
            if not self._samples:
                return float("nan")
            return float(np.percentile(np.fromiter(self._samples, float), q))

    def summary(self) -> dict[str, float]:
        """{"p50": .., "p95": .., "count": ..} of the window."""
        return {"p50": self.percentile(50), "p95": self.percentile(95), "count": self.count}
