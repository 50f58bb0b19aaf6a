"""Soak figures of ``dmd3c bench --node --soak``: the node process's memory and CPU time (Linux
/proc), its /diagnostics latency and the stream's own latency, sampled every interval
(``SoakRecorder``), and the growth and drift figures made of them (``soak_summary``). No rclpy:
the samples come from ``ros.feeder.StreamDriver``'s reports, driven by ``ros.bench.run_node``.
"""
from __future__ import annotations

import inspect
import os
import time
from typing import Callable, Sequence

import numpy as np

from dmd3c_ros.core.io import json_safe
from dmd3c_ros.core.stats import RollingStats

# The node keeps its latency in a RollingStats of the default window (completion_node.py).
NODE_WINDOW = int(inspect.signature(RollingStats).parameters["window"].default)


def diagnostic_number(report, key: str) -> float | int | None:
    """A /diagnostics value as a number (an int when it is one), None when absent or NaN."""
    value = report.diagnostic_value(key)
    try:
        return int(value)
    except (TypeError, ValueError):
        pass
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


# ------------------------------------------------------------------------------------- soak

SOAK_MEASURED = (
    "every sample covers the time since the previous one (the first: since the stream started; "
    "the last: up to the end of the drain and a 1.5 s wait for fresh diagnostics). rss_mib: the "
    "node process's VmRSS (/proc/<pid>/status) at the sample; cpu_s: its utime + stime "
    "(/proc/<pid>/stat) since it started, cpu_pct: that CPU time over the interval, in percent "
    "of one core; node_p50_ms / node_p95_ms: the node's /diagnostics latency_p50_ms / "
    "latency_p95_ms (image received -> depth published; published once a second) over its last "
    "{window} published frames, i.e. about the last {window_s:g} s at {rate:g} Hz, so samples "
    "closer than that overlap and the first ones include the warm-up frames; node_published / "
    "node_dropped: the node's frames_published / dropped_frames counters; load_1m: the "
    "machine's 1-minute load average at the sample; sub_p50_ms / "
    "sub_p95_ms: this process, image published -> depth received, over the frames answered in "
    "the interval; sent: frames published in the interval; answered: depths received in the "
    "interval; dropped: frames sent in the interval that never got a depth")
RSS_NOT_MEASURED = "not measured: no /proc/<pid> (Linux only)"


