"""What ``dmd3c eval`` writes: the strict-JSON summary and the Markdown report with its figures."""
from __future__ import annotations

from pathlib import Path

from .records import clean


def run_notes(run: dict) -> list[str]:
    """Lines for the report that say how the figures were made (from the summary's "run")."""
    lines = []
    if run.get("mode") == "live":
        lines.append("Live: the bag played through the completion node (one process per model).")
    if run.get("gt"):
        cap = run.get("gt_max_depth_m")
        lines.append(f"Ground truth: {run['gt']}; " + (
            f"only ground-truth pixels at most {cap:g} m away are scored." if cap is not None
            else "every ground-truth pixel is scored (no distance cap)."))
    if run.get("input_mode") == "mono":
        lines.append("LiDAR input: none. Mono mode: the networks got an all-zero sparse input.")
    elif run.get("lidar_input"):
        lines.append(f"LiDAR input: {run['lidar_input']} (completion mode).")
    if run.get("depth_range_m"):
        low, high = run["depth_range_m"]
        lines.append(f"Predictions outside {low:g}-{high:g} m count as no value (filled before "
                     "scoring, as the KITTI devkit does).")
    skipped = {k: v for k, v in (run.get("skipped") or {}).items() if v}
    if skipped:
        lines.append("Frames skipped: " + ", ".join(f"{v} ({k.replace('_', ' ')})"
                                                     for k, v in skipped.items()) + ".")
    return lines

def write_json(path, summary: dict) -> Path:
    """Write the summary as strict JSON (NaN as null); returns the path."""
    import json
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(summary), indent=2, allow_nan=False) + "\n")
    return path


def write_report_if_available(out_dir, summary, visuals, distance, latencies, *, title: str,
                              command: str) -> Path | None:
    """``report.write_report`` into ``out_dir`` when the report module is installed, else None."""
    try:
        from .report import write_report
    except ImportError:
        return None
    return write_report(out_dir, summary["results"], visuals, distance, latencies, title, command,
                        setup=run_notes(summary.get("run") or {}))


__all__ = ["run_notes", "write_json", "write_report_if_available"]
