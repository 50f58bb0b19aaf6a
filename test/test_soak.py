"""`dmd3c bench --soak`: memory and latency of the completion node over time.

One short soak through a real completion node process (classical backend, synthetic frame, a
private machine-local graph as in test_bench.py's node test), checked for the JSON structure only;
the summary arithmetic (windows, warm-up baseline, per-interval counts) on records made here; and
the /proc readers. No timing or memory thresholds: figures only have to be there and finite.
"""
import json
import math
import os
import sys
from dataclasses import dataclass

import pytest

from dmd3c_ros.cli import main

pytest.importorskip("rclpy")
from dmd3c_ros.ros import bench as ros_bench  # noqa: E402  (needs rclpy)
from dmd3c_ros.deploy import bench  # noqa: E402

LINUX = sys.platform.startswith("linux") and os.path.isdir("/proc/self")
SAMPLE_KEYS = {"t_s", "rss_mib", "cpu_s", "node_p50_ms", "node_p95_ms", "sub_p50_ms",
               "sub_p95_ms", "sent", "answered"}
SUMMARY_KEYS = {"samples", "rss_first_mib", "rss_last_mib", "rss_growth_mib",
                "p95_first_minute_ms", "p95_last_minute_ms", "p95_drift", "answered", "sent",
                "dropped"}


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_soak_through_a_real_node_process(tmp_path):
    """--soak 6 --soak-interval 2: samples at 2 s and 4 s while streaming, one at the end."""
    from dmd3c_ros.ros.graph import free_domain_id
    out, markdown = tmp_path / "soak.json", tmp_path / "soak.md"
    code = main(["bench", "--synthetic", "--frames", "1", "--warmup", "0",
                 "--backend", "classical", "--node-backend", "classical", "--rate", "10",
                 "--soak", "6", "--soak-interval", "2", "--domain-id", str(free_domain_id()),
                 "--json", str(out), "--markdown", str(markdown)])
    result, text = json.loads(out.read_text()), markdown.read_text()
    assert code == 0, result["notes"]
    node, soak = result["node"], result["soak"]
    # The node block keeps its keys; the soak block sits beside it.
    assert set(node) >= {"backend", "p50_ms", "p95_ms", "dropped", "frames", "measured"}
    assert "soak" not in node and node["seconds"] == 6
    assert set(soak) >= SUMMARY_KEYS
    samples = soak["samples"]
    assert len(samples) >= 2
    times = [s["t_s"] for s in samples]
    assert times == sorted(times) and times[0] > 0
    for sample in samples:
        assert set(sample) >= SAMPLE_KEYS | {"cpu_pct", "dropped", "load_1m"}
        assert sample["sent"] >= 0 and sample["answered"] >= 0
        for key in ("node_p50_ms", "node_p95_ms"):
            assert sample[key] is None or finite(sample[key]), (key, sample)
        if sample["answered"]:
            assert finite(sample["sub_p50_ms"]) and finite(sample["sub_p95_ms"])
        if LINUX:
            assert sample["rss_mib"] > 0 and sample["cpu_s"] >= 0
    assert sum(s["sent"] for s in samples) == soak["sent"] == node["frames_sent"]
    assert sum(s["answered"] for s in samples) == soak["answered"] == node["frames_answered"]
    assert soak["answered"] > 0 and soak["dropped"] == soak["sent"] - soak["answered"]
    assert finite(samples[-1]["node_p50_ms"]) and finite(samples[-1]["node_p95_ms"])
    assert finite(soak["p95_first_minute_ms"]) and finite(soak["p95_last_minute_ms"])
    assert finite(soak["p95_drift"])
    assert soak["p95_window_s"] == 1.5 and "quarter" in soak["p95_windows"]
    if LINUX:
        assert soak["rss_first_mib"] > 0 and soak["rss_last_mib"] > 0
        assert soak["rss_growth_mib"] == pytest.approx(soak["rss_last_mib"]
                                                       - soak["rss_first_mib"])
    assert soak["node_window_frames"] == ros_bench.NODE_WINDOW
    assert "--soak 6.0 --soak-interval 2.0" in result["command"]
    assert "## Soak (6 s at 10 Hz, a sample every 2 s)" in text
    assert text.count("\n| ") >= len(samples) + 1  # a row per sample under the header


@dataclass
class Record:  # the feeder.SentFrame fields the summary reads
    sent_s: float
    received_s: float | None

    @property
    def latency_ms(self):
        return None if self.received_s is None else (self.received_s - self.sent_s) * 1000.0


