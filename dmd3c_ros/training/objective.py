"""What a training step minimises: the weighted loss terms of a stage (:class:`Objective`), the
student + objective module the trainer runs (:class:`TrainModule`), and :func:`build_model`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmd3c_ros.training import losses as L
from dmd3c_ros.training.above_lidar import ABOVE_VARIANTS, build_above_student
from dmd3c_ros.training.residual import RESIDUAL_VARIANTS, build_residual_student
from dmd3c_ros.training.student import build_student
from dmd3c_ros.training.train_config import TERMS, TrainConfig
from dmd3c_ros.training.view_losses import CrossViewConsistency, ViewRelationalDistillation

def teacher_features(teacher: torch.Tensor, size) -> torch.Tensor:
    """A feature map from a teacher that exposes only its output (the simulated teacher): per
    image min-max normalised relative inverse depth, its x and y Sobel gradients and Laplacian,
    at ``size``. With Depth Anything the trainer would take hidden states instead."""
    n = teacher.shape[0]
    flat = teacher.flatten(1)
    lo, hi = flat.amin(1).view(n, 1, 1, 1), flat.amax(1).view(n, 1, 1, 1)
    u = (teacher - lo) / (hi - lo).clamp_min(1e-6)
    u = F.interpolate(u, size=size, mode="bilinear", align_corners=False)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=u.dtype, device=u.device) / 8
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=u.dtype, device=u.device) / 4
    kernels = torch.stack([kx, kx.t(), lap])[:, None]
    grads = F.conv2d(F.pad(u, (1, 1, 1, 1), mode="replicate"), kernels) * 10.0
    return torch.cat([u, grads], 1)


def normalise_relative(teacher: torch.Tensor) -> torch.Tensor:
    """Relative inverse depth / its per-image mean absolute deviation from the median: the
    teacher's unknown scale would otherwise scale every teacher-space loss (MiDaS does the same)."""
    flat = teacher.flatten(1)
    med = flat.median(1).values.view(-1, 1, 1, 1)
    mad = (teacher - med).abs().flatten(1).mean(1).view(-1, 1, 1, 1)
    return teacher / mad.clamp_min(1e-6)


