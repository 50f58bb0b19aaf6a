"""Diagnostics: throttled fault reporting and diagnostic_msgs/DiagnosticStatus building."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

OK, WARN, ERROR = 0, 1, 2
_LEVEL_BYTES = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR}


@dataclass
class Fault:
    kind: str
    level: int
    message: str
    last_seen: float  # time.monotonic()
    count: int = 1


class FaultLog:
    """Faults by kind: each kind is logged at most once per ``throttle_s`` (with a count of the
    occurrences in between) and shown in diagnostics while seen within ``active_s``."""

    def __init__(self, logger, throttle_s: float = 5.0, active_s: float = 3.0) -> None:
        self._logger = logger
        self._throttle_s = throttle_s
        self._active_s = active_s
        self._faults: dict[str, Fault] = {}
        self._logged: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def report(self, kind: str, level: int, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            fault = self._faults.get(kind)
            if fault is None:
                fault = self._faults[kind] = Fault(kind, level, message, now, 0)
            fault.level, fault.message, fault.last_seen = level, message, now
            fault.count += 1
            last_time, last_count = self._logged.get(kind, (float("-inf"), 0))
            if now - last_time < self._throttle_s:
                return
            self._logged[kind] = (now, fault.count)
        repeats = fault.count - last_count - 1
        text = message + (f" ({repeats} more since the last report)" if repeats > 0 else "")
        # rclpy ties a logging call site to one severity: one call per severity.
        if level >= ERROR:
            self._logger.error(text)
        else:
            self._logger.warning(text)

    def active(self) -> list[Fault]:
        """Faults seen within the last ``active_s`` seconds, worst first."""
        now = time.monotonic()
        with self._lock:
            faults = [f for f in self._faults.values() if now - f.last_seen <= self._active_s]
        return sorted(faults, key=lambda f: -f.level)

    def clear(self) -> None:
        """Forget every fault (counts included)."""
        with self._lock:
            self._faults.clear()
            self._logged.clear()

    def total(self) -> int:
        with self._lock:
            return sum(f.count for f in self._faults.values())


def make_status(name: str, hardware_id: str, level: int, message: str,
                values: dict[str, object]) -> DiagnosticStatus:
    """A DiagnosticStatus with ``values`` as key/value strings (floats to 3 decimals)."""
    def text(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)
    return DiagnosticStatus(level=_LEVEL_BYTES[level], name=name, hardware_id=hardware_id,
                            message=message,
                            values=[KeyValue(key=k, value=text(v)) for k, v in values.items()])
