"""Losses between the views of a surround rig (issue 18), on a ``PairSampler`` batch: the B a
crops, then the B b crops, and K correspondences per pair (``training.multiview``).

- :func:`pair_depths`: for each correspondence, a's depth at p carried into camera b
  (alpha x d_a(p) + beta) and b's depth where p's point lands (bilinear, ``grid_sample``).
- :class:`CrossViewConsistency` (term ``xview``): mean |log carried - log b's depth|: zero when
  the two views agree on every shared point.
- :class:`ViewRelationalDistillation` (term ``vrel``): the relations between the views, the
  K x K matrix of log depth differences between a's points (carried into b) and b's, of the
  student against the same matrix of the teacher (each view's teacher aligned to metric depth):
  zero when the student relates the views as the teacher does, growing with the difference. The
  teacher's own cross-view inconsistency is in its matrix, so this term transfers structure,
  while ``xview`` asks for agreement itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_DEPTH = 1e-4   # network units; below it a depth counts as none


def pair_depths(depth: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor]:
    """(carried (B, K), other (B, K), valid (B, K) bool) of ``depth`` (2B, 1, h, w)."""
    p, q = batch["xview_p"], batch["xview_q"]
    pairs = p.shape[0]
    first, second = depth[:pairs, 0], depth[pairs:, 0]
    index = torch.arange(pairs, device=depth.device)[:, None].expand_as(p[..., 0])
    at_p = first[index, p[..., 0], p[..., 1]]
    carried = batch["xview_alpha"] * at_p + batch["xview_beta"]
    other = F.grid_sample(second[:, None], q[:, :, None, :].to(depth.dtype), mode="bilinear",
                          align_corners=True)[:, 0, :, 0]
    valid = (at_p > MIN_DEPTH) & (carried > MIN_DEPTH) & (other > MIN_DEPTH)
    return carried, other, valid


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp_min(MIN_DEPTH))


class CrossViewConsistency(nn.Module):
    """Mean |log(carried) - log(other)| over the valid correspondences (0 when none)."""

    def forward(self, depth: torch.Tensor, batch: dict) -> torch.Tensor:
        carried, other, valid = pair_depths(depth, batch)
        if not valid.any():
            return depth.sum() * 0.0
        return (_log(carried) - _log(other)).abs()[valid].mean()


class ViewRelationalDistillation(nn.Module):
    """Mean |R_student - R_teacher| over valid (i, j), R[i, j] = log carried_i - log other_j
    within each pair (0 when no pair has a valid correspondence)."""

    def forward(self, depth: torch.Tensor, teacher: torch.Tensor, batch: dict) -> torch.Tensor:
        """depth, teacher: (2B, 1, h, w) network units; the teacher 0 where it has no value."""
        carried, other, valid = pair_depths(depth, batch)
        t_carried, t_other, t_valid = pair_depths(teacher.detach(), batch)
        ok = valid & t_valid
        relation = _log(carried)[:, :, None] - _log(other)[:, None, :]
        t_relation = _log(t_carried)[:, :, None] - _log(t_other)[:, None, :]
        both = ok[:, :, None] & ok[:, None, :]
        if not both.any():
            return depth.sum() * 0.0
        return (relation - t_relation).abs()[both].mean()


__all__ = ["CrossViewConsistency", "ViewRelationalDistillation", "pair_depths"]
