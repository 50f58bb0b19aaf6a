"""``dmd3c eval``: its arguments and what it runs (registered by ``dmd3c_ros.cli``, as the
deployment commands register themselves). The work is the library's: ``offline`` and ``live``
for bags and KITTI folders, ``surround`` for a nuScenes keyframe."""
from __future__ import annotations

import sys
from pathlib import Path

from ..core.config import BACKENDS, PRECISIONS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate backends / models on a rosbag2 bag, a KITTI-format folder or a "
                     "nuScenes keyframe (surround)",
        description="Complete every frame of a bag or KITTI folder with one or more backends or "
                    "models and score them against ground truth (a depth topic, KITTI "
                    "groundtruth PNGs or a LiDAR split). Several --backend / --model are compared "
                    "side by side: as many models as backends pair in order; one backend runs "
                    "every model; one model serves every backend. With --nuscenes: the six "
                    "cameras of one keyframe run as one batch on the sweep without every N-th "
                    "point (--holdout-every), are scored on the held-out points and checked for "
                    "cross-view consistency between adjacent cameras.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bag", help="rosbag2 bag folder (mcap or sqlite3)")
    source.add_argument("--kitti", help="KITTI-format folder: folders of frames "
                        "(<frame>/image_02.png) or the depth-completion layout")
    source.add_argument("--nuscenes", help="nuScenes sample folder (calibration.json, CAM_*.jpg, "
                        "LIDAR_TOP.pcd.bin): surround evaluation")
    p.add_argument("--holdout-every", type=int, metavar="N",
                   help="with --nuscenes: hold every N-th point of the sweep out of the input as "
                        "ground truth (default 5: 20 %%)")
    p.add_argument("--holdout-offset", type=int, metavar="K",
                   help="with --nuscenes: hold out the points with index %% N == K instead of 0 "
                        "(K = 0 .. N-1: the N disjoint shares)")
    p.add_argument("--seam-blend", type=float, metavar="TOLERANCE",
                   help="with --nuscenes: also report every run with its views blended at the "
                        "seams as the surround node's seam_blend does (e.g. 0.05)")
    add_bag_arguments(p)
    truth = p.add_mutually_exclusive_group()
    truth.add_argument("--gt-topic", action="append", default=[],
                       help="ground-truth depth Image topic (32FC1 m or 16UC1 mm), one per image")
    truth.add_argument("--lidar-split", type=float, metavar="FRACTION",
                       help="hold out this seeded share of the points that project into the "
                            "image and score on them")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="inference backend (repeatable; default auto)")
    p.add_argument("--model", action="append", default=[], help="model spec YAML (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="LiDAR-split seed")
    p.add_argument("--mono", action="store_true",
                   help="give the networks no LiDAR (all-zero sparse input, mono mode); an "
                        "error with the classical backend, which needs LiDAR")
    p.add_argument("--gt-max-depth", type=float, metavar="METRES",
                   help="score only ground-truth pixels at most this far (default: all)")
    p.add_argument("--live", action="store_true",
                   help="play the bag through a ROS graph with the node in its own process")
    p.add_argument("--kitti-raw", help="KITTI raw root of the depth-completion layout "
                                       "(default: the --kitti folder)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--engine-cache-dir", help="TensorRT engine cache folder")
    p.add_argument("--max-visuals", type=int, default=4, help="frames pictured in the report")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--json", help="summary JSON (default: OUT/eval.json)")
    p.set_defaults(func=run)


def add_bag_arguments(p) -> None:
    """The topics of a bag and how its messages pair (``dmd3c eval --bag`` and the tools that
    read bags as it does, ``split_bounds``)."""
    p.add_argument("--image-topic", action="append", default=[],
                   help="sensor_msgs/Image topic (repeat for a rig)")
    p.add_argument("--camera-info-topic", action="append", default=[],
                   help="its CameraInfo topic (default: camera_info next to the image topic)")
    p.add_argument("--points-topic", help="sensor_msgs/PointCloud2 topic of the LiDAR")
    p.add_argument("--lidar-to-camera", type=float, nargs=16, metavar="F",
                   help="row-major 4x4 LiDAR -> camera optical frame (default: /tf_static)")
    p.add_argument("--slop", type=float, default=0.05,
                   help="seconds: messages are paired by nearest stamp within it")


def run(args) -> int:
    if args.nuscenes:
        return _run_nuscenes(args)
    if args.holdout_every is not None or args.holdout_offset is not None:
        raise ValueError("--holdout-every and --holdout-offset apply to --nuscenes (use "
                         "--lidar-split F and --seed S for --bag and --kitti)")
    if args.seam_blend is not None:
        raise ValueError("--seam-blend applies to --nuscenes (a rig of overlapping cameras)")
    from .offline import (evaluate, evaluate_live, format_table, write_json,
                                     write_report_if_available)

    def progress(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    options = dict(
        backends=args.backend or ["auto"], models=args.model,
        gt="lidar-split" if args.lidar_split is not None else None,
        lidar_split=args.lidar_split, seed=args.seed, slop=args.slop,
        image_topics=args.image_topic, camera_info_topics=args.camera_info_topic,
        points_topic=args.points_topic, gt_topics=args.gt_topic,
        lidar_to_camera=args.lidar_to_camera, kind="bag" if args.bag else "kitti",
        kitti_raw=args.kitti_raw, precision=args.precision,
        engine_cache_dir=args.engine_cache_dir, max_visuals=args.max_visuals, mono=args.mono,
        gt_max_depth=args.gt_max_depth, progress=progress)
    source = args.bag or args.kitti
    if args.live and not args.bag:
        raise ValueError("--live plays a bag: give --bag")
    run = evaluate_live if args.live else evaluate
    summary, visuals, distance, latencies = run(source, **options)
    print(format_table(summary["results"]))
    json_path = write_json(args.json or Path(args.out) / "eval.json", summary)
    print(f"wrote {json_path}")
    report = write_report_if_available(args.out, summary, visuals, distance, latencies,
                                       title=f"dmd3c eval: {source}",
                                       command=command_line(args))
    print(f"wrote report {report}" if report is not None
          else "note: no report written (dmd3c_ros.evaluation.report is not installed)")
    return 0


def _run_nuscenes(args) -> int:
    from ..core.io import write_json
    from .lidar_split import check_holdout
    from .surround import evaluate_surround, format_tables, write_surround_report

    unsupported = [flag for flag, value in (
        ("--image-topic", args.image_topic), ("--camera-info-topic", args.camera_info_topic),
        ("--points-topic", args.points_topic), ("--gt-topic", args.gt_topic),
        ("--lidar-split", args.lidar_split), ("--lidar-to-camera", args.lidar_to_camera),
        ("--mono", args.mono), ("--gt-max-depth", args.gt_max_depth), ("--live", args.live),
        ("--kitti-raw", args.kitti_raw)) if value not in (None, False, [])]
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)} do not apply to --nuscenes (its ground truth "
                         "is --holdout-every N)")
    every = 5 if args.holdout_every is None else args.holdout_every
    check_holdout(every, args.holdout_offset or 0)  # a bad N or K is said before any work
    summary = evaluate_surround(
        args.nuscenes, backends=args.backend or ["auto"], models=args.model,
        holdout_every=every, holdout_offset=args.holdout_offset or 0,
        precision=args.precision, engine_cache_dir=args.engine_cache_dir, seams_dir=args.out,
        seam_tolerance=args.seam_blend,
        progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    print(format_tables(summary))
    print(f"wrote {write_json(args.json or Path(args.out) / 'eval.json', summary)}")
    print(f"wrote report {write_surround_report(args.out, summary, command=command_line(args))}")
    return 0


def command_line(args) -> str:
    """The eval command line, rebuilt from the parsed arguments (for the report)."""
    words = ["dmd3c", "eval"]
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if key in ("func", "command") or value is None or value is False or value == []:
            continue
        if value is True:
            words.append(flag)
        elif key == "lidar_to_camera":
            words += [flag] + [repr(v) for v in value]
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return " ".join(words)