def process_rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (VmRSS of /proc/<pid>/status); None where there
    is no /proc (not Linux) or the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0  # kB to MiB
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_cpu_s(pid: int) -> float | None:
    """CPU time (user + system, all threads) of process ``pid`` in seconds since it started,
    from /proc/<pid>/stat; None where there is no /proc or the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
        # Fields after the command name (which may hold spaces, hence the last ')'): state is
        # field 3 of proc(5), utime 14 and stime 15, in clock ticks.
        fields = text[text.rindex(")") + 2:].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")  # clock ticks to seconds
    except (OSError, ValueError, IndexError):
        return None


def _load_average() -> float | None:
    """This machine's 1-minute load average (None where the OS has none): a soak on a busy
    machine shows it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(p50, p95) of ``values``, (None, None) when empty."""
    if not len(values):
        return None, None
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
    return float(p50), float(p95)


def interval_figures(frames, start_s: float, end_s: float) -> dict:
    """The stream in the monotonic interval (start_s, end_s]: frames sent, depths received,
    frames sent that have no depth (yet), and the publish -> received p50/p95 (ms) of the
    frames answered in it. ``frames``: feeder.SentFrame-like records (sent_s, received_s)."""
    sent = [f for f in frames if start_s < f.sent_s <= end_s]
    answered = [f.latency_ms for f in frames
                if f.received_s is not None and start_s < f.received_s <= end_s]
    p50, p95 = _percentiles(answered)
    return {"sent": len(sent), "answered": len(answered),
            "dropped": sum(f.received_s is None for f in sent),
            "sub_p50_ms": p50, "sub_p95_ms": p95}


class SoakRecorder:
    """Samples a soak every ``interval_s`` seconds of a ``StreamDriver.run``: pass ``progress``
    as its progress callback (with a short ``progress_every_s``), call ``start`` just before the
    run and ``sample`` once more at the end. Samples fall at interval_s, 2 interval_s, ... while
    the stream runs (strictly before ``seconds``); the final one covers the rest."""

    def __init__(self, driver, pid: int, *, seconds: float, interval_s: float, rate_hz: float,
                 say: Callable[[str], None] = print) -> None:
        if interval_s <= 0:
            raise ValueError(f"the soak interval must be positive, got {interval_s}")
        self.driver, self.pid, self.say = driver, int(pid), say
        self.seconds, self.interval_s, self.rate_hz = float(seconds), float(interval_s), rate_hz
        self.samples: list[dict] = []
        self._bounds: list[tuple[float, float]] = []  # monotonic (start, end] of every sample
        self.start_s: float | None = None
        self._next_s = self.interval_s

    def start(self) -> None:
        self.start_s = time.monotonic()
        self._last = (self.start_s, process_cpu_s(self.pid))

    def progress(self, sent: int, answered: int, elapsed_s: float) -> None:
        """StreamDriver.run's progress callback: a sample when the next one is due."""
        if elapsed_s >= self._next_s and self._next_s < self.seconds:
            while self._next_s <= elapsed_s:  # one sample, even if the loop was held up
                self._next_s += self.interval_s
            self.sample()

    def sample(self) -> dict:
        """Take a sample now (the node's memory and CPU time, its latest diagnostics, the
        stream since the previous sample) and say it."""
        now = time.monotonic()
        rss, cpu = process_rss_mib(self.pid), process_cpu_s(self.pid)
        report = self.driver.report()
        start, last_cpu = self._last
        figures = interval_figures(report.frames, start, now)
        cpu_pct = (100.0 * (cpu - last_cpu) / (now - start)  # share of one core, percent
                   if cpu is not None and last_cpu is not None and now > start else None)
        sample = {"t_s": now - self.start_s, "rss_mib": rss, "cpu_s": cpu, "cpu_pct": cpu_pct,
                  "node_p50_ms": diagnostic_number(report, "latency_p50_ms"),
                  "node_p95_ms": diagnostic_number(report, "latency_p95_ms"),
                  "node_published": diagnostic_number(report, "frames_published"),
                  "node_dropped": diagnostic_number(report, "dropped_frames"),
                  "load_1m": _load_average(), **figures}
        self.samples.append(sample)
        self._bounds.append((start, now))
        self._last = (now, cpu)
        self.say(format_sample(sample))
        return sample

    def summary(self, report) -> dict:
        """The ``soak`` block from the samples and the run's final ``report`` (StreamReport)."""
        samples = []
        for sample, (start, end) in zip(self.samples, self._bounds):
            # Sent and answered cannot change; dropped now means never answered.
            samples.append({**sample, **interval_figures(report.frames, start, end)})
        return soak_summary(samples, report.frames, start_s=self.start_s, seconds=self.seconds,
                            interval_s=self.interval_s, rate_hz=self.rate_hz, pid=self.pid,
                            sent=report.frames_sent, answered=report.frames_answered)


