"""The trainer's synthetic validation: bottom-centre crops of the validation drives, the student's
errors with 64 and 16 beams and without LiDAR, and the references beside them (the classical
completion, the oracle-aligned teacher). The real frames are ``evaluation.real_frames``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dmd3c_ros.training.images import normalise_rgb
from dmd3c_ros.training.lidar_augment import keep_beams
from dmd3c_ros.training.train_config import TrainConfig

def _classical_tensor(sparse_units: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """(1,1,h,w) classical completion of a (1,1,h,w) sparse map, both in network units."""
    from dmd3c_ros.core.classical import classical_units
    metres = sparse_units[0, 0].numpy() * config.depth_scale
    return torch.from_numpy(classical_units(metres, max_depth=config.max_depth,
                                            depth_scale=config.depth_scale))[None, None]


VAL_SIZE = (352, 1216)


def validation_frames(root, files, count: int, depth_scale: float):
    """Bottom-centre 352x1216 crops of the first ``count`` validation frames, as tensors."""
    frames = []
    for name in files[:count]:
        data = np.load(Path(root) / name)
        h, w = data["depth"].shape
        y0, x0 = h - VAL_SIZE[0], (w - VAL_SIZE[1]) // 2
        crop = (slice(y0, y0 + VAL_SIZE[0]), slice(x0, x0 + VAL_SIZE[1]))
        frames.append({"rgb": torch.from_numpy(normalise_rgb(data["rgb"][crop]))[None],
                       "sparse": torch.from_numpy(data["sparse"][crop] / depth_scale)[None, None],
                       "ring": data["ring"][crop], "gt": data["depth"][crop],
                       "teacher": data["teacher"][crop]})
    return frames


def reference_errors(frame: dict, config: TrainConfig) -> dict:
    """What the student is measured against on one validation frame, in metres (GT <=
    max_depth): the classical completion of its HDL-64 sweep and the teacher aligned to the
    ground truth (least squares in inverse depth, an oracle scale and shift)."""
    from dmd3c_ros.core.classical import complete_classical
    gt = frame["gt"]
    valid = (gt > 0) & (gt <= config.max_depth)
    sparse = frame["sparse"][0, 0].numpy() * config.depth_scale
    classical = complete_classical(sparse, max_depth=config.max_depth)
    classical = np.where(np.isfinite(classical), classical, 0.0)
    x, y = frame["teacher"][valid].astype(np.float64), 1.0 / gt[valid].astype(np.float64)
    scale, shift = np.polyfit(x, y, 1)
    teacher = 1.0 / np.clip(scale * frame["teacher"] + shift, 1.0 / config.max_depth, None)
    figures = {}
    for name, depth in (("classical_hdl64", classical), ("teacher_aligned", teacher)):
        err = depth[valid] - gt[valid]
        figures[f"{name}_rmse_m"] = float(np.sqrt(np.mean(err ** 2)))
        figures[f"{name}_mae_m"] = float(np.mean(np.abs(err)))
    return figures


def lidar_covered(sparse: np.ndarray) -> np.ndarray:
    """(h, w) bool: the pixels at or below the top-most LiDAR return of their column, the region
    where real benchmarks have ground truth (KITTI's is accumulated LiDAR); none in a column
    without a return."""
    has = sparse > 0
    top = np.where(has.any(0), has.argmax(0), sparse.shape[0])
    return np.arange(sparse.shape[0])[:, None] >= top[None, :]


@torch.no_grad()
def validate(student: nn.Module, frames, config: TrainConfig) -> dict:
    """RMSE / MAE (metres) with 64 and 16 beams, AbsRel without LiDAR (not for the residual
    student, which needs LiDAR), on GT <= max_depth; with 64 beams on the LiDAR-covered part of
    the frame alone (``hdl64_covered_*``, see :func:`lidar_covered`); and the references of
    :func:`reference_errors` (``classical_hdl64_*``, ``teacher_aligned_*``)."""
    was = student.training
    student.eval()
    sums = {}
    residual = getattr(student, "needs_classical", False)
    runs = (("hdl64", 64), ("beams16", 16)) + ((("mono", 0),) if not residual else ())
    try:
        for frame in frames:
            if "reference" not in frame:  # computed once per frame, reported every time
                frame["reference"] = reference_errors(frame, config)
            for key, value in frame["reference"].items():
                sums.setdefault(key, []).append(value)
            gt = frame["gt"]
            valid = (gt > 0) & (gt <= config.max_depth)
            sparse64 = frame["sparse"]
            for label, beams in runs:
                sp = sparse64 if beams == 64 else torch.from_numpy(keep_beams(
                    sparse64[0, 0].numpy(), frame["ring"], beams))[None, None]
                extra = ()
                if residual:  # the same input at every validation: completed once
                    key = f"classical_{beams}"
                    if key not in frame:
                        frame[key] = _classical_tensor(sp, config)
                    extra = (frame[key],)
                device = next(student.parameters()).device
                inputs = [t.to(device) for t in (frame["rgb"], sp, *extra)]
                depth = student(*inputs)[0][0, 0].cpu().numpy() * config.depth_scale
                depth = np.clip(depth, 0.5, config.max_depth)
                err = depth[valid] - gt[valid]
                sums.setdefault(f"{label}_rmse_m", []).append(float(np.sqrt(np.mean(err ** 2))))
                sums.setdefault(f"{label}_mae_m", []).append(float(np.mean(np.abs(err))))
                sums.setdefault(f"{label}_absrel", []).append(
                    float(np.mean(np.abs(err) / gt[valid])))
                if beams == 64:
                    covered = valid & lidar_covered(sp[0, 0].numpy())
                    err = depth[covered] - gt[covered]
                    sums.setdefault("hdl64_covered_rmse_m", []).append(
                        float(np.sqrt(np.mean(err ** 2))) if err.size else float("nan"))
                    sums.setdefault("hdl64_covered_mae_m", []).append(
                        float(np.mean(np.abs(err))) if err.size else float("nan"))
    finally:
        student.train(was)
    return {k: float(np.mean(v)) for k, v in sums.items()}
