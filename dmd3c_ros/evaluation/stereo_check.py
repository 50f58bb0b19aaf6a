"""Depth above the LiDAR's field of view, checked against stereo on real frames.

KITTI's ground truth, and any held-out LiDAR return, lies inside the sweep's field of view: above
it (:func:`dmd3c_ros.core.coverage.lidar_coverage`) nothing LiDAR-made says whether a model's
depth is right. A rectified stereo pair does: SGBM with a left-right check
(:class:`~dmd3c_ros.training.teachers.StereoTeacher`) where it is confident and near (3-40 m by
default: at 40 m a KITTI disparity is about 10 pixels). Stereo has errors of its own, so the
report first scores stereo against the LiDAR ground truth inside the field of view; then each
model against stereo above it.

    python -m dmd3c_ros.evaluation.stereo_check --kitti ../shared/data/kitti_dc \
        --backend classical --backend onnxruntime --model models/student.yaml --json out.json

The frames are KITTI frame folders with both colour images (``image_02.png``, ``image_03.png``)
and the raw calibration (:class:`~dmd3c_ros.training.data.kitti_frames.KittiFrameFolders`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dmd3c_ros.core.coverage import lidar_coverage
from dmd3c_ros.core.metrics import depth_metrics

NEAR, FAR = 3.0, 40.0   # metres: the stereo depths that are scored


def errors(depth: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict:
    """MAE / RMSE (metres), AbsRel (:func:`core.metrics.depth_metrics`, on the pixels of
    ``mask`` where both have a value) and the median relative error of ``depth`` against
    ``reference``; NaN figures when no pixel is left."""
    reference = np.where(mask, reference, np.nan)
    scored = depth_metrics(depth, reference, fill_missing=False)
    with np.errstate(invalid="ignore"):
        both = (reference > 0) & (depth > 0) & np.isfinite(depth) & np.isfinite(reference)
    rel = np.abs(depth[both] - reference[both]) / reference[both]
    return {"pixels": scored["pixels"], "mae_m": scored["mae_mm"] / 1000.0,  # mm to m
            "rmse_m": scored["rmse_mm"] / 1000.0, "abs_rel": scored["abs_rel"],
            "median_rel": float(np.median(rel)) if rel.size else np.nan}


def check_frame(sample: dict, backends: dict, teacher, near: float = NEAR,
                far: float = FAR) -> dict:
    """One KITTI sample (with ``stereo``) -> {"stereo_vs_lidar": ..., "above": {name: ...},
    "above_pixels": ...}."""
    stereo = teacher.predict(sample["rgb"], right=sample["stereo"]["rgb"],
                             focal_px=sample["camera"].fx,
                             baseline_m=sample["stereo"]["baseline_m"])
    with np.errstate(invalid="ignore"):
        confident = np.isfinite(stereo) & (stereo > near) & (stereo < far)
    above = ~lidar_coverage(sample["sparse"]) & confident
    gt = sample.get("gt")
    result = {"above_pixels": int(above.sum()), "above": {},
              "stereo_vs_lidar": errors(stereo, gt, confident & (gt > 0)) if gt is not None
              else None}
    for name, backend in backends.items():
        depth = backend.infer(sample["rgb"], sample["sparse"]).depth
        result["above"][name] = errors(depth, stereo, above)
    return result


def main(argv=None) -> int:
    from dmd3c_ros.runtime.factory import create_backend
    from dmd3c_ros.training.data.kitti_frames import KittiFrameFolders
    from dmd3c_ros.training.teachers import StereoTeacher
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kitti", required=True, help="KITTI frame folder(s) with image_02/03")
    p.add_argument("--backend", action="append", required=True, help="backend (repeatable)")
    p.add_argument("--model", action="append", default=[],
                   help="model spec for the network backends, in order (repeatable)")
    p.add_argument("--near", type=float, default=NEAR, help="metres (default 3)")
    p.add_argument("--far", type=float, default=FAR, help="metres (default 40)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    models = iter(args.model)
    backends = {}
    for name in args.backend:
        spec = None if name == "classical" else next(models, None)
        label = name if spec is None else f"{name}:{spec}"
        backends[label] = create_backend(name, spec)
    teacher = StereoTeacher(lr_check=True)
    frames = {}
    for sample in KittiFrameFolders(args.kitti, stereo=True, points=False):
        if not sample.get("stereo"):
            raise ValueError(f"{sample['name']}: no right image (image_03.png) for stereo")
        frames[sample["name"]] = check_frame(sample, backends, teacher, args.near, args.far)
    for name, frame in frames.items():
        ref = frame["stereo_vs_lidar"]
        if ref:
            print(f"{name}: stereo against LiDAR ground truth ({ref['pixels']} px, "
                  f"{args.near:g}-{args.far:g} m): MAE {ref['mae_m']:.2f} m, median relative "
                  f"error {ref['median_rel']:.3f}")
        print(f"{name}: above the LiDAR, against stereo ({frame['above_pixels']} px)")
        for label, e in frame["above"].items():
            print(f"  {label:40s} MAE {e['mae_m']:6.2f} m  RMSE {e['rmse_m']:6.2f} m  "
                  f"AbsRel {e['abs_rel']:.3f}  median rel {e['median_rel']:.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"near_m": args.near, "far_m": args.far,
                                               "frames": frames}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