def _samples(times, rss):
    return [{"t_s": t, "rss_mib": r, "cpu_s": None, "cpu_pct": None, "node_p50_ms": None,
             "node_p95_ms": None, "sub_p50_ms": None, "sub_p95_ms": None, "sent": 0,
             "answered": 0} for t, r in zip(times, rss)]


def test_summary_of_a_long_run_uses_minutes_and_a_one_minute_warm_up():
    # 180 s at 1 Hz: 20 ms answers in the first minute, 30 ms in the last, one frame lost.
    start = 1000.0
    records = [Record(start + t, start + t + (0.02 if t < 60 else 0.03 if t >= 120 else 0.025))
               for t in range(180)]
    records[100].received_s = None
    samples = _samples(range(30, 181, 30), [100.0, 160.0, 161.0, 162.0, 163.0, 164.0])
    soak = ros_bench.soak_summary(samples, records, start_s=start, seconds=180.0,
                                  interval_s=30.0, rate_hz=1.0, sent=180, answered=179)
    assert soak["rss_first_t_s"] == 60 and soak["rss_first_mib"] == 160.0
    assert soak["rss_last_mib"] == 164.0 and soak["rss_growth_mib"] == pytest.approx(4.0)
    assert soak["rss_max_mib"] == 164.0
    assert soak["rss_slope_mib_per_min"] == pytest.approx(1.0 / 0.5)  # 1 MiB per 30 s
    assert soak["p95_window_s"] == 60.0
    assert soak["p95_first_frames"] == 60 and soak["p95_last_frames"] == 60
    assert soak["p95_first_minute_ms"] == pytest.approx(20.0)
    assert soak["p95_last_minute_ms"] == pytest.approx(30.0)
    assert soak["p95_drift"] == pytest.approx(0.5)
    assert (soak["sent"], soak["answered"], soak["dropped"]) == (180, 179, 1)
    assert soak["node_window_s"] == ros_bench.NODE_WINDOW  # frames at 1 Hz


def test_summary_of_a_short_run_uses_quarters_and_the_first_sample():
    start = 0.0
    records = [Record(t / 10, t / 10 + 0.05) for t in range(400)]  # 40 s at 10 Hz
    soak = ros_bench.soak_summary(_samples([10, 20, 30, 42], [50.0, 52.0, 51.0, 55.0]), records,
                                  start_s=start, seconds=40.0, interval_s=10.0, rate_hz=10.0,
                                  sent=400, answered=400)
    assert soak["p95_window_s"] == 10.0 and "quarter" in soak["p95_windows"]
    assert soak["rss_first_t_s"] == 10 and soak["rss_growth_mib"] == pytest.approx(5.0)
    assert soak["p95_drift"] == pytest.approx(0.0, abs=1e-9)
    assert "shorter than 2 minutes" in soak["rss_baseline"]


def test_without_proc_the_memory_is_not_measured():
    soak = ros_bench.soak_summary(_samples([10, 20], [None, None]), [], start_s=0.0,
                                  seconds=20.0, interval_s=10.0, rate_hz=10.0, sent=0,
                                  answered=0)
    assert soak["rss_first_mib"] is None and soak["rss_growth_mib"] is None
    assert soak["memory"] == ros_bench.RSS_NOT_MEASURED
    assert soak["p95_drift"] is None
    text = "\n".join(bench.format_soak(soak))
    assert "not measured" in text and "drift -%" in text


def test_interval_figures_count_what_happened_in_the_interval():
    records = [Record(1.0, 1.5), Record(2.0, 3.5), Record(2.5, None), Record(3.2, 3.3)]
    figures = ros_bench.interval_figures(records, 1.9, 3.0)
    assert (figures["sent"], figures["answered"], figures["dropped"]) == (2, 0, 1)
    assert figures["sub_p50_ms"] is None
    later = ros_bench.interval_figures(records, 3.0, 4.0)
    assert (later["sent"], later["answered"]) == (1, 2)
    assert later["sub_p50_ms"] == pytest.approx((1500.0 + 100.0) / 2)


def test_proc_readers():
    if LINUX:
        assert ros_bench.process_rss_mib(os.getpid()) > 0
        assert ros_bench.process_cpu_s(os.getpid()) > 0
    gone = 2 ** 22 + 1  # above Linux's pid_max limit: no such process anywhere
    assert ros_bench.process_rss_mib(gone) is None and ros_bench.process_cpu_s(gone) is None
