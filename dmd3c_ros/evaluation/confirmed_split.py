"""Held-out LiDAR returns that stereo confirms, scored apart from those it does not.

``python -m dmd3c_ros.evaluation.confirmed_split --kitti DIR [--fraction 0.2] [--seeds 0:10]
--backend B [--model YAML] ... [--tolerance 0.05] [--json PATH]``

A LiDAR split (``split_seeds``) scores a completion on returns held out of its input, but not
every return is what the camera sees: the LiDAR sits elsewhere than the camera and reaches
surfaces behind a foreground's edge, and reflections and beams split by an edge return depths
no camera pixel has. KITTI's depth-completion ground truth (``groundtruth_0i.png``) is made of
the same sweeps, accumulated over 11 frames and kept only where stereo agrees. So on a KITTI
depth-completion frame folder each held-out pixel of the official sparse map
(``velodyne_raw_0i.png``) falls in one group:

- ``confirmed``: the ground truth keeps its return (the same depth within ``tolerance``);
- ``moved``: the ground truth has another depth at that pixel;
- ``dropped``: the ground truth has nothing there (stereo did not confirm the return, or had no
  answer there: beside an edge only one camera sees, on a textureless surface).

For every frame and seed, ``fraction`` of the sparse map's pixels is held out (seed ``s``:
``numpy.random.default_rng(s)``), every run completes the rest, and every group is scored: RMSE
and MAE pooled over the seeds, and per seed the RMSE as a multiple of the first run's.
``models/README.md`` ("Held-out splits") has what it says of the shipped student.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from dmd3c_ros.core.config import BACKENDS

from .offline import create_runs
from .split_seeds import parse_seeds
from .tool import run_tool

PROG = "python -m dmd3c_ros.evaluation.confirmed_split"
GROUPS = ("confirmed", "moved", "dropped", "all")


def hold_out(sparse: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the sparse map without the held-out pixels, their flat indices), ``round(fraction x
    returns)`` pixels drawn without replacement; ``sparse`` is not modified."""
    returns = np.flatnonzero(sparse > 0)
    held = np.random.default_rng(seed).choice(returns, int(round(fraction * len(returns))),
                                              replace=False)
    kept = sparse.copy()
    kept.ravel()[held] = 0.0
    return kept, held


def groups(returns: np.ndarray, truth: np.ndarray, tolerance: float) -> dict[str, np.ndarray]:
    """Masks over held-out pixels (GROUPS): ``returns`` their depths, ``truth`` the ground
    truth's depth there (0 = none)."""
    confirmed = (truth > 0) & (np.abs(truth - returns) <= tolerance * returns)
    return {"confirmed": confirmed, "moved": (truth > 0) & ~confirmed, "dropped": truth <= 0,
            "all": np.ones(returns.shape, bool)}


def sweep(samples, runs: dict, fraction: float, seeds, tolerance: float, progress=None) -> dict:
    """``runs``: {label: backend}, the first the reference. Returns {"runs", "groups": {group:
    {"pixels", "share", "reference_se_share", label: {"rmse_mm", "mae_mm", "ratio",
    "seed_ratios"}}}} over every sample (with ``sparse`` and ``gt``) and seed; a held-out pixel
    is scored when every run gives it a depth."""
    labels = list(runs)
    sums = {g: {k: {"se": [], "ae": [], "n": []} for k in labels} for g in GROUPS}
    for sample in samples:
        if sample.get("gt") is None:
            raise ValueError(f"{sample['name']}: no ground truth (groundtruth_0i.png) to "
                             "confirm returns with")
        for seed in seeds:
            kept, held = hold_out(sample["sparse"], fraction, seed)
            returns, truth = sample["sparse"].ravel()[held], sample["gt"].ravel()[held]
            depths = {label: backend.infer(sample["rgb"], kept).depth.ravel()[held]
                      for label, backend in runs.items()}
            # Like for like: only the held-out pixels where every run has a depth.
            scored = np.logical_and.reduce([np.isfinite(d) for d in depths.values()])
            masks = groups(returns[scored], truth[scored], tolerance)
            for label, depth in depths.items():
                error = depth[scored].astype(np.float64) - returns[scored]
                for group, mask in masks.items():
                    cell = sums[group][label]
                    cell["se"].append(float(np.sum(error[mask] ** 2)))
                    cell["ae"].append(float(np.sum(np.abs(error[mask]))))
                    cell["n"].append(int(np.count_nonzero(mask)))
            if progress is not None:
                progress(f"{sample['name']} seed {seed}: {len(held)} returns held out")
    total_pixels = sum(sums["all"][labels[0]]["n"])
    reference_se = sum(sums["all"][labels[0]]["se"])
    out = {}
    for group in GROUPS:
        ref = sums[group][labels[0]]
        figures = {"pixels": sum(ref["n"]), "share": sum(ref["n"]) / max(total_pixels, 1),
                   "reference_se_share": sum(ref["se"]) / max(reference_se, 1e-12)}
        for label in labels:
            cell = sums[group][label]
            n = max(sum(cell["n"]), 1)
            seed_ratios = [float(np.sqrt(se / r)) if r > 0 else float("nan")
                           for se, r in zip(cell["se"], ref["se"])]
            figures[label] = {"rmse_mm": 1000.0 * float(np.sqrt(sum(cell["se"]) / n)),
                              "mae_mm": 1000.0 * sum(cell["ae"]) / n,
                              "ratio": float(np.sqrt(sum(cell["se"]) / max(sum(ref["se"]),
                                                                           1e-12))),
                              "seed_ratios": seed_ratios}
        out[group] = figures
    return {"runs": labels, "groups": out}


