"""Is a model's gain robust to which LiDAR points are held out? The same LiDAR-split evaluation
over several seeds.

``python -m dmd3c_ros.evaluation.split_seeds --kitti DIR [--lidar-split 0.2] [--seeds 0:5]
--backend B [--model YAML] ... [--json PATH]``

``python -m dmd3c_ros.evaluation.split_seeds --nuscenes DIR [--holdout-every 5] [--seeds 0:5]
--backend B [--model YAML] ...``: the surround evaluation (``dmd3c eval --nuscenes``), each
"seed" an offset K of its deterministic split (index % N == K held out; offsets 0 .. N-1 are the
N disjoint shares). Besides the mean over the cameras it gives, per offset and over them, every
camera's RMSE multiple, the worst camera's, and each run's cross-view disagreement (median per
pair, mean of the pairs, in %: a figure of the predictions, whose input changes with the offset).

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
import sys

import numpy as np

from dmd3c_ros.core.config import BACKENDS

from .lidar_split import check_holdout, every_nth
from .offline import evaluate
from .surround import evaluate_surround
from .tool import run_tool

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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--kitti", help="KITTI-format folder with velodyne.bin")
    source.add_argument("--nuscenes", help="nuScenes sample folder (surround: the seeds are "
                        "holdout offsets)")
    parser.add_argument("--lidar-split", type=float, default=0.2, metavar="FRACTION")
    parser.add_argument("--holdout-every", type=int, default=5, metavar="N",
                        help="with --nuscenes: every N-th point held out (default 5)")
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(5)),
                        help="START:STOP or a,b,c (default 0:5); offsets with --nuscenes")
    parser.add_argument("--backend", action="append", choices=BACKENDS, required=True)
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if not 0.0 < args.lidar_split < 1.0:
        parser.error("--lidar-split must be between 0 and 1")
    try:
        for offset in args.seeds if args.nuscenes else ():
            check_holdout(args.holdout_every, offset)   # with --nuscenes the seeds are offsets
    except ValueError as error:
        parser.error(f"--seeds with --nuscenes are holdout offsets: {error}")
    return args


def _ratio(value, reference):
    """value / reference, None where either is missing (a band without returns) or 0."""
    if value is None or reference is None or not np.isfinite(reference) or reference == 0:
        return None
    return float(value) / float(reference)


def _spread(values, name: str = "ratio") -> dict:
    """{mean_<name>, min_<name>, max_<name>} of the values that are not None (None if none)."""
    values = [v for v in values if v is not None]
    stats = (np.mean, np.min, np.max)
    return {f"{stat}_{name}": float(f(values)) if values else None
            for stat, f in zip(("mean", "min", "max"), stats)}


def _kitti_rows(args, seed: int) -> dict:
    """{name: {rmse_mm, mae_mm, coverage: {band: rmse_mm}}} of one seed's ``dmd3c eval``."""
    results = evaluate(args.kitti, backends=args.backend, models=args.model,
                       lidar_split=args.lidar_split, seed=seed, max_visuals=0)[0]["results"]
    return {name: {"rmse_mm": r["rmse_mm"], "mae_mm": r["mae_mm"],
                   "coverage": {band: figures.get("rmse_mm")
                                for band, figures in r.get("coverage", {}).items()}}
            for name, r in results.items()}


def _nuscenes_rows(args, offset: int) -> dict:
    """{name: {rmse_mm, mae_mm (means over the cameras), cameras: {cam: rmse_mm},
    disagreement_pct}} of one offset's ``dmd3c eval --nuscenes``."""
    results = evaluate_surround(args.nuscenes, backends=args.backend, models=args.model,
                                holdout_every=args.holdout_every,
                                holdout_offset=offset)["results"]
    return {name: {"rmse_mm": r["mean"]["rmse_mm"], "mae_mm": r["mean"]["mae_mm"],
                   "cameras": {cam: f["rmse_mm"] for cam, f in r["cameras"].items()},
                   "disagreement_pct": r["consistency"]["mean"].get("median_rel_pct")}
            for name, r in results.items()}


