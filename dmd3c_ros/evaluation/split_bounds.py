"""What a LiDAR split's held-out returns reward, and what choosing among the kept returns around
them could win at best.

``python -m dmd3c_ros.evaluation.split_bounds --kitti DIR [--lidar-split 0.2] [--seeds 0:10]
[--radius 3] [--blend-radius 5] [--json PATH]``, or ``--bag BAG --image-topic T --points-topic
P [--camera-info-topic C] [--lidar-to-camera F x16] [--slop S]`` (as ``dmd3c eval --bag``).

For every frame and every seed, the split of ``dmd3c eval --lidar-split F --seed S`` (the same
kept input and held-out ground truth; ``split_seeds`` runs the models on it) and the classical
completion of the kept returns, and then:

- ``large``: the held-out returns the classical answer misses by more than 1 m, their share of
  the returns and of the squared error; ``nearer``: those of them where the classical answer is
  nearer than the return (a foreground's depth where the LiDAR reached past its edge);
- ``oracle``: every held-out return answered by whichever lies nearest to it in depth of the
  classical answer and the kept returns within ``radius`` pixels. No completion that picks one
  of these can do better; one that blends or invents depths can;
- ``blend``: where the kept returns within ``blend_radius`` pixels spread by more than 1 m
  (standard deviation), their mean instead of the classical answer; elsewhere the classical
  answer. An answer between a foreground and the background behind it (a flying pixel in a
  point cloud): what the RMSE of a split rewards at an edge where the MAE does not;
- ``ring``: where a held-out return lies between two consecutive kept returns of its own scan
  line that agree in depth, their interpolation (``scan_lines.ring_gaps``); elsewhere the
  classical answer. The LiDAR's own view along its rings: what a split of that same sweep
  scores. Only for sweeps stored ring by ring (KITTI's velodyne.bin).

RMSE and MAE of each as multiples of the classical answer's, per seed and their mean. Where a
KITTI frame has camera-side ground truth (depth completion: kept where stereo agrees), the blend
is also scored there on the official input and the ring fill on the whole raw sweep: is what the
split rewards what a camera sees? ``models/README.md``, "What a LiDAR split rewards".
"""
from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from dmd3c_ros.core.classical import complete_classical
from dmd3c_ros.core.metrics import paired_metrics
from dmd3c_ros.core.projection import project_to_depth

from .command import add_bag_arguments
from .lidar_split import split_points
from .scan_lines import ring_gaps, scan_rings
from .sources import open_bag, open_kitti
from .split_seeds import parse_seeds
from .tool import run_tool

PROG = "python -m dmd3c_ros.evaluation.split_bounds"
LARGE_M = 1.0    # an error larger than this is "large"
SPREAD_M = 1.0   # kept returns spread more than this around a pixel: an edge


def _errors(answer: np.ndarray, truth: np.ndarray) -> dict:
    figures = paired_metrics(answer, truth)
    return {"rmse_mm": figures["rmse_mm"], "mae_mm": figures["mae_mm"]}


def oracle_answer(kept: np.ndarray, classical: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                  truth: np.ndarray, radius: int) -> np.ndarray:
    """At pixels (ys, xs): whichever of the classical answer and the kept returns within
    ``radius`` pixels (a square window) lies nearest to ``truth`` in depth."""
    padded = np.pad(kept, radius)   # beyond the image: no return
    best = classical[ys, xs].astype(np.float64)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            depth = padded[ys + dy, xs + dx].astype(np.float64)
            better = (depth > 0) & (np.abs(depth - truth) < np.abs(best - truth))
            best[better] = depth[better]
    return best