def markdown(result: dict, command: str, fraction: float, tolerance: float) -> str:
    labels = result["runs"]
    lines = [f"`{command}`", "",
             f"{fraction:.0%} of the official sparse map held out per seed; a return is "
             f"confirmed when the ground truth has its depth within {tolerance:.0%}. RMSE / MAE "
             f"mm (RMSE as a multiple of {labels[0]}'s; per seed: mean, min .. max)", "",
             "| held-out returns | share | share of " + labels[0] + "'s squared error | "
             + " | ".join(labels) + " |", "|---|---:|---:|" + "---:|" * len(labels)]
    for group in GROUPS:
        g = result["groups"][group]
        cells = []
        for label in labels:
            f = g[label]
            seeds = np.array(f["seed_ratios"], float)
            seeds = seeds[np.isfinite(seeds)]
            spread = (f"; {seeds.mean():.3f}, {seeds.min():.3f} .. {seeds.max():.3f}"
                      if seeds.size else "")
            cells.append(f"{f['rmse_mm']:.1f} / {f['mae_mm']:.1f} ({f['ratio']:.3f}x{spread})")
        lines.append(f"| {group} | {g['share']:.1%} | {g['reference_se_share']:.0%} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--kitti", required=True,
                        help="KITTI depth-completion frame folder(s): image_02.png, "
                             "velodyne_raw_02.png, groundtruth_02.png and the calibration")
    parser.add_argument("--fraction", type=float, default=0.2,
                        help="share of the sparse map's returns held out (default 0.2)")
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(10)),
                        help="START:STOP or a,b,c (default 0:10)")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="relative depth within which the ground truth confirms a return")
    parser.add_argument("--backend", action="append", choices=BACKENDS, required=True)
    parser.add_argument("--model", action="append", default=[],
                        help="model spec for the network backends, in order (repeatable)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if not 0.0 < args.fraction < 1.0:
        parser.error("--fraction must be between 0 and 1")
    if not args.tolerance > 0:
        parser.error("--tolerance must be positive")
    return args


def main(argv=None) -> int:
    from dmd3c_ros.training.data.kitti_frames import KittiFrameFolders
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)

    def compute(progress):
        runs = {run.name: run.pipeline.backend for run in create_runs(args.backend, args.model)}
        samples = KittiFrameFolders(args.kitti, stereo=False, points=False)
        return sweep(samples, runs, args.fraction, args.seeds, args.tolerance,
                     progress=progress)

    return run_tool(PROG, argv, compute,
                    lambda result, command: markdown(result, command, args.fraction,
                                                     args.tolerance),
                    json_path=args.json,
                    json_extra={"source": args.kitti, "fraction": args.fraction,
                                "seeds": args.seeds, "tolerance": args.tolerance})


if __name__ == "__main__":
    sys.exit(main())
