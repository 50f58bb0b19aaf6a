"""Is a model's gain robust to which LiDAR points are held out? The same LiDAR-split evaluation
over several seeds.

``python -m dmd3c_ros.evaluation.split_seeds --kitti DIR [--lidar-split 0.2] [--seeds 0:5]
--backend B [--model YAML] ... [--json PATH]``

For every seed, ``offline.evaluate`` holds that seed's share of the visible points out of the
input and scores every compared backend / model on them (``dmd3c eval --kitti DIR
--lidar-split F --seed S``: both the input and the ground truth change with the seed). The
first compared run is the reference: each row gives every run's RMSE / MAE and its RMSE as a
multiple of the reference's; the last rows give the mean, smallest and largest multiple and how
many seeds each run beat the reference on (RMSE and MAE), then the same multiple per coverage
band (the held-out returns by distance in pixels to the nearest kept one, ``dmd3c eval``'s
``coverage``). A gain seen on one split only is a property of that split, not of the model.
"""
from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

from dmd3c_ros.core.config import BACKENDS
from dmd3c_ros.core.io import write_json

from .offline import evaluate

PROG = "python -m dmd3c_ros.evaluation.split_seeds"


def parse_seeds(text: str) -> list[int]:
    """``"0:5"`` (0 to 4) or ``"0,3,7"``."""
    try:
        if ":" in text:
            start, stop = (int(part) for part in text.split(":"))
            seeds = list(range(start, stop))
        else:
            seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds {text!r}: use START:STOP or a,b,c") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"seeds {text!r} name no seed")
    return seeds


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--kitti", required=True, help="KITTI-format folder with velodyne.bin")
    parser.add_argument("--lidar-split", type=float, default=0.2, metavar="FRACTION")
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(5)),
                        help="START:STOP or a,b,c (default 0:5)")
    parser.add_argument("--backend", action="append", choices=BACKENDS, required=True)
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if not 0.0 < args.lidar_split < 1.0:
        parser.error("--lidar-split must be between 0 and 1")
    return args


def _ratio(value, reference):
    """value / reference, None where either is missing (a band without returns) or 0."""
    if value is None or reference is None or not np.isfinite(reference) or reference == 0:
        return None
    return float(value) / float(reference)


def _spread(values) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean_ratio": None, "min_ratio": None, "max_ratio": None}
    return {"mean_ratio": float(np.mean(values)), "min_ratio": float(np.min(values)),
            "max_ratio": float(np.max(values))}


def sweep(args, progress=None) -> dict:
    """{"seeds": [...], "runs": [names], "rows": {seed: {name: {rmse_mm, mae_mm, ratio,
    coverage: {band: ratio}}}}, "summary": {name: {mean_ratio, min_ratio, max_ratio, rmse_wins,
    mae_wins, coverage: {band: {mean_ratio, min_ratio, max_ratio}}}}}."""
    rows: dict[int, dict] = {}
    names: list[str] = []
    for seed in args.seeds:
        summary = evaluate(args.kitti, backends=args.backend, models=args.model,
                           lidar_split=args.lidar_split, seed=seed, max_visuals=0)[0]
        results = summary["results"]
        names = names or list(results)
        reference = results[names[0]]
        bands = reference.get("coverage", {})
        rows[seed] = {name: {"rmse_mm": results[name]["rmse_mm"],
                             "mae_mm": results[name]["mae_mm"],
                             "ratio": results[name]["rmse_mm"] / reference["rmse_mm"],
                             "coverage": {band: _ratio(
                                 results[name].get("coverage", {}).get(band, {}).get("rmse_mm"),
                                 figures.get("rmse_mm")) for band, figures in bands.items()}}
                      for name in names}
        if progress is not None:
            progress(f"seed {seed}: " + ", ".join(f"{n} {rows[seed][n]['rmse_mm']:.1f} mm"
                                                  for n in names))
    summary = {}
    for name in names:
        ratios = [rows[s][name]["ratio"] for s in args.seeds]
        bands = list(dict.fromkeys(b for s in args.seeds for b in rows[s][name]["coverage"]))
        summary[name] = {
            **_spread(ratios),
            "rmse_wins": sum(rows[s][name]["rmse_mm"] < rows[s][names[0]]["rmse_mm"]
                             for s in args.seeds),
            "mae_wins": sum(rows[s][name]["mae_mm"] < rows[s][names[0]]["mae_mm"]
                            for s in args.seeds),
            "coverage": {band: _spread(rows[s][name]["coverage"].get(band) for s in args.seeds)
                         for band in bands}}
    return {"source": str(args.kitti), "lidar_split": args.lidar_split, "seeds": args.seeds,
            "runs": names, "rows": rows, "summary": summary}


def markdown(result: dict, command: str) -> str:
    names = result["runs"]
    lines = [f"`{command}`", "",
             f"{result['source']}: {result['lidar_split']:.0%} of the visible points held out "
             f"per seed; RMSE / MAE mm (RMSE as a multiple of {names[0]}'s)", "",
             "| seed | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for seed in result["seeds"]:
        row = result["rows"][seed]
        lines.append(f"| {seed} | " + " | ".join(
            f"{row[n]['rmse_mm']:.1f} / {row[n]['mae_mm']:.1f} ({row[n]['ratio']:.3f}x)"
            for n in names) + " |")
    summary = result["summary"]
    count = len(result["seeds"])
    lines.append("| mean (min .. max) multiple | " + " | ".join(
        f"{summary[n]['mean_ratio']:.3f}x ({summary[n]['min_ratio']:.3f} .. "
        f"{summary[n]['max_ratio']:.3f})" for n in names) + " |")
    lines.append(f"| seeds better than {names[0]}: RMSE, MAE | " + " | ".join(
        f"{summary[n]['rmse_wins']} / {count}, {summary[n]['mae_wins']} / {count}"
        for n in names) + " |")
    for band in summary[names[0]].get("coverage", {}):
        cells = []
        for n in names:
            figures = summary[n]["coverage"].get(band, {})
            cells.append("-" if figures.get("mean_ratio") is None else
                         f"{figures['mean_ratio']:.3f}x ({figures['min_ratio']:.3f} .. "
                         f"{figures['max_ratio']:.3f})")
        lines.append(f"| returns {band} px from a kept one: mean (min .. max) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        result = sweep(args, progress=lambda line: print(f"  {line}", file=sys.stderr,
                                                         flush=True))
    except (OSError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    command = " ".join([PROG] + [shlex.quote(a) for a in argv])
    if args.json:
        write_json(args.json, {**result, "command": command})
    print(markdown(result, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
