"""The report's two charts, error against distance and the latency histogram, drawn on
matplotlib's Agg canvas without pyplot, so no global backend state is touched."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

DISTANCE_BIN_M = 5.0  # bin width of the error-against-distance figure, metres


def _save_chart(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)


def _error_vs_distance(distance_errors: Mapping[str, tuple], path: Path) -> dict[str, int] | None:
    """Mean |error| per DISTANCE_BIN_M bin per NAME, with pixel counts. Returns pixels per NAME,
    None (and no figure) when no NAME has a finite sample."""
    clean = {}
    for name, (gt, err) in distance_errors.items():
        gt = np.asarray(gt, dtype=np.float64).ravel()
        err = np.abs(np.asarray(err, dtype=np.float64).ravel())
        if gt.shape != err.shape:
            raise ValueError(f"distance_errors[{name!r}]: {gt.shape} depths, {err.shape} errors")
        ok = np.isfinite(gt) & (gt > 0) & np.isfinite(err)
        if ok.any():
            clean[name] = (gt[ok], err[ok])
    if not clean:
        return None
    from matplotlib.figure import Figure
    top = max(float(g.max()) for g, _ in clean.values())
    edges = np.arange(0.0, math.floor(top / DISTANCE_BIN_M) * DISTANCE_BIN_M + DISTANCE_BIN_M * 1.5,
                      DISTANCE_BIN_M)
    centres = 0.5 * (edges[:-1] + edges[1:])
    fig = Figure(figsize=(8, 5.5))
    ax_err, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    for name, (gt, err) in clean.items():
        idx = np.clip(np.digitize(gt, edges) - 1, 0, len(centres) - 1)
        counts = np.bincount(idx, minlength=len(centres))
        sums = np.bincount(idx, weights=err, minlength=len(centres))
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        ax_err.plot(centres, mean, marker="o", label=name)
        ax_n.step(centres, counts, where="mid", label=name)
    ax_err.set_ylabel("mean |error| [m]")
    ax_err.set_title(f"Absolute error against ground-truth distance ({DISTANCE_BIN_M:g} m bins)")
    ax_err.grid(alpha=0.3)
    ax_err.legend()
    ax_n.set_ylabel("pixels")
    ax_n.set_yscale("log")
    ax_n.set_xlabel("ground-truth depth [m]")
    ax_n.grid(alpha=0.3)
    fig.tight_layout()
    _save_chart(fig, path)
    return {name: int(g.size) for name, (g, _) in clean.items()}


def _latency_hist(latencies: Mapping[str, Sequence[float]], path: Path) -> bool:
    clean = {n: v[np.isfinite(v)] for n, v in
             ((n, np.asarray(v, dtype=np.float64).ravel()) for n, v in latencies.items())}
    clean = {n: v for n, v in clean.items() if v.size}
    if not clean:
        return False
    from matplotlib.figure import Figure
    allv = np.concatenate(list(clean.values()))
    lo, hi = float(allv.min()), float(allv.max())
    if hi - lo < 1e-3:  # all frames equally fast: one visible bar
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 41)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for i, (name, v) in enumerate(clean.items()):
        colour = f"C{i % 10}"
        ax.hist(v, bins=bins, histtype="stepfilled", alpha=0.35, color=colour,
                label=f"{name} (n={v.size})")
        ax.axvline(float(np.percentile(v, 50)), color=colour, linestyle="--", linewidth=1)
        ax.axvline(float(np.percentile(v, 95)), color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("latency per frame [ms]  (dashed: p50, dotted: p95)")
    ax.set_ylabel("frames")
    ax.set_title("Latency histogram")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save_chart(fig, path)
    return True


__all__ = ["DISTANCE_BIN_M"]
