"""The ``dmd3c`` command: thin subcommands that parse arguments and call the library."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core.config import BACKENDS, PRECISIONS

SIM_FORMATS = ("kitti", "kitti-sample", "rosbag2-mcap", "rosbag2-sqlite3")
SIM_LIDARS = ("hdl64", "vlp32", "hdl32", "vlp16", "os128")
SIM_RIGS = ("front", "stereo", "surround")



def _add_complete(subparsers) -> None:
    p = subparsers.add_parser(
        "complete", help="complete one frame offline",
        description="Complete one camera frame with its LiDAR into dense metric depth. Without a "
                    "LiDAR argument (or with an all-zero sparse PNG) it runs in mono mode.")
    p.add_argument("--image", required=True, help="camera image (PNG/JPEG)")
    lidar = p.add_mutually_exclusive_group()
    lidar.add_argument("--sparse", help="sparse depth, KITTI uint16 PNG (metres x 256, 0 = none)")
    lidar.add_argument("--points", help="KITTI Velodyne sweep (.bin, float32 x, y, z, reflectance)")
    p.add_argument("--calib", help="with --points: KITTI calib.txt (object format) or the folder "
                                   "holding calib_cam_to_cam.txt and calib_velo_to_cam.txt")
    p.add_argument("--camera-index", type=int, default=2, choices=range(4),
                   help="KITTI camera the image comes from (default 2, left colour)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="inference backend (auto: TensorRT with a GPU, else ONNX Runtime)")
    p.add_argument("--model", help="model spec YAML (default: the shipped student)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--engine-cache-dir", help="TensorRT engine cache folder")
    p.add_argument("--out", required=True, help="output depth, KITTI uint16 PNG (metres x 256)")
    p.add_argument("--out-colorized", help="also write a colourized depth PNG")
    p.add_argument("--ground-truth", help="KITTI uint16 ground-truth PNG: print metrics")
    p.add_argument("--repeat", type=int, default=1, help="time the inference N times (median)")
    p.add_argument("--json", help="write the figures as JSON to this path")
    p.set_defaults(func=_run_complete)


def _run_complete(args) -> int:
    from .complete import complete_frame
    from .core.colorize import colorize_depth
    from .core.io import write_kitti_depth, write_rgb

    result = complete_frame(args.image, sparse_png=args.sparse, points_bin=args.points,
                            calib=args.calib, ground_truth=args.ground_truth,
                            backend=args.backend, model=args.model, precision=args.precision,
                            engine_cache_dir=args.engine_cache_dir,
                            camera_index=args.camera_index, repeat=args.repeat)
    depth = result.prediction.depth
    write_kitti_depth(args.out, depth)
    if args.out_colorized:
        write_rgb(args.out_colorized, colorize_depth(depth))
    print(f"backend {result.backend}, {result.mode} mode, {result.sparse_pixels} LiDAR pixels in, "
          f"inference {result.infer_ms_median:.1f} ms (median of {len(result.infer_ms)})")
    print(f"wrote {args.out}" + (f" and {args.out_colorized}" if args.out_colorized else ""))
    if result.metrics is not None:
        m = result.metrics
        print(f"vs ground truth ({m['pixels']} px): RMSE {m['rmse_mm']:.1f} mm, MAE "
              f"{m['mae_mm']:.1f} mm, iRMSE {m['irmse_per_km']:.2f} 1/km, iMAE "
              f"{m['imae_per_km']:.2f} 1/km, AbsRel {m['abs_rel']:.4f}, delta1 {m['delta1']:.4f}")
    if args.json:
        _write_json(args.json, {
            "backend": result.backend, "mode": result.mode, "inputs": result.inputs,
            "sparse_pixels": result.sparse_pixels,
            "infer_ms": {"median": result.infer_ms_median, "runs": result.infer_ms},
            "metrics": result.metrics})
    return 0


def _write_json(path: str, data: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def _add_calib(subparsers) -> None:
    p = subparsers.add_parser(
        "calib", help="print a KITTI calibration as node parameters",
        description="Print the LiDAR->camera transform of a KITTI calibration as the completion "
                    "node's lidar_to_camera parameter (row-major 4x4, metres), and the camera.")
    p.add_argument("--calib", required=True, help="object calib.txt, or the folder of the raw "
                   "pair calib_cam_to_cam.txt + calib_velo_to_cam.txt")
    p.add_argument("--camera-index", type=int, default=2, choices=range(4))
    p.add_argument("--image-size", help="WxH, needed for an object calib.txt (e.g. 1242x375)")
    p.set_defaults(func=_run_calib)


def _run_calib(args) -> int:
    from .core.calibration import load_kitti_calibration
    size = None
    if args.image_size:
        try:
            size = tuple(int(v) for v in args.image_size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--image-size must be WxH, got {args.image_size!r}") from None
    calib = load_kitti_calibration(args.calib, size, args.camera_index)
    numbers = ", ".join(repr(float(v)) for v in calib.lidar_to_camera.ravel())
    cam = calib.camera
    print(f"# camera {args.camera_index}: {cam.width}x{cam.height}, fx {cam.fx:.4f}, "
          f"fy {cam.fy:.4f}, cx {cam.cx:.4f}, cy {cam.cy:.4f}")
    print(f'lidar_to_camera:="[{numbers}]"')
    return 0


def _add_sim(subparsers) -> None:
    p = subparsers.add_parser(
        "sim", help="simulate synthetic drives (camera + LiDAR + dense ground truth)",
        description="Render a procedural drive with exact ground truth and write it as KITTI "
                    "folders or a rosbag2 bag. Deterministic per seed.")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True,
                   help="output folder (for rosbag2 formats: the bag folder itself)")
    # Literal lists keep `dmd3c --help` from importing the simulator; test_sim_drive checks them.
    p.add_argument("--format", default="kitti", choices=SIM_FORMATS)
    p.add_argument("--lidar", default="hdl64", choices=SIM_LIDARS)
    p.add_argument("--rig", default="front", choices=SIM_RIGS)
    p.add_argument("--image-scale", type=float, default=1.0,
                   help="shrink every camera by this factor (e.g. 0.5 for a fast surround rig)")
    p.add_argument("--json", help="write what was done and how fast as JSON")
    p.set_defaults(func=_run_sim)


def _run_sim(args) -> int:
    from .training.sim.run import run_sim

    def progress(done: int, total: int, elapsed: float) -> None:
        rate = done / elapsed if elapsed > 0 else float("nan")
        print(f"  frame {done}/{total}  {rate:.2f} frames/s  eta {(total - done) / rate:.0f} s",
              file=sys.stderr, flush=True)

    if args.frames < 1:
        raise ValueError("--frames must be at least 1")
    summary = run_sim(args.out, frames=args.frames, seed=args.seed, fmt=args.format,
                      lidar=args.lidar, rig=args.rig, image_scale=args.image_scale,
                      progress=progress)
    print(f"wrote {summary['frames']} frames ({', '.join(summary['cameras'])} + {args.lidar}) to "
          f"{args.out} as {args.format} in {summary['seconds']:.1f} s "
          f"({summary['frames_per_second']:.2f} frames/s)")
    if args.json:
        _write_json(args.json, summary)
    return 0


def _add_eval(subparsers) -> None:
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
    p.add_argument("--image-topic", action="append", default=[],
                   help="sensor_msgs/Image topic (repeat for a rig)")
    p.add_argument("--camera-info-topic", action="append", default=[],
                   help="its CameraInfo topic (default: camera_info next to the image topic)")
    p.add_argument("--points-topic", help="sensor_msgs/PointCloud2 topic of the LiDAR")
    truth = p.add_mutually_exclusive_group()
    truth.add_argument("--gt-topic", action="append", default=[],
                       help="ground-truth depth Image topic (32FC1 m or 16UC1 mm), one per image")
    truth.add_argument("--lidar-split", type=float, metavar="FRACTION",
                       help="hold out this seeded share of the points that project into the "
                            "image and score on them")
    p.add_argument("--lidar-to-camera", type=float, nargs=16, metavar="F",
                   help="row-major 4x4 LiDAR -> camera optical frame (default: /tf_static)")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="inference backend (repeatable; default auto)")
    p.add_argument("--model", action="append", default=[], help="model spec YAML (repeatable)")
    p.add_argument("--slop", type=float, default=0.05,
                   help="seconds: messages are paired by nearest stamp within it")
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
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    if args.nuscenes:
        return _run_eval_nuscenes(args)
    if args.holdout_every is not None or args.holdout_offset is not None:
        raise ValueError("--holdout-every and --holdout-offset apply to --nuscenes (use "
                         "--lidar-split F and --seed S for --bag and --kitti)")
    if args.seam_blend is not None:
        raise ValueError("--seam-blend applies to --nuscenes (a rig of overlapping cameras)")
    from .evaluation.offline import (evaluate, evaluate_live, format_table, write_json,
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
                                       command=_eval_command(args))
    print(f"wrote report {report}" if report is not None
          else "note: no report written (dmd3c_ros.evaluation.report is not installed)")
    return 0


def _run_eval_nuscenes(args) -> int:
    from .core.io import write_json
    from .evaluation.lidar_split import holdout_every_mask
    from .evaluation.surround import evaluate_surround, format_tables, write_surround_report

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
    holdout_every_mask(0, every, args.holdout_offset or 0)  # bad N or K: said before any work
    summary = evaluate_surround(
        args.nuscenes, backends=args.backend or ["auto"], models=args.model,
        holdout_every=every, holdout_offset=args.holdout_offset or 0,
        precision=args.precision, engine_cache_dir=args.engine_cache_dir, seams_dir=args.out,
        seam_tolerance=args.seam_blend,
        progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    print(format_tables(summary))
    print(f"wrote {write_json(args.json or Path(args.out) / 'eval.json', summary)}")
    print(f"wrote report {write_surround_report(args.out, summary, command=_eval_command(args))}")
    return 0


def _eval_command(args) -> str:
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


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the student (stage 1 pretrain or stage 2 finetune)",
        description="Train the student network from a YAML config (see config/train/). Several "
                    "processes: torchrun --nproc_per_node N -m dmd3c_ros.cli train ...")
    p.add_argument("--stage", choices=("pretrain", "finetune"),
                   help="the stage of --config (required with it)")
    p.add_argument("--config", help="training config YAML")
    p.add_argument("--recipe", help="a recipe YAML (config/train/recipe_*.yaml): cache, every "
                                    "run in order and the export, each resumed where it stopped")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--device", help="torch device, e.g. cuda (default: the config's, cpu)")
    p.add_argument("--steps", type=int, help="override the config's steps")
    p.add_argument("--out", help="override the config's run folder")
    p.add_argument("--cache", help="override the config's synthetic cache folder")
    p.add_argument("--init", help="override the config's initial weights")
    p.add_argument("--threads", type=int, help="override the config's torch threads")
    p.add_argument("--weight", action="append", default=[], metavar="TERM=W",
                   help="override one loss weight (repeatable), e.g. --weight bins=0")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    if args.recipe:
        if args.config or args.stage or args.steps or args.out or args.cache or args.init \
                or args.weight:
            raise ValueError("--recipe runs its own configs: give --recipe alone (with "
                             "--device, --threads, --no-progress)")
        from .recipe import run_recipe
        result = run_recipe(args.recipe, device=args.device, threads=args.threads,
                            progress=not args.no_progress)
        print(json.dumps({"exports": result["exports"], "seconds": result["seconds"]},
                         indent=1))
        return 0
    if not args.config or not args.stage:
        raise ValueError("give --stage and --config (or --recipe)")
    from .training.trainer import TrainConfig, train
    config = TrainConfig.load(args.config, steps=args.steps, threads=args.threads,
                              device=args.device, progress=False if args.no_progress else None)
    for key in ("out", "cache", "init"):  # command-line paths are relative to the cwd
        if getattr(args, key):
            setattr(config, key, str(Path(getattr(args, key)).resolve()))
    if config.stage != args.stage:
        raise ValueError(f"{args.config} is a {config.stage} config, not {args.stage}")
    for item in args.weight:
        term, _, value = item.partition("=")
        config.weights = {**config.weights, term: float(value)}
    config.check()
    from .evaluation.real_frames import RealValidation
    result = train(config, resume=args.resume,
                   extra_validation=RealValidation.for_config(config))
    if result:
        print(json.dumps(result, indent=1))
    return 0


def _add_export(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export trained student weights as ONNX + model spec (parity checked)",
        description="Write NAME.onnx, NAME.safetensors and the model spec NAME.yaml (with the "
                    "ONNX file's sha256) beside OUT from a student checkpoint (a training run's "
                    "best.safetensors or last.safetensors), then check that ONNX Runtime "
                    "matches PyTorch on seeded random LiDAR and mono inputs (relative error "
                    "<= 1e-3).")
    p.add_argument("checkpoint", help="student checkpoint (.safetensors with model.* tensors "
                                      "and 'variant' metadata)")
    p.add_argument("--out", required=True, help="the ONNX file to write, e.g. models/NAME.onnx")
    p.add_argument("--variant", help="student variant (default: the checkpoint's metadata)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=(352, 1216),
                   help="network input height and width, multiples of 32 (default 352 1216)")
    p.add_argument("--mono-model", help="for a residual student (LiDAR only): the model spec "
                                        "YAML that frames without LiDAR run instead")
    p.add_argument("--classical-resolution", choices=("image", "input"), default="image",
                   help="residual student: classical pre-step at the camera's size (image, "
                        "default) or the network input's (input: cheaper for big cameras)")
    p.add_argument("--depth-scale", type=float, help="metres per network unit (default: the "
                   "training run's, recorded in its checkpoint; an exported model's weights file "
                   "does not record it: name it)")
    p.add_argument("--depth-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="metres the runtime clips outputs to (default: 0.5 to training's range)")
    p.add_argument("--image-weights", help="an image student's weights (e.g. "
                   "models/student_mono.safetensors) to join with the checkpoint's residual "
                   "student above the LiDAR's field of view; --variant names the composite "
                   "(residual_geo_above)")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from .training.export import export_student
    out = Path(args.out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out must name the ONNX file to write (e.g. models/NAME.onnx), got "
                         f"{args.out}")
    result = export_student(args.checkpoint, out.parent, out.stem, variant=args.variant,
                            input_size=tuple(args.input_size), mono_model=args.mono_model,
                            classical_resolution=args.classical_resolution,
                            image_weights=args.image_weights, depth_scale=args.depth_scale,
                            depth_range=args.depth_range)
    print(json.dumps(result, indent=1))
    return 0


def _add_deploy(subparsers) -> None:
    """The deployment commands, each registered by its own module in dmd3c_ros.deploy."""
    from .deploy import bench, engine, gpu_check, quantize
    for module in (quantize, engine, bench, gpu_check):
        module.add_parser(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmd3c", description="dmd3c_ros: dense metric depth "
                                     "from camera + LiDAR (offline tools)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_complete(subparsers)
    _add_calib(subparsers)
    _add_sim(subparsers)
    _add_eval(subparsers)
    _add_train(subparsers)
    _add_export(subparsers)
    _add_deploy(subparsers)
    return parser


# Commands whose timing is the product's: they tune malloc as the nodes do (core.memory).
RUNTIME_COMMANDS = ("complete", "eval", "bench")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in RUNTIME_COMMANDS:
        from .core.memory import keep_freed_memory
        keep_freed_memory()
    from .core.camera import CalibrationError
    from .core.io import InputFileError
    from .runtime.base import BackendError
    from .runtime.spec import ModelSpecError
    try:
        return args.func(args)
    except (InputFileError, CalibrationError, ModelSpecError, BackendError, ValueError,
            OSError) as error:  # FileExistsError (an existing bag folder) is an OSError
        print(f"dmd3c {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: whatever the command started has been cleaned up
        print(f"dmd3c {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
