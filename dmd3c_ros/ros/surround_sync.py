"""Gathering the views of one LiDAR sweep from a ring of cameras (the surround node's batches).

Pure Python (no rclpy): payloads are whatever the node hands in (its image + camera_info pairs
and PointCloud2 messages); stamps are integer nanoseconds; ``clock`` gives monotonic seconds.

A *set* is one sweep plus, per camera, the pending view whose stamp is nearest the sweep's within
``slop``. A set is emitted

- as soon as every *live* camera has a view in it, or
- ``wait`` seconds after its sweep arrived, with the views it has (the others are listed in
  ``missing``); a sweep that got no view at all is dropped (``empty_sweeps``).

Sets leave in stamp order. A view older than an emitted sweep by more than ``slop`` can no longer
match and is dropped (``unmatched[camera]``), as is a view that waited ``wait`` seconds without any
pending sweep near it while the LiDAR is live.

A camera is *live* while its last image is at most ``camera_timeout`` seconds older than the
newest message of any input, counting from the first message after the start or after a silence
of every input longer than ``camera_timeout`` (a paused bag): a camera that stops while the others
go on is no longer waited for, so they keep their latency, while after a pause all are waited
for again. ``stale()`` names the cameras silent for more than
``camera_timeout`` seconds of the clock. The LiDAR is live while its last sweep (or, before the
first, the first view) is at most ``lidar_timeout`` seconds old; when it is not, views are
gathered without a sweep (camera-only sets: ``sweep`` None) around the oldest pending view and
emitted ``wait`` seconds after that view arrived, complete or not: a sweep arriving meanwhile
(the LiDAR coming back) takes them instead.

A stamp that goes back by more than ``reset_jump`` seconds from the newest seen (a bag loop, a
clock jump) first drops everything pending stamped more than ``reset_jump`` after it: all of it
after a bag loop, only the stale "future" messages when a sensor's clock is put right
(``resets``), as the completion node's synchroniser does.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

NS_PER_S = 10**9  # ROS stamps in integer nanoseconds


@dataclass
class SweepSet:
    """One batch: ``views`` {camera: payload} in camera order, the ``sweep`` payload (None:
    camera-only), the live cameras without a view (``missing``) and the stamp it is built
    around."""

    sweep: Any | None
    views: dict[str, Any]
    missing: list[str]
    stamp_ns: int
    opened: float  # clock() when its first message arrived


@dataclass
class _Pending:
    stamp_ns: int
    payload: Any
    arrived: float


@dataclass
class AssemblerStats:
    sets: int = 0
    camera_only_sets: int = 0
    incomplete_sets: int = 0
    empty_sweeps: int = 0
    resets: int = 0
    unmatched: dict[str, int] = field(default_factory=dict)  # views dropped per camera


class SweepAssembler:
    """Thread-safe: ``add_view``, ``add_sweep`` and ``poll`` may be called from any thread; each
    returns the sets that became ready (call ``poll`` regularly so that ``wait`` runs out)."""

    def __init__(self, cameras: Sequence[str], *, slop: float, wait: float,
                 lidar_timeout: float, camera_timeout: float, queue_size: int = 10,
                 reset_jump: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not cameras:
            raise ValueError("a sweep assembler needs at least one camera")
        self.cameras = list(cameras)
        self.slop_ns = round(slop * NS_PER_S)  # seconds to nanoseconds
        self.wait = float(wait)
        self.lidar_timeout = float(lidar_timeout)
        self.camera_timeout = float(camera_timeout)
        self.queue_size = int(queue_size)
        self.reset_jump_ns = round(reset_jump * NS_PER_S)
        self._clock = clock
        self._lock = threading.Lock()
        self._views: dict[str, list[_Pending]] = {name: [] for name in self.cameras}
        self._sweeps: list[_Pending] = []
        self._started = clock()
        self._last_view: dict[str, float] = {}
        self._first_view: float | None = None
        self._last_sweep: float | None = None
        self._resumed: float | None = None  # first message after the start or a silence
        self._last_any = self._started
        self._newest_ns: int | None = None
        self.stats = AssemblerStats(unmatched=dict.fromkeys(self.cameras, 0))

    # -- inputs ------------------------------------------------------------------------------
    def add_view(self, camera: str, stamp_ns: int, payload: Any) -> list[SweepSet]:
        if camera not in self._views:
            raise KeyError(f"unknown camera {camera!r}; cameras: {self.cameras}")
        with self._lock:
            now = self._clock()
            self._check_jump(stamp_ns)
            self._first_view = self._first_view or now
            self._arrived(now)
            self._last_view[camera] = now
            queue = self._views[camera]
            queue.append(_Pending(stamp_ns, payload, now))
            queue.sort(key=lambda p: p.stamp_ns)
            while len(queue) > self.queue_size:
                queue.pop(0)
                self.stats.unmatched[camera] += 1
            return self._emit(now)

    def add_sweep(self, stamp_ns: int, payload: Any) -> list[SweepSet]:
        with self._lock:
            now = self._clock()
            self._check_jump(stamp_ns)
            self._arrived(now)
            self._last_sweep = now
            self._sweeps.append(_Pending(stamp_ns, payload, now))
            self._sweeps.sort(key=lambda p: p.stamp_ns)
            while len(self._sweeps) > self.queue_size:
                self._sweeps.pop(0)
                self.stats.empty_sweeps += 1
            return self._emit(now)

    def poll(self) -> list[SweepSet]:
        with self._lock:
            return self._emit(self._clock())

    # -- state -------------------------------------------------------------------------------
    def lidar_age(self) -> float:
        """Seconds since the last sweep (since the first view when none came; 0 before any)."""
        since = self._last_sweep or self._first_view
        return 0.0 if since is None else self._clock() - since

    def lidar_live(self) -> bool:
        return self.lidar_age() <= self.lidar_timeout

    def camera_age(self, camera: str) -> float:
        """Seconds since ``camera``'s last image (since the start when it never sent one)."""
        return self._clock() - self._last_view.get(camera, self._started)

    def live_cameras(self) -> list[str]:
        """The cameras a set waits for (see the module docstring)."""
        return [c for c in self.cameras
                if self._resumed is None or self._last_any - max(
                    self._last_view.get(c, self._resumed), self._resumed) <= self.camera_timeout]

    def stale(self) -> dict[str, float | None]:
        """{camera: seconds since its last image (None: never sent one)} of the stale cameras."""
        return {c: (self.camera_age(c) if c in self._last_view else None)
                for c in self.cameras if self.camera_age(c) > self.camera_timeout}

    def reset(self) -> None:
        with self._lock:
            self._reset_locked()

    # -- internals ---------------------------------------------------------------------------
    def _arrived(self, now: float) -> None:
        if self._resumed is None or now - self._last_any > self.camera_timeout:
            self._resumed = now
        self._last_any = now

    def _check_jump(self, stamp_ns: int) -> None:
        if self._newest_ns is not None and self._newest_ns - stamp_ns > self.reset_jump_ns:
            self._reset_locked(after_ns=stamp_ns + self.reset_jump_ns)
        if self._newest_ns is None or stamp_ns > self._newest_ns:
            self._newest_ns = stamp_ns

    def _reset_locked(self, after_ns: int | None = None) -> None:
        """Drop what is pending: all of it, or what is stamped later than ``after_ns``."""
        def stale(p: _Pending) -> bool:
            return after_ns is None or p.stamp_ns > after_ns
        for camera, queue in self._views.items():
            self.stats.unmatched[camera] += sum(map(stale, queue))
            queue[:] = [p for p in queue if not stale(p)]
        self.stats.empty_sweeps += sum(map(stale, self._sweeps))
        self._sweeps = [p for p in self._sweeps if not stale(p)]
        kept = [p.stamp_ns for q in [self._sweeps, *self._views.values()] for p in q]
        self._newest_ns = max(kept, default=None)
        self.stats.resets += 1

    def _nearest(self, camera: str, stamp_ns: int) -> _Pending | None:
        near = [p for p in self._views[camera] if abs(p.stamp_ns - stamp_ns) <= self.slop_ns]
        return min(near, key=lambda p: (abs(p.stamp_ns - stamp_ns), p.stamp_ns), default=None)

    def _gather(self, stamp_ns: int) -> dict[str, _Pending]:
        return {c: p for c in self.cameras if (p := self._nearest(c, stamp_ns)) is not None}

    def _take(self, sweep: _Pending | None, found: dict[str, _Pending], stamp_ns: int,
              opened: float, live: list[str]) -> SweepSet:
        for camera, pending in found.items():
            self._views[camera].remove(pending)
        missing = [c for c in live if c not in found]
        self.stats.sets += 1
        self.stats.camera_only_sets += sweep is None
        self.stats.incomplete_sets += bool(missing)
        return SweepSet(None if sweep is None else sweep.payload,
                        {c: p.payload for c, p in found.items()}, missing, stamp_ns, opened)

    def _expire_before(self, stamp_ns: int) -> None:
        for camera, queue in self._views.items():
            old = [p for p in queue if p.stamp_ns < stamp_ns - self.slop_ns]
            for pending in old:
                queue.remove(pending)
            self.stats.unmatched[camera] += len(old)

    def _emit(self, now: float) -> list[SweepSet]:
        out: list[SweepSet] = []
        live = self.live_cameras()
        while self._sweeps:  # around sweeps, oldest first
            sweep = self._sweeps[0]
            found = self._gather(sweep.stamp_ns)
            opened = min([sweep.arrived] + [p.arrived for p in found.values()])
            if not (all(c in found for c in live) or now - sweep.arrived >= self.wait):
                break
            self._sweeps.pop(0)
            if found:
                out.append(self._take(sweep, found, sweep.stamp_ns, opened, live))
            else:
                self.stats.empty_sweeps += 1
            self._expire_before(sweep.stamp_ns)
        if self._sweeps:
            return out
        if self.lidar_live():
            # A view whose sweep never came within ``wait`` is dropped (as the completion node
            # drops an image without a sweep while the LiDAR is live).
            for camera, queue in self._views.items():
                old = [p for p in queue if now - p.arrived >= self.wait]
                for pending in old:
                    queue.remove(pending)
                self.stats.unmatched[camera] += len(old)
            return out
        while True:  # camera-only: around the oldest pending view
            pending = [p for queue in self._views.values() for p in queue]
            if not pending:
                return out
            anchor = min(pending, key=lambda p: p.stamp_ns)
            found = self._gather(anchor.stamp_ns)
            opened = min(p.arrived for p in found.values())
            if now - opened < self.wait:
                return out
            out.append(self._take(None, found, anchor.stamp_ns, opened, live))