def _cell(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_sample(sample: dict) -> str:
    """A soak sample as one progress line."""
    rss = "not measured" if sample["rss_mib"] is None else f"{sample['rss_mib']:.1f} MiB"
    return (f"  soak {sample['t_s']:6.1f} s: RSS {rss}, CPU {_cell(sample['cpu_s'])} s "
            f"({_cell(sample['cpu_pct'], 0)}% of a core), in-node p50/p95 "
            f"{_cell(sample['node_p50_ms'])}/{_cell(sample['node_p95_ms'])} ms, publish -> depth "
            f"p50/p95 {_cell(sample['sub_p50_ms'])}/{_cell(sample['sub_p95_ms'])} ms, "
            f"{sample['sent']} sent, {sample['answered']} answered")


def soak_summary(samples: list[dict], frames, *, start_s: float, seconds: float,
                 interval_s: float, rate_hz: float, sent: int, answered: int,
                 pid: int | None = None) -> dict:
    """Growth and drift of a soak of ``seconds`` (stream start ``start_s``, monotonic) from its
    ``samples`` (SoakRecorder.sample dicts, in order) and every frame record of the stream.

    Memory: rss_growth_mib = last sample - the first sample after the warm-up. The warm-up is
    the first minute when the run lasts 2 minutes or more (the baseline is the first sample at
    t >= 60 s), else the first sample's interval (the baseline is the first sample).
    Latency: p95 of publish -> depth received over the frames answered in the first and in the
    last 60 s of the stream (by receive time; the last window runs from ``seconds`` - 60 s to
    the end of the drain); runs shorter than 2 minutes use their first and last quarter.
    p95_drift = last / first - 1.
    """
    long_run = seconds >= 120.0
    window = 60.0 if long_run else seconds / 4.0
    answered_at = [(f.received_s - start_s, f.latency_ms) for f in frames
                   if f.received_s is not None]
    first = [ms for t, ms in answered_at if t < window]
    last = [ms for t, ms in answered_at if t >= seconds - window]
    p95_first, p95_last = _percentiles(first)[1], _percentiles(last)[1]
    drift = (p95_last / p95_first - 1.0 if p95_first and p95_last is not None else None)

    measured = [s for s in samples if s["rss_mib"] is not None]
    baseline = next((s for s in measured if s["t_s"] >= 60.0), None) if long_run else None
    baseline = baseline or (measured[0] if measured else None)
    rss_first = baseline["rss_mib"] if baseline else None
    rss_last = measured[-1]["rss_mib"] if measured else None
    after = [s for s in measured if baseline is not None and s["t_s"] >= baseline["t_s"]]
    slope = None
    if len(after) >= 2 and after[-1]["t_s"] > after[0]["t_s"]:
        t = np.array([s["t_s"] for s in after]) / 60.0  # s to min
        slope = float(np.polyfit(t, np.array([s["rss_mib"] for s in after]), 1)[0])
    window_note = ("the first and the last 60 s" if long_run else
                   f"the first and the last quarter ({window:g} s each): the run is shorter "
                   "than 2 minutes")
    return json_safe({
        "samples": samples,
        "rss_first_mib": rss_first, "rss_last_mib": rss_last,
        "rss_growth_mib": (rss_last - rss_first if rss_first is not None
                           and rss_last is not None else None),
        "rss_first_t_s": baseline["t_s"] if baseline else None,
        "rss_max_mib": max((s["rss_mib"] for s in measured), default=None),
        "rss_slope_mib_per_min": slope,
        "rss_baseline": ("the first sample at or after 60 s (the first minute is warm-up)"
                         if long_run else "the first sample (its interval is the warm-up): "
                         "the run is shorter than 2 minutes"),
        "memory": ("VmRSS of /proc/<pid>/status, CPU time from /proc/<pid>/stat" if measured
                   else RSS_NOT_MEASURED),
        "p95_first_minute_ms": p95_first, "p95_last_minute_ms": p95_last, "p95_drift": drift,
        "p95_window_s": window, "p95_first_frames": len(first), "p95_last_frames": len(last),
        "p95_windows": f"publish -> depth received of the frames answered in {window_note}",
        "answered": answered, "sent": sent, "dropped": sent - answered,
        "seconds": seconds, "interval_s": interval_s, "rate_hz": rate_hz,
        "node_window_frames": NODE_WINDOW, "node_window_s": NODE_WINDOW / rate_hz,
        "node_pid": pid,
        "measured": SOAK_MEASURED.format(window=NODE_WINDOW, window_s=NODE_WINDOW / rate_hz,
                                         rate=rate_hz)})


# ------------------------------------------------------------------------------------- node
