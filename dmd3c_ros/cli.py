"""The ``dmd3c`` command: thin subcommands that parse arguments and call the library."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core.config import BACKENDS, PRECISIONS
from .evaluation import command as eval_command

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
    p.add_argument("--features", choices=("auto", "outside", "graph"), default="auto",
                   help="a residual student's feature maps: made by the runtime (outside) or "
                   "in the graph (graph); auto (default): outside where the variant allows")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from .training.export import export_student
    out = Path(args.out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out must name the ONNX file to write (e.g. models/NAME.onnx), got "
                         f"{args.out}")
    keys = ("variant", "features", "mono_model", "depth_scale", "depth_range", "image_weights",
            "classical_resolution")
    result = export_student(args.checkpoint, out.parent, out.stem, input_size=tuple(
        args.input_size), **{k: getattr(args, k) for k in keys})
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
    eval_command.add_parser(subparsers)
    _add_train(subparsers)
    _add_export(subparsers)
    _add_deploy(subparsers)
    return parser


# Commands whose timing is the product's: they set up the process as the nodes do (core.process).
RUNTIME_COMMANDS = ("complete", "eval", "bench")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in RUNTIME_COMMANDS:
        from .core.process import prepare_process
        prepare_process()
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
