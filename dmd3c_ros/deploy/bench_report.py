"""``dmd3c bench``'s report: the machine it ran on and the Markdown tables (in process, the
surround sweep, the node, the soak)."""
from __future__ import annotations

import importlib
import os
import platform
import sys

import cv2
import numpy as np

from dmd3c_ros.core.machine import cpu_cores, cpu_model
from dmd3c_ros.core import process
from dmd3c_ros.runtime import factory

from .bench_measure import STAGES


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # not installed, or broken
        return None


def machine_info() -> dict:
    """CPU, cores, load and library versions of this machine."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "cores_usable": cpu_cores(),
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "opencv": cv2.__version__,
            "onnxruntime": _version("onnxruntime"),
            **(process.applied() or {"malloc": "malloc as it comes (not set in this process)",
                                     "blas": "BLAS threads as they come (not set)"})}
    if "torch" in sys.modules:
        info["torch"] = _version("torch")
    if factory.tensorrt_installed():
        info["tensorrt"] = _version("tensorrt")
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def _cell(stage: dict | None) -> str:
    if stage is None:
        return "-"
    return " / ".join(f"{v:.2f}" if v < 10 else f"{v:.1f}"
                      for v in (stage["p50_ms"], stage["p95_ms"]))


def format_markdown(result: dict) -> str:
    """The report: a header, one table per resolution x batch, the node table, skips, notes."""
    m = result["machine"]
    lines = ["# dmd3c bench", "",
             f"- Machine: {m['cpu']}, {m['cores_usable']} of {m['cores']} cores usable, "
             f"{m['platform']}, Python {m['python']}, numpy {m['numpy']}, "
             f"onnxruntime {m['onnxruntime']}, OpenCV {m['opencv']}"
             + (f", load average {m['load_average']}" if "load_average" in m else ""),
             *([f"- Memory: {m['malloc']}"] if "malloc" in m else []),
             *([f"- BLAS: {m['blas']}"] if "blas" in m else []),
             f"- Command: `{result['command']}`",
             f"- Date: {result['date']}",
             f"- Frame: {result['data']} ({result['lidar_points']} LiDAR points); "
             f"{result['frames']} timed frames after {result['warmup']} warm-up per backend; "
             f"{result['interleave']}; ONNX Runtime {result['threads']} intra-op threads", ""]
    configs = list(dict.fromkeys((r["resolution"], r["batch"]) for r in result["runs"]))
    for resolution, batch in configs:
        runs = [r for r in result["runs"] if (r["resolution"], r["batch"]) == (resolution, batch)]
        stages = [s for s in STAGES + ("per_frame_ms",) if any(s in r["stages"] for r in runs)]
        unit = ("per frame" if batch == 1
                else f"per batch of {batch} (per frame = total / {batch})")
        header = " | ".join(s.replace("per_frame_ms", "per frame") for s in stages)
        lines += [f"## {resolution}, batch {batch}", "",
                  f"Milliseconds p50 / p95, {unit}.", "",
                  f"| backend | {header} |",
                  "|---|" + "---:|" * len(stages)]
        for run in runs:
            lines.append(f"| {run['backend']} | "
                         + " | ".join(_cell(run["stages"].get(s)) for s in stages) + " |")
        lines.append("")
    if "surround" in result:
        from dmd3c_ros.deploy.surround_bench import format_surround
        lines += format_surround(result["surround"], _cell)
    node = result.get("node")
    if node is not None:
        lines += ["## Node (publisher -> completion node process -> subscriber)", "",
                  "| backend | resolution | rate Hz | frames sent | answered | dropped | "
                  "in-node p50 / p95 ms | publish -> depth received p50 / p95 ms |",
                  "|---|---|---:|---:|---:|---:|---:|---:|",
                  f"| {node['backend']} | {node['resolution']} | {node['rate_hz']:g} | "
                  f"{node['frames_sent']} | {node['frames_answered']} | {node['dropped']} | "
                  f"{_pair(node['p50_ms'], node['p95_ms'])} | "
                  f"{_pair(node['subscriber_p50_ms'], node['subscriber_p95_ms'])} |", "",
                  f"In-node: image received -> depth published, from the node's /diagnostics "
                  f"(dropped inside the node: {node['node_dropped_frames']}).", ""]
        stages = node.get("node_stages_p50_ms") or {}
        if stages:
            lines += ["Inside the node, p50 ms per stage: " + ", ".join(
                f"{name} {value:.1f}" for name, value in stages.items()) + ".", ""]
    if "soak" in result:
        lines += format_soak(result["soak"])
    if result["skipped"]:
        lines += ["Skipped:", ""] + [f"- {label}: {why}" for label, why in
                                     result["skipped"].items()] + [""]
    if result["notes"]:
        lines += ["Notes:", ""] + [f"- {note}" for note in result["notes"]] + [""]
    return "\n".join(lines)


def _pair(p50, p95) -> str:
    if p50 is None or p95 is None:
        return "-"
    return _cell({"p50_ms": p50, "p95_ms": p95})


def _number(value, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def format_soak(soak: dict) -> list[str]:
    """The soak section: a table of the samples, then the summary lines."""
    lines = [f"## Soak ({soak['seconds']:g} s at {soak['rate_hz']:g} Hz, a sample every "
             f"{soak['interval_s']:g} s)", "",
             "| t s | RSS MiB | CPU s | CPU % of a core | in-node p50 / p95 ms | "
             "publish -> depth p50 / p95 ms | sent | answered | dropped | load (1 min) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in soak["samples"]:
        lines.append(f"| {s['t_s']:.1f} | {_number(s['rss_mib'])} | {_number(s['cpu_s'])} | "
                     f"{_number(s['cpu_pct'], 0)} | {_pair(s['node_p50_ms'], s['node_p95_ms'])} "
                     f"| {_pair(s['sub_p50_ms'], s['sub_p95_ms'])} | {s['sent']} | "
                     f"{s['answered']} | {s.get('dropped', '-')} | "
                     f"{_number(s.get('load_1m'), 2)} |")
    drift = soak["p95_drift"]
    lines += ["",
              f"- Memory: {soak['memory']}." if soak["rss_first_mib"] is None else
              f"- Node RSS: {_number(soak['rss_first_mib'])} MiB at "
              f"{soak['rss_first_t_s']:.0f} s -> {_number(soak['rss_last_mib'])} MiB at the end: "
              f"growth {_number(soak['rss_growth_mib'], 1, ' MiB')} "
              f"(slope after the warm-up {_number(soak['rss_slope_mib_per_min'], 2)} MiB/min; "
              f"max {_number(soak['rss_max_mib'])} MiB); baseline: {soak['rss_baseline']}.",
              f"- Publish -> depth p95: {_number(soak['p95_first_minute_ms'], 1, ' ms')} "
              f"({soak['p95_first_frames']} frames) at the start, "
              f"{_number(soak['p95_last_minute_ms'], 1, ' ms')} ({soak['p95_last_frames']} "
              f"frames) at the end: drift {_number(None if drift is None else 100 * drift, 1)}%"
              f" ({soak['p95_windows']}).",
              f"- Frames: {soak['sent']} sent, {soak['answered']} answered, {soak['dropped']} "
              "dropped.",
              f"- In-node figures cover the node's last {soak['node_window_frames']} frames "
              f"(about {soak['node_window_s']:g} s at {soak['rate_hz']:g} Hz).", ""]
    return lines
