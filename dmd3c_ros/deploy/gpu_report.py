"""The report of ``dmd3c gpu-check`` (:mod:`.gpu_check`): ``gpu_check.json`` (the summary as
it is) and ``gpu_check.md`` (one section per step, the issue-19 figures first)."""
from __future__ import annotations

from pathlib import Path

from dmd3c_ros.core.io import write_json


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _m(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(header: str, rows: list[str], intro: tuple[str, ...] = ()) -> list[str]:
    """A Markdown table: ``header`` "| a | b |" (first column left, the others right-aligned)."""
    columns = header.count("|") - 1
    return [*intro, header, "|---|" + "---:|" * (columns - 1), *rows]


def _engines(step: dict) -> list[str]:
    rows = []
    for key, engine in step.get("engines", {}).items():
        parity = engine.get("parity") or {}
        rows.append(f"| {key} | {_ms(engine.get('build_seconds'))} | "
                    f"{_m(parity.get('mean_abs_m'))} | {_m(parity.get('max_abs_m'))} | "
                    f"{_m(parity.get('max_abs_edge_m'))} | "
                    f"{_m(parity.get('max_abs_interior_m'))} | "
                    f"{parity.get('nan_mismatch_px', '-')} |")
    return _table("| engine | build s | mean abs diff m | max abs diff m | at depth edges m | "
                  "elsewhere m | NaN mismatch px |", rows)


def _timing(step: dict) -> list[str]:
    rows = [f"| {label} | {t['input']} | {t['runs']} | {_ms(t['p50_ms'])} | {_ms(t['p95_ms'])} |"
            for label, t in step.get("timings", {}).items()]
    return _table("| engine | input | runs | p50 ms | p95 ms |", rows,
                  (step.get("what", ""), ""))


def _node(step: dict) -> list[str]:
    return [f"- backend {step.get('backend')}, {step.get('resolution')} at "
            f"{step.get('rate_hz')} Hz for {step.get('stream_seconds')} s, "
            f"frame {step.get('frame')}",
            f"- in-node p50 / p95: {_ms(step.get('p50_ms'))} / {_ms(step.get('p95_ms'))} ms; "
            f"answered {step.get('frames_answered')} of {step.get('frames_sent')}",
            f"- node stages p50 ms: {step.get('node_stages_p50_ms')}"]


def _accuracy(step: dict) -> list[str]:
    rows = [f"| {label} | {f['rmse_mm']:.1f} | {f['mae_mm']:.1f} | "
            f"{100.0 * f['rmse_change']:+.2f} % |" for label, f in step.get("figures", {}).items()]
    return _table("| run | RMSE mm | MAE mm | RMSE change |", rows,
                  (f"Frame: {step.get('frame')}", ""))


def _tests(step: dict) -> list[str]:
    return [f"- `{step.get('command')}`: exit code {step.get('exit_code')}",
            f"- {step.get('summary')}"]


SECTIONS = {"engines": _engines, "timing": _timing, "node": _node, "accuracy": _accuracy,
            "gpu_tests": _tests}


def format_report(summary: dict) -> str:
    steps = summary["steps"]
    lines = ["# dmd3c gpu-check", "",
             f"- Date: {summary['date']}; {summary['seconds']:.0f} s in all"
             + ("; **dry run** (no GPU: the GPU steps are skipped, the timing, node and "
                "accuracy steps ran on ONNX Runtime on the CPU)" if summary["dry_run"] else ""),
             f"- Command: `{summary.get('command')}`"]
    gpu = steps.get("gpu", {})
    if gpu.get("status") == "ok":
        lines.append(f"- GPU: {'; '.join(gpu['gpus'])}; TensorRT {gpu['tensorrt']}")
    lines += ["", "| step | status | seconds | note |", "|---|---|---:|---|"]
    for name, step in steps.items():
        note = step.get("reason") or step.get("error") or ""
        lines.append(f"| {name} | {step['status']} | {step['seconds']:.1f} | {note} |")
    for name, render in SECTIONS.items():
        step = steps.get(name, {})
        if step.get("status") == "ok":
            lines += ["", f"## {name}", "", *render(step)]
    return "\n".join(lines) + "\n"


def write_report(out, summary: dict) -> tuple[Path, Path]:
    out = Path(out)
    json_path = write_json(out / "gpu_check.json", summary)
    md_path = out / "gpu_check.md"
    md_path.write_text(format_report(summary))
    return Path(json_path), md_path


__all__ = ["format_report", "write_report"]
