"""The real validation frames of a training run (issue 17): chosen on, never trained on.

- ``kitti_dc``: KITTI raw 2011_09_26_0001 frame 5 (``../shared/data/kitti_dc/0000000005``), the
  official sparse input scored against the official semi-dense ground truth (all pixels, as
  ``dmd3c eval --kitti``);
- ``kitti_object``: KITTI object frame 000000 (``../shared/data/kitti_object/000000``), its sweep
  with 20 % of the visible points held out as ground truth (seed (0, 0), the split
  ``dmd3c eval --kitti DIR --lidar-split 0.2`` makes of its first frame).
- With ``splits`` N > 1 (the training config's ``real_splits``): the object frame also with
  seeds 1 to N-1 (``kitti_object_s<k>``), and frame 5's raw sweep with 20 % held out, seeds 0 to
  N-1 (``kitti_dc_raw_s<k>``): a checkpoint is then chosen on many held-out splits, not on one
  (a gain on seed 0 alone was that split's, models/README.md "Held-out splits").

Both run through the runtime's own pre- and post-processing, with the node's and ``dmd3c eval``'s
default range (0.1-100 m; the ground truth of both frames ends at 85 m) (:class:`TorchBackend` on the module
being trained, :class:`CompletionPipeline`), so the figures are those ``dmd3c eval`` gives for the
exported model. The classical completion's figures are computed once, beside them.
``real_rmse_ratio``, the mean over the frames of student RMSE / classical RMSE (the splits of
one frame first averaged together), is what ``select: real`` picks checkpoints by.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dmd3c_ros.core.metrics import depth_metrics
from dmd3c_ros.evaluation.lidar_split import split_points
from dmd3c_ros.paths import shared_data_dir
from dmd3c_ros.runtime.classical_backend import ClassicalBackend
from dmd3c_ros.runtime.pipeline import CompletionPipeline
from dmd3c_ros.runtime.spec import ModelSpec

KITTI_DC = "kitti_dc/0000000005"
KITTI_OBJECT = "kitti_object/000000"
SPLIT_FRACTION = 0.2


def training_spec(student, depth_scale: float, max_depth: float,
                  classical_resolution: str = "image") -> ModelSpec:
    """An in-memory model spec for a module being trained (nothing exported, nothing hashed),
    as ``dmd3c export`` writes it for the 352x1216 student."""
    residual = bool(getattr(student, "needs_classical", False))
    return ModelSpec(name="training", onnx=Path("unexported.onnx"), sha256="",
                     input_size=(352, 1216), rgb_mean=(123.675, 116.28, 103.53),
                     rgb_std=(58.395, 57.12, 57.375), depth_scale=float(depth_scale),
                     depth_range=(0.5, float(max_depth)),
                     supports_mono=not residual, uncertainty_output="uncertainty",
                     classical_input="classical" if residual else None,
                     classical_resolution=classical_resolution)


class RealValidation:
    """Callable ``(student) -> {figure: value}`` for :func:`training.trainer.train`.

    Args:
        frames: name -> dict(rgb, gt, and either sparse or points + camera + lidar_to_camera).
        depth_scale, max_depth: the training config's (metres per unit, range end).
    """

    def __init__(self, frames: dict, depth_scale: float, max_depth: float) -> None:
        if not frames:
            raise ValueError("no real validation frame")
        self.frames, self.depth_scale, self.max_depth = frames, depth_scale, max_depth
        self.classical = {name: self._score(CompletionPipeline(ClassicalBackend()), frame)
                          for name, frame in frames.items()}

    @classmethod
    def from_shared(cls, depth_scale: float, max_depth: float, root=None,
                    log=print, splits: int = 1) -> "RealValidation | None":
        """The frames from ``root`` (default ``../shared/data``; ``splits``: module docstring),
        or None when neither is there."""
        from dmd3c_ros.training.data.kitti_frames import KittiFrameFolders, KittiObjectFrames
        root, frames = Path(root or shared_data_dir()), {}
        if (root / KITTI_DC).is_dir():
            sample = KittiFrameFolders(root / KITTI_DC, stereo=False, points=splits > 1)[0]
            frames["kitti_dc"] = {"rgb": sample["rgb"], "sparse": sample["sparse"],
                                  "gt": sample["gt"]}
            if splits > 1:
                frames.update(_splits("kitti_dc_raw", sample, range(splits)))
        if (root / KITTI_OBJECT).is_dir():
            sample = KittiObjectFrames(root / KITTI_OBJECT, stereo=False)[0]
            split = _splits("kitti_object", sample, range(splits))
            frames["kitti_object"] = split.pop("kitti_object_s0")  # the name it always had
            frames.update(split)
        if not frames:
            log(f"real validation: no frame under {root}; skipped")
            return None
        return cls(frames, depth_scale, max_depth)

    @classmethod
    def for_config(cls, config, log=print) -> "RealValidation | None":
        """The frames a training config asks for (``real_val`` or ``select: real``;
        ``real_splits``), or None."""
        if not (config.real_val or config.select == "real"):
            return None
        return cls.from_shared(config.depth_scale, config.max_depth, log=log,
                               splits=getattr(config, "real_splits", 1))

    @staticmethod
    def _score(pipeline: CompletionPipeline, frame: dict) -> dict:
        if "sparse" in frame:
            depth = pipeline.backend.infer(frame["rgb"], frame["sparse"]).depth
        else:
            depth = pipeline.run(frame["rgb"], frame["camera"], frame["points"],
                                 frame["lidar_to_camera"], uncertainty=False).depth
        return depth_metrics(depth, frame["gt"])

    def __call__(self, student) -> dict:
        from dmd3c_ros.runtime.torch_backend import TorchBackend
        was = student.training
        device = str(next(student.parameters()).device)  # stays where training runs it
        backend = TorchBackend(training_spec(student, self.depth_scale, self.max_depth),
                               module=student, device=device)
        figures, ratios = {}, {}
        try:
            for name, frame in self.frames.items():
                pipeline = CompletionPipeline(backend)  # 0.1-100 m, as the node and dmd3c eval
                got, ref = self._score(pipeline, frame), self.classical[name]
                figures[f"real_{name}_rmse_m"] = got["rmse_mm"] / 1000.0  # mm to m
                figures[f"real_{name}_mae_m"] = got["mae_mm"] / 1000.0
                figures[f"real_{name}_classical_rmse_m"] = ref["rmse_mm"] / 1000.0
                figures[f"real_{name}_classical_mae_m"] = ref["mae_mm"] / 1000.0
                ratios.setdefault(frame.get("family", name), []).append(
                    got["rmse_mm"] / ref["rmse_mm"])
        finally:
            student.train(was)
        figures["real_rmse_ratio"] = (float(np.mean([np.mean(r) for r in ratios.values()]))
                                      if ratios else math.nan)
        return figures


def _splits(name: str, sample: dict, seeds) -> dict:
    """``{name_s<k>: frame}``: the sample's sweep with SPLIT_FRACTION of its visible points held
    out as ground truth, one frame per seed (k, 0)."""
    frames = {}
    for seed in seeds:
        kept, truth = split_points(sample["points"], sample["camera"],
                                   sample["lidar_to_camera"], SPLIT_FRACTION, (seed, 0))
        frames[f"{name}_s{seed}"] = {"rgb": sample["rgb"], "points": kept, "gt": truth,
                                     "camera": sample["camera"], "family": name,
                                     "lidar_to_camera": sample["lidar_to_camera"]}
    return frames