def blend_answer(kept: np.ndarray, classical: np.ndarray, radius: int,
                 spread: float = SPREAD_M) -> np.ndarray:
    """(H, W): the mean of the kept returns in a (2 radius + 1)^2 window where their standard
    deviation exceeds ``spread`` metres, the classical answer elsewhere."""
    size = (2 * radius + 1, 2 * radius + 1)
    depth = kept.astype(np.float64)
    count = cv2.boxFilter((depth > 0).astype(np.float64), -1, size, normalize=False)
    total = cv2.boxFilter(depth, -1, size, normalize=False)
    squares = cv2.boxFilter(depth * depth, -1, size, normalize=False)
    mean = total / np.maximum(count, 1.0)
    sd = np.sqrt(np.maximum(squares / np.maximum(count, 1.0) - mean ** 2, 0.0))
    return np.where((count > 1) & (sd > spread), mean, classical)


def _scored(answers: dict, target: np.ndarray) -> dict:
    """{name: errors with rmse_ratio / mae_ratio against answers["classical"]}."""
    runs = {name: _errors(answer, target) for name, answer in answers.items()}
    reference = runs["classical"]
    for figures in runs.values():
        figures["rmse_ratio"] = figures["rmse_mm"] / reference["rmse_mm"]
        figures["mae_ratio"] = figures["mae_mm"] / reference["mae_mm"]
    return runs


def bounds(kept: np.ndarray, truth: np.ndarray, classical: np.ndarray, *, radius: int = 3,
           blend_radius: int = 5, gaps: np.ndarray | None = None) -> dict | None:
    """The figures of one split (module docstring); None when no held-out return has a
    classical answer.

    Args:
        kept: (H, W) metres, the input's returns (0 = none).
        truth: (H, W) metres, the held-out returns (0 = none).
        classical: (H, W) metres, the completion of ``kept`` (NaN = no value).
        gaps: (H, W) metres, 0 = none: ``scan_lines.ring_gaps`` of the kept returns, for the
            ``ring`` answer (left out when None).
    """
    ys, xs = np.nonzero((truth > 0) & np.isfinite(classical))
    if not len(ys):
        return None
    target = truth[ys, xs].astype(np.float64)
    answer = classical[ys, xs].astype(np.float64)
    error = answer - target
    squared = error ** 2
    large = np.abs(error) > LARGE_M
    nearer = large & (error < 0)
    total = float(squared.sum()) or 1.0
    answers = {"classical": answer,
               "oracle": oracle_answer(kept, classical, ys, xs, target, radius),
               "blend": blend_answer(kept, classical, blend_radius)[ys, xs]}
    if gaps is not None:
        answers["ring"] = np.where(gaps[ys, xs] > 0, gaps[ys, xs], answer)
    return {"returns": len(ys), **_scored(answers, target),
            "large": {"share": float(large.mean()),
                      "squared_share": float(squared[large].sum()) / total},
            "nearer": {"share": float(nearer.mean()),
                       "squared_share": float(squared[nearer].sum()) / total}}