class Objective(nn.Module):
    """The weighted loss terms of a stage (network units unless a loss says metres).

    depth: L1 + 0.2 x L2 to the target in metres (+ 0.5 x L1 of the bin expectation before
    refinement); log: L1 of log depth (relative error); grad: multi-scale gradient matching to
    the target (metres); nll: Laplacian NLL of the uncertainty head (depth detached); ssi:
    scale-and-shift-invariant loss of the student's inverse depth to the teacher's relative
    inverse depth; bins: KL of the student's bin probabilities to the teacher
    (aligned to the metric target by least squares in inverse depth) soft-assigned to the
    student's own metric centres; feature: attention-adapted feature distillation of the last
    decoder features to :func:`teacher_features`; focal: focal-depth-adapted response
    distillation to the aligned teacher (metres); uwd: distillation to the aligned teacher
    weighted by the student's own uncertainty (metres); xview: cross-view consistency of the
    depth at shared points of adjacent surround views, vrel: view-relational distillation of
    their relations to the aligned teacher's (``view_losses``; pair batches only); sparse: mean
    |log-space correction| of a residual student where it has a classical value (a correction
    must pay for itself: the classical answer stands unless the target says otherwise);
    returns: the depth term at the returns of the simulated sweep that the input lacks
    (``holdout``: what a held-out LiDAR split scores, see-through returns included, as the
    LiDAR, not the camera, sees them)."""

    def __init__(self, config: TrainConfig, feature_channels: int):
        super().__init__()
        self.config = config
        self.w = {t: float(config.weights.get(t, 1.0 if t == "depth" else 0.0)) for t in TERMS}
        self.l1, self.l2 = L.MaskedL1(), L.MaskedL2()
        self.grad = L.GradientMatchingLoss(4)
        self.nll = L.LaplacianNLL(min_std=1e-3)
        self.ssi = L.ScaleShiftInvariantLoss()
        self.bins = L.BinDistillationLoss(from_logits=False)
        self.feature = L.AttentionFeatureDistillation(feature_channels, 4) \
            if self.w["feature"] else None
        self.focal = L.FocalDepthResponseLoss()
        self.uwd = L.UncertaintyWeightedDistillation(u0=1.0)
        self.xview, self.vrel = CrossViewConsistency(), ViewRelationalDistillation()

    def aligned_teacher(self, teacher, target, valid):
        """Teacher relative inverse depth -> depth in network units, least-squares aligned in
        inverse depth to the target's valid pixels; (depth, mask)."""
        inv_target = torch.where(valid, 1.0 / target.clamp_min(1e-6), torch.zeros_like(target))
        s, t, ok = L.align_scale_shift(teacher, inv_target, valid)
        inv = (s * teacher + t).detach()
        lo = 1.0 / (self.config.max_depth / self.config.depth_scale)
        good = (inv > lo) & (ok > 0)
        return torch.where(good, 1.0 / inv.clamp_min(lo), torch.zeros_like(inv)), good

    def _metres(self, depth_m, target_m, mask):
        """The depth term's L1 + 0.2 x L2 in metres over ``mask``."""
        return self.l1(depth_m, target_m, mask) + 0.2 * self.l2(depth_m, target_m, mask)

    def forward(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg, w = self.config, self.w
        target = batch["target"]
        limit = cfg.max_depth / cfg.depth_scale
        valid = (target > 0) & (target <= limit) & torch.isfinite(target)
        depth, unc = out["depth"], out["uncertainty"]
        terms = {}
        scale = cfg.depth_scale
        d_m, t_m = depth * scale, target * scale
        terms["depth"] = self._metres(d_m, t_m, valid)
        if "coarse_depth" in out:  # the bin expectation before refinement (Student only)
            terms["depth"] = terms["depth"] + 0.5 * self.l1(out["coarse_depth"] * scale, t_m,
                                                            valid)
        if w["log"]:  # relative error: a near pixel counts as much as a far one
            positive = valid & (depth > 0)
            terms["log"] = self.l1(torch.log(depth.clamp_min(1e-6)),
                                   torch.log(target.clamp_min(1e-6)), positive)
        if w["grad"]:
            terms["grad"] = self.grad(d_m, t_m, valid)
        if w["nll"]:
            terms["nll"] = self.nll(depth.detach(), unc, target, valid)
        teacher = normalise_relative(batch["teacher"])
        if w["ssi"]:
            inv = 1.0 / (depth * cfg.depth_scale).clamp_min(1e-3)
            terms["ssi"] = self.ssi(inv, teacher, torch.isfinite(teacher) & (depth > 0))
        pairs = "xview_p" in batch
        if w["xview"] and pairs:
            terms["xview"] = self.xview(depth, batch)
        if any(w[t] for t in ("bins", "focal", "uwd")) or (w["vrel"] and pairs):
            t_depth, t_valid = self.aligned_teacher(teacher, target, valid)
            if w["vrel"] and pairs:
                terms["vrel"] = self.vrel(depth, t_depth * t_valid, batch)
            if w["bins"]:
                small = F.interpolate(t_depth, size=out["bin_probs"].shape[-2:], mode="nearest")
                small_valid = F.interpolate(t_valid.float(), size=small.shape[-2:],
                                            mode="nearest") > 0
                q = L.metric_bin_probabilities(small, out["bin_centres"], small_valid)
                terms["bins"] = self.bins(out["bin_probs"], q, small_valid)
            if w["focal"]:
                terms["focal"] = self.focal(depth * scale, t_depth * scale, t_valid)
            if w["uwd"]:
                terms["uwd"] = self.uwd(depth * scale, t_depth * scale, unc * scale, t_valid)
        if w["sparse"]:
            if "correction" not in out:
                raise ValueError("loss term 'sparse' needs a residual student (its correction)")
            has = batch["classical"] > 0
            terms["sparse"] = out["correction"].abs()[has].mean() if has.any() \
                else depth.sum() * 0.0
        if w["returns"]:
            if "returns" not in batch:
                raise ValueError("loss term 'returns' needs batches with held-out returns "
                                 "(holdout > 0)")
            held = batch["returns"]
            has = (held > 0) & (held <= limit)
            held_m = held * scale
            terms["returns"] = self._metres(d_m, held_m, has)
        if self.feature is not None:
            feats = out["features"]
            terms["feature"] = self.feature(feats, teacher_features(teacher, feats.shape[-2:]))
        total = sum(w[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}


class TrainModule(nn.Module):
    """Student + objective in one module, so that DistributedDataParallel syncs both."""

    def __init__(self, student: nn.Module, objective: Objective):
        super().__init__()
        self.student, self.objective = student, objective

    def forward(self, batch: dict):
        extra = (batch["classical"],) if "classical" in batch else ()
        out = self.student.forward_with_aux(batch["rgb"], batch["sparse"], *extra)
        return self.objective(out, batch)


def build_model(variant: str) -> nn.Module:
    """A student (:mod:`training.student`), residual student (:mod:`training.residual`) or the
    residual student with an image student above the LiDAR (:mod:`training.above_lidar`)."""
    if variant in ABOVE_VARIANTS:
        return build_above_student(variant)
    if variant in RESIDUAL_VARIANTS:
        return build_residual_student(variant)
    return build_student(variant)
