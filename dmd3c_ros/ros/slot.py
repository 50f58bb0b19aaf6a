"""A one-slot, drop-oldest hand-over from subscription callbacks to the worker thread.

image_pipeline's BufferQueue idea: the newest frame always wins; a frame the worker had no time
for is dropped (and counted), never queued behind, so latency cannot build up.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._item: T | None = None
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0   # items replaced before the worker took them
        self.put_count = 0

    def put(self, item: T, superseded: Callable[[T], bool] | None = None) -> bool:
        """Store ``item``; returns True when it replaced one the worker never took.

        A replaced item for which ``superseded(old)`` is true was made obsolete by ``item`` (not
        a frame lost for lack of time) and is not counted in ``dropped``.
        """
        with self._cond:
            replaced = self._item is not None
            if replaced and not (superseded is not None and superseded(self._item)):
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> T | None:
        """Take the newest item, waiting up to ``timeout`` s; None on timeout or after close()."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake a waiting get(); later gets return what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