def sweep(source, *, fraction: float, seeds, radius: int = 3, blend_radius: int = 5,
          min_depth: float = 0.1, max_depth: float = 100.0, cameras=None,
          progress=None) -> dict:
    """{"rows": [{frame, seed, **bounds}], "summary": {figure: mean over the rows}} of every
    frame with LiDAR: of a KITTI folder ``source``, or of ``cameras`` ((name, loader) pairs as
    ``sources.open_bag`` gives them) when given."""
    rows, officials = [], []
    if cameras is None:
        cameras = open_kitti(source, points=True)
    for camera, loader in cameras:
        for index in range(len(loader)):
            sample = loader[index]
            points, T = sample.get("points"), sample.get("lidar_to_camera")
            if points is None or T is None or not len(points):
                continue
            for seed in seeds:
                kept_points, truth = split_points(points, sample["camera"], T, fraction,
                                                  (seed, index), min_depth=min_depth,
                                                  max_depth=max_depth)
                kept, classical, gaps = _completed(kept_points, sample["camera"], T,
                                                   min_depth, max_depth)
                figures = bounds(kept, truth, classical, radius=radius,
                                 blend_radius=blend_radius, gaps=gaps)
                if figures is None:
                    continue
                rows.append({"frame": f"{camera}/{index}", "seed": seed, **figures})
                if progress is not None:
                    progress(f"{camera}/{index} seed {seed}: classical "
                             f"{figures['classical']['rmse_mm']:.1f} mm, oracle "
                             f"{figures['oracle']['rmse_ratio']:.3f} x")
            official = _official(sample, blend_radius, min_depth, max_depth)
            if official is not None:
                officials.append({"frame": f"{camera}/{index}", **official})
    if not rows:
        raise ValueError(f"{source}: no frame with LiDAR returns to split")
    keys = [("oracle", "rmse_ratio"), ("oracle", "mae_ratio"), ("blend", "rmse_ratio"),
            ("blend", "mae_ratio"), ("large", "share"), ("large", "squared_share"),
            ("nearer", "share"), ("nearer", "squared_share")]
    if all("ring" in row for row in rows):
        keys += [("ring", "rmse_ratio"), ("ring", "mae_ratio")]
    summary = {f"{a}_{b}": float(np.mean([row[a][b] for row in rows])) for a, b in keys}
    return {"source": str(source), "lidar_split": fraction, "seeds": list(seeds),
            "radius": radius, "blend_radius": blend_radius, "rows": rows, "summary": summary,
            "official": officials}


def _completed(points, camera, T, min_depth: float, max_depth: float) -> tuple:
    """(sparse map, its classical completion, its ring gaps or None when the sweep is not
    stored ring by ring) of a sweep in one camera."""
    sparse = project_to_depth(points, camera, T, min_depth=min_depth, max_depth=max_depth)
    rings = scan_rings(points)
    gaps = None if rings is None else ring_gaps(points, rings, camera, T, occupied=sparse,
                                                min_depth=min_depth, max_depth=max_depth)
    return sparse, complete_classical(sparse, max_depth=max_depth), gaps


def _official(sample, blend_radius: int, min_depth: float, max_depth: float) -> dict | None:
    """Camera-side checks of a frame with its own sparse input and ground truth (None without):
    {"official": classical and blend on that input; "sweep": classical and ring on the whole
    raw sweep, when it is stored ring by ring}, each {name: errors}, and the pixels scored."""
    sparse, truth = sample.get("sparse"), sample.get("gt")
    if sparse is None or truth is None:
        return None
    classical = complete_classical(sparse, max_depth=max_depth)
    where = (truth > 0) & np.isfinite(classical)
    if not np.any(where):
        return None
    target = truth[where].astype(np.float64)
    result = {"pixels": int(where.sum()), "official": _scored(
        {"classical": classical[where],
         "blend": blend_answer(sparse, classical, blend_radius)[where]}, target)}
    points, T = sample.get("points"), sample.get("lidar_to_camera")
    gaps = None
    if points is not None and T is not None:
        _, classical, gaps = _completed(points, sample["camera"], T, min_depth, max_depth)
    if gaps is not None:
        where = (truth > 0) & np.isfinite(classical)
        result["sweep"] = _scored({"classical": classical[where],
                                   "ring": np.where(gaps > 0, gaps, classical)[where]},
                                  truth[where].astype(np.float64))
        result["sweep_pixels"] = int(where.sum())
    return result