def sweep(args, progress=None) -> dict:
    """{"seeds": [...], "runs": [names], "rows": {seed: {name: row}}, "summary": {name: ...}}.

    A row: rmse_mm, mae_mm, ratio (RMSE / the first run's); with --kitti coverage {band: RMSE
    ratio}; with --nuscenes cameras {cam: RMSE ratio}, worst_camera_ratio and disagreement_pct.
    A summary: mean_ratio, min_ratio, max_ratio, rmse_wins, mae_wins, and the spread over the
    seeds of the row's further figures (coverage / cameras {part: spread}; worst_camera;
    disagreement as mean_pct, min_pct, max_pct)."""
    nuscenes = getattr(args, "nuscenes", None)
    rows: dict[int, dict] = {}
    names: list[str] = []
    for seed in args.seeds:
        raw = _nuscenes_rows(args, seed) if nuscenes else _kitti_rows(args, seed)
        names = names or list(raw)
        ref = raw[names[0]]
        rows[seed] = {}
        for name in names:
            row = {"rmse_mm": raw[name]["rmse_mm"], "mae_mm": raw[name]["mae_mm"],
                   "ratio": raw[name]["rmse_mm"] / ref["rmse_mm"]}
            if nuscenes:
                row["cameras"] = {cam: _ratio(raw[name]["cameras"].get(cam), value)
                                  for cam, value in ref["cameras"].items()}
                found = [v for v in row["cameras"].values() if v is not None]
                row["worst_camera_ratio"] = max(found) if found else None
                row["disagreement_pct"] = raw[name]["disagreement_pct"]
            else:
                row["coverage"] = {band: _ratio(raw[name]["coverage"].get(band), value)
                                   for band, value in ref["coverage"].items()}
            rows[seed][name] = row
        if progress is not None:
            progress(f"seed {seed}: " + ", ".join(f"{n} {rows[seed][n]['rmse_mm']:.1f} mm"
                                                  for n in names))
    summary = {}
    for name in names:
        mine = [rows[s][name] for s in args.seeds]
        summary[name] = {
            **_spread(r["ratio"] for r in mine),
            "rmse_wins": sum(rows[s][name]["rmse_mm"] < rows[s][names[0]]["rmse_mm"]
                             for s in args.seeds),
            "mae_wins": sum(rows[s][name]["mae_mm"] < rows[s][names[0]]["mae_mm"]
                            for s in args.seeds)}
        for key in ("coverage", "cameras"):
            if key in mine[0]:
                parts = list(dict.fromkeys(p for r in mine for p in r[key]))
                summary[name][key] = {p: _spread(r[key].get(p) for r in mine) for p in parts}
        if nuscenes:
            summary[name]["worst_camera"] = _spread(r["worst_camera_ratio"] for r in mine)
            summary[name]["disagreement"] = _spread((r["disagreement_pct"] for r in mine), "pct")
    return {"source": str(nuscenes or args.kitti), "kind": "nuscenes" if nuscenes else "kitti",
            "lidar_split": None if nuscenes else args.lidar_split,
            "holdout_every": args.holdout_every if nuscenes else None, "seeds": args.seeds,
            "runs": names, "rows": rows, "summary": summary}


def _cell(figures: dict | None, name: str = "ratio", unit: str = "x") -> str:
    """``mean (min .. max)`` of a ``_spread``; "-" where it has none."""
    if not figures or figures.get(f"mean_{name}") is None:
        return "-"
    return (f"{figures[f'mean_{name}']:.3f}{unit} ({figures[f'min_{name}']:.3f} .. "
            f"{figures[f'max_{name}']:.3f})")


def markdown(result: dict, command: str) -> str:
    names = result["runs"]
    nuscenes = result.get("kind") == "nuscenes"
    held = (f"{every_nth(result['holdout_every'])} of the sweep held out (index % "
            f"{result['holdout_every']} == seed); the mean over the cameras, RMSE / MAE mm "
            f"(RMSE as a multiple of {names[0]}'s; the worst camera's multiple; the median "
            f"cross-view disagreement, mean of the pairs, %)" if nuscenes else
            f"{result['lidar_split']:.0%} of the visible points held out per seed; RMSE / MAE "
            f"mm (RMSE as a multiple of {names[0]}'s)")
    lines = [f"`{command}`", "", f"{result['source']}: {held}", "",
             "| seed | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for seed in result["seeds"]:
        row = result["rows"][seed]
        cells = []
        for n in names:
            more = ""
            if nuscenes:
                worst, disagree = row[n]["worst_camera_ratio"], row[n]["disagreement_pct"]
                more = ("; " + ("-" if worst is None else f"{worst:.3f}x") + "; "
                        + ("-" if disagree is None else f"{disagree:.2f} %"))
            cells.append(f"{row[n]['rmse_mm']:.1f} / {row[n]['mae_mm']:.1f} "
                         f"({row[n]['ratio']:.3f}x{more})")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    summary = result["summary"]
    count = len(result["seeds"])
    lines.append("| mean (min .. max) multiple | "
                 + " | ".join(_cell(summary[n]) for n in names) + " |")
    lines.append(f"| seeds better than {names[0]}: RMSE, MAE | " + " | ".join(
        f"{summary[n]['rmse_wins']} / {count}, {summary[n]['mae_wins']} / {count}"
        for n in names) + " |")
    for key, label in (("coverage", "returns {} px from a kept one"), ("cameras", "{}")):
        for part in summary[names[0]].get(key, {}):
            lines.append(f"| {label.format(part)}: mean (min .. max) | " + " | ".join(
                _cell(summary[n][key].get(part)) for n in names) + " |")
    if nuscenes:
        lines.append("| worst camera: mean (min .. max) | " + " | ".join(
            _cell(summary[n]["worst_camera"]) for n in names) + " |")
        lines.append("| cross-view disagreement: mean (min .. max) | " + " | ".join(
            _cell(summary[n]["disagreement"], "pct", " %") for n in names) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    return run_tool(PROG, argv, lambda progress: sweep(args, progress=progress), markdown,
                    json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