def markdown(result: dict, command: str) -> str:
    lines = [f"`{command}`", "",
             f"{result['source']}: {result['lidar_split']:.0%} of the visible points held out per "
             f"seed; oracle: the best of the classical answer and the kept returns within "
             f"{result['radius']} px; blend: the mean of the kept returns within "
             f"{result['blend_radius']} px where they spread by more than {SPREAD_M:g} m; ring: "
             f"the kept returns' scan line interpolated across its gaps",
             "", "| frame | seed | classical RMSE / MAE mm | errors > 1 m: share of returns / "
             "of squared error | of them nearer than the return | oracle | blend | ring "
             "(RMSE / MAE multiples) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def pair(figures, a="rmse_ratio", b="mae_ratio", unit="x"):
        return "-" if figures is None else f"{figures[a]:.3f} / {figures[b]:.3f}{unit}"

    for row in result["rows"]:
        c = row["classical"]
        lines.append(f"| {row['frame']} | {row['seed']} | {c['rmse_mm']:.1f} / "
                     f"{c['mae_mm']:.1f} | {pair(row['large'], 'share', 'squared_share', '')} | "
                     f"{pair(row['nearer'], 'share', 'squared_share', '')} | "
                     f"{pair(row['oracle'])} | {pair(row['blend'])} | {pair(row.get('ring'))} |")
    s = result["summary"]
    means = {name: {k: s.get(f"{name}_{k}") for k in ("rmse_ratio", "mae_ratio", "share",
                                                      "squared_share")}
             for name in ("large", "nearer", "oracle", "blend", "ring")}
    lines.append(f"| mean | | | {pair(means['large'], 'share', 'squared_share', '')} | "
                 f"{pair(means['nearer'], 'share', 'squared_share', '')} | "
                 + " | ".join(pair(means[n]) if means[n]["rmse_ratio"] is not None else "-"
                              for n in ("oracle", "blend", "ring")) + " |")
    for row in result.get("official", []):
        c, b = row["official"]["classical"], row["official"]["blend"]
        lines += ["", f"{row['frame']}, camera-side ground truth ({row['pixels']} pixels), its "
                  f"own sparse input: classical {c['rmse_mm']:.1f} / {c['mae_mm']:.1f} mm, blend "
                  f"{b['rmse_mm']:.1f} / {b['mae_mm']:.1f} mm ({pair(b)} RMSE / MAE)"]
        if "sweep" in row:
            c, r = row["sweep"]["classical"], row["sweep"]["ring"]
            lines.append(f"{row['frame']}, the same ground truth, the whole raw sweep as input "
                         f"({row['sweep_pixels']} pixels): classical "
                         f"{c['rmse_mm']:.1f} / {c['mae_mm']:.1f} mm, ring {r['rmse_mm']:.1f} / "
                         f"{r['mae_mm']:.1f} mm ({pair(r)})")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--kitti", help="KITTI-format folder with velodyne.bin")
    source.add_argument("--bag", help="rosbag2 bag folder (with --image-topic, --points-topic)")
    add_bag_arguments(parser)
    parser.add_argument("--lidar-split", type=float, default=0.2, metavar="FRACTION")
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(10)),
                        help="START:STOP or a,b,c (default 0:10)")
    parser.add_argument("--radius", type=int, default=3, metavar="PX",
                        help="the oracle's window: kept returns within PX pixels (default 3)")
    parser.add_argument("--blend-radius", type=int, default=5, metavar="PX",
                        help="the blend's window (default 5)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if not 0.0 < args.lidar_split < 1.0:
        parser.error("--lidar-split must be between 0 and 1")
    if args.radius < 0 or args.blend_radius < 1:
        parser.error("--radius must be >= 0 and --blend-radius >= 1")
    if args.bag and not (args.image_topic and args.points_topic):
        parser.error("--bag needs --image-topic and --points-topic (the LiDAR to split)")
    if args.kitti and (args.image_topic or args.points_topic or args.camera_info_topic
                       or args.lidar_to_camera):
        parser.error("topic arguments apply to --bag, not --kitti")
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)

    def compute(progress):
        cameras = None if args.kitti else open_bag(
            args.bag, image_topics=args.image_topic, camera_info_topics=args.camera_info_topic,
            points_topic=args.points_topic, slop=args.slop, lidar_to_camera=args.lidar_to_camera)
        return sweep(args.kitti or args.bag, fraction=args.lidar_split, seeds=args.seeds,
                     radius=args.radius, blend_radius=args.blend_radius, cameras=cameras,
                     progress=progress)

    return run_tool(PROG, argv, compute, markdown, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
