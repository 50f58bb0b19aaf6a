"""Training losses: one small ``nn.Module`` each, every one with an explicit validity mask.

Conventions: predictions/targets (N,1,H,W); masks (N,1,H,W) bool or float, 1 = valid,
``None`` = every finite target pixel. Each loss returns a scalar and is zero-safe: with no valid
pixel it returns 0 that is still connected to the prediction's graph (never NaN). Invalid pixels
never reach an arithmetic operation that could produce NaN/Inf (they are replaced with
``torch.where`` first), so changing masked-out values never changes a loss or its gradients.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6


def _valid(mask: Tensor | None, ref: Tensor) -> Tensor:
    """Float mask (same shape as ``ref``) that is 0 wherever ``ref`` is not finite."""
    m = torch.ones_like(ref) if mask is None else mask.to(ref.dtype).expand_as(ref)
    return torch.where(torch.isfinite(ref), m, torch.zeros_like(m))


def _clean(x: Tensor, m: Tensor) -> Tensor:
    return torch.where(m > 0, x, torch.zeros_like(x))


def _wmean(err: Tensor, m: Tensor) -> Tensor:
    """sum(m * err) / sum(m); exactly 0 (graph intact) when sum(m) = 0."""
    return (_clean(err, m) * m).sum() / m.sum().clamp_min(EPS)


class MaskedL1(nn.Module):
    """Mean absolute error over valid pixels: sum m|p - t| / sum m (metres for metric depth)."""

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, target)
        return _wmean((pred - _clean(target, m)).abs(), m)


class MaskedL2(nn.Module):
    """Mean squared error over valid pixels: sum m(p - t)^2 / sum m (square metres).

    DMD3C's stage-2 sparse term applies it to every decoder output; pass a sequence of predictions
    (each resized bilinearly to the target, the mask is never resized) with ``weights`` for that,
    e.g. ``DMD3C_SCALE_WEIGHTS``."""

    def __init__(self, weights: Sequence[float] | None = None):
        super().__init__()
        self.weights = None if weights is None else list(weights)

    def forward(self, pred: Tensor | Sequence[Tensor], target: Tensor,
                mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, target)
        t = _clean(target, m)
        preds = [pred] if isinstance(pred, Tensor) else list(pred)
        weights = self.weights or [1.0] * len(preds)
        if len(weights) != len(preds):
            raise ValueError(f"{len(preds)} predictions but {len(weights)} weights")
        total = 0.0
        for w, p in zip(weights, preds):
            if p.shape[-2:] != t.shape[-2:]:
                p = F.interpolate(p, size=t.shape[-2:], mode="bilinear", align_corners=False)
            total = total + w * _wmean((p - t) ** 2, m)
        return total


DMD3C_SCALE_WEIGHTS = (2 ** -10, 2 ** -8, 2 ** -6, 2 ** -4, 2 ** -2, 1.0)


def align_scale_shift(pred: Tensor, target: Tensor, mask: Tensor | None = None
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form per-image least squares (MiDaS, Ranftl et al. TPAMI 2020, eq. 4):
    (s, t) = argmin sum m (s p + t - d)^2. Returns (s, t) of shape (N,1,1,1) and a (N,1,1,1) flag
    that is 0 for images with fewer than two distinct valid values (their s = t = 0).
    Gradients flow through s and t, as in MiDaS."""
    m = _valid(mask, target)
    p, d = _clean(pred, m).double(), _clean(target, m).double()
    md = m.double()
    a00, a01, a11 = (md * p * p).sum((1, 2, 3)), (md * p).sum((1, 2, 3)), md.sum((1, 2, 3))
    b0, b1 = (md * p * d).sum((1, 2, 3)), (md * d).sum((1, 2, 3))
    det = a00 * a11 - a01 * a01
    ok = det > 1e-12 * (a00 * a11).clamp_min(1e-30)
    det = torch.where(ok, det, torch.ones_like(det))
    s = torch.where(ok, (a11 * b0 - a01 * b1) / det, torch.zeros_like(det))
    t = torch.where(ok, (a00 * b1 - a01 * b0) / det, torch.zeros_like(det))
    shape = (-1, 1, 1, 1)
    return (s.to(pred.dtype).view(shape), t.to(pred.dtype).view(shape),
            ok.to(pred.dtype).view(shape))


class GradientMatchingLoss(nn.Module):
    """MiDaS multi-scale gradient matching on the residual R = p - t (p already aligned):
    sum_k sum m_k(|dx R_k| + |dy R_k|) / sum m_k, R_k and m_k sub-sampled by 2^k, k < ``scales``;
    a gradient counts only where both of its pixels are valid. Units of the inputs (disparity).
    Zero for any constant offset between prediction and target."""

    def __init__(self, scales: int = 4):
        super().__init__()
        self.scales = scales

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, target)
        r = _clean(pred - _clean(target, m), m)
        total = pred.sum() * 0.0
        for k in range(self.scales):
            step = 2 ** k
            rk, mk = r[..., ::step, ::step], m[..., ::step, ::step]
            mx = mk[..., :, 1:] * mk[..., :, :-1]
            my = mk[..., 1:, :] * mk[..., :-1, :]
            gx = (rk[..., :, 1:] - rk[..., :, :-1]).abs() * mx
            gy = (rk[..., 1:, :] - rk[..., :-1, :]).abs() * my
            total = total + (gx.sum() + gy.sum()) / (mx.sum() + my.sum()).clamp_min(EPS)
        return total


class ScaleShiftInvariantLoss(nn.Module):
    """MiDaS-style scale-and-shift-invariant loss as used in DMD3Cpp (trimming-free):
    L = sum m (s p + t - d)^2 / sum m + alpha * GradientMatching(s p + t, d), (s, t) from
    ``align_scale_shift`` per image, alpha = 0.5 with 4 scales.

    Space: inverse depth (disparity). ``target`` is the teacher's relative inverse depth
    (unitless, Depth Anything), ``pred`` the student's inverse depth 1/depth (1/m); call with
    ``1 / depth.clamp_min(eps)``. The loss is in the target's (unitless) units and is invariant to
    any affine change a p + b (a != 0) of the prediction. Images whose alignment is undefined
    (fewer than two distinct valid pixels) contribute nothing."""

    def __init__(self, grad_weight: float = 0.5, scales: int = 4):
        super().__init__()
        self.grad_weight = grad_weight
        self.grad = GradientMatchingLoss(scales)

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, target)
        s, t, ok = align_scale_shift(pred, target, m)
        m = m * ok
        aligned = s * pred + t
        loss = _wmean((aligned - _clean(target, m)) ** 2, m)
        if self.grad_weight:
            loss = loss + self.grad_weight * self.grad(aligned, target, m)
        return loss


def _median_mad_l1(p: Tensor, d: Tensor, m: Tensor, min_valid: int) -> tuple[Tensor, Tensor]:
    """p, d, m: (B, K) rows = patches. Per row normalise x -> (x - median) / (MAD + eps) for p and
    d separately (median = lower masked median, MAD = mean |x - median|) and return the masked mean
    L1 per row and a flag for rows with at least ``min_valid`` valid pixels."""
    def norm(x: Tensor) -> Tensor:
        big = torch.finfo(x.dtype).max
        srt = torch.where(m > 0, x, torch.full_like(x, big)).sort(dim=1).values
        idx = ((count - 1).clamp_min(0) // 2).long().unsqueeze(1)
        med = srt.gather(1, idx)
        dev = _clean((x - med).abs(), m)
        mad = dev.sum(1, keepdim=True) / count.clamp_min(1).unsqueeze(1)
        return (x - med) / (mad + EPS)

    count = m.sum(1)
    p, d = _clean(p, m), _clean(d, m)
    err = _clean((norm(p) - norm(d)).abs(), m).sum(1) / count.clamp_min(1)
    return err, (count >= max(min_valid, 1)).to(p.dtype)


class PatchwiseNormalizedLoss(nn.Module):
    """DMD3C's median/MAD-normalised L1 on patches ("random proposal normalisation").

    For each patch, prediction and target are normalised separately,
    n(x) = (x - median(x)) / (mean|x - median(x)| + eps), and L = mean over valid pixels of
    |n(p) - n(d)|, averaged over patches with >= ``min_valid`` valid pixels. Unitless; invariant
    to any per-patch change a x + b with a > 0 of either input (up to eps). Space: whatever the
    inputs are (DMD3C feeds the teacher's relative disparity and the student's output).

    ``mode="grid"``: patches of ``patch`` px with ``stride`` (DMD3Cpp: 96 / 48; the image must be at
    least one patch). ``mode="random"``: ``crops`` random crops per call whose sides are a uniform
    fraction in ``side_range`` of the image height and width (DMD3C: 32, 0.125-0.5), drawn from a
    generator seeded with ``seed`` (the same crops for the whole batch)."""

    def __init__(self, mode: str = "grid", patch: int = 96, stride: int = 48, crops: int = 32,
                 side_range: tuple[float, float] = (0.125, 0.5), min_valid: int = 8,
                 seed: int = 0):
        super().__init__()
        if mode not in ("grid", "random"):
            raise ValueError(f"mode must be 'grid' or 'random', not {mode!r}")
        self.mode, self.patch, self.stride, self.crops = mode, patch, stride, crops
        self.side_range, self.min_valid = side_range, min_valid
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, target)
        d = _clean(target, m)
        n, _, h, w = pred.shape
        if self.mode == "grid":
            cols = [F.unfold(x, self.patch, stride=self.stride) for x in (pred, d, m)]
            rows = [c.transpose(1, 2).reshape(-1, self.patch * self.patch) for c in cols]
            err, ok = _median_mad_l1(*rows, self.min_valid)
        else:
            errs, oks = [], []
            lo, hi = self.side_range
            for _ in range(self.crops):
                f = lo + (hi - lo) * torch.rand((), generator=self.generator).item()
                ch, cw = max(2, round(f * h)), max(2, round(f * w))
                y = int(torch.randint(0, h - ch + 1, (), generator=self.generator))
                x = int(torch.randint(0, w - cw + 1, (), generator=self.generator))
                rows = [t[..., y:y + ch, x:x + cw].reshape(n, -1) for t in (pred, d, m)]
                e, o = _median_mad_l1(*rows, self.min_valid)
                errs.append(e)
                oks.append(o)
            err, ok = torch.cat(errs), torch.cat(oks)
        return (err * ok).sum() / ok.sum().clamp_min(1)


def teacher_bin_probabilities(teacher: Tensor, mask: Tensor | None, bins: int,
                              inverse: bool = True, sigma: float | None = None) -> Tensor:
    """Scale-invariant bin probabilities (N,bins,H,W) from a teacher's relative depth (N,1,H,W).

    Per image the valid teacher values are min-max normalised to u in [0, 1] (scale and shift
    removed); with ``inverse`` (relative disparity, Depth Anything) u -> 1 - u so that bin 0 is the
    nearest, like the student's increasing metric bin centres. Each pixel is softly assigned to
    ``bins`` uniform centres c_k = (k + 0.5) / bins: p_k ~ exp(-(u - c_k)^2 / (2 sigma^2)),
    sigma = one bin width by default. Invalid pixels get a uniform distribution (mask them)."""
    m = _valid(mask, teacher)
    x = _clean(teacher, m)
    big = torch.finfo(x.dtype).max
    lo = torch.where(m > 0, x, torch.full_like(x, big)).amin((1, 2, 3), keepdim=True)
    hi = torch.where(m > 0, x, torch.full_like(x, -big)).amax((1, 2, 3), keepdim=True)
    has = m.amax((1, 2, 3), keepdim=True) > 0
    lo, hi = torch.where(has, lo, torch.zeros_like(lo)), torch.where(has, hi, torch.ones_like(hi))
    u = ((x - lo) / (hi - lo).clamp_min(EPS)).clamp(0, 1)
    u = 1 - u if inverse else u
    centres = (torch.arange(bins, dtype=x.dtype, device=x.device) + 0.5).view(1, -1, 1, 1) / bins
    sigma = 1.0 / bins if sigma is None else sigma
    logits = -((u - centres) ** 2) / (2 * sigma ** 2)
    logits = torch.where(m > 0, logits, torch.zeros_like(logits))
    return logits.softmax(1)


def metric_bin_probabilities(depth: Tensor, centres: Tensor, mask: Tensor | None = None) -> Tensor:
    """Soft assignment (N,K,H,W) of a metric depth map (N,1,H,W) to per-image bin centres (N,K),
    both in the same units (the student's network units): p_k ~ exp(-(d - c_k)^2 / (2 w_k^2)),
    w_k the local spacing of the centres (half the distance between the neighbours of c_k), so a
    depth between two centres is shared by them. Used to distil a teacher, first aligned to metric
    scale, onto the student's own metric bins (the "cross interaction": scale-invariant structure
    from the teacher, metric centres from the student). Invalid pixels get a uniform distribution
    (mask them in the loss). ``centres`` are detached."""
    c = centres.detach()
    gaps = c[:, 1:] - c[:, :-1]
    width = torch.cat([gaps[:, :1], 0.5 * (gaps[:, 1:] + gaps[:, :-1]), gaps[:, -1:]], 1)
    m = _valid(mask, depth)
    d = _clean(depth, m).detach()
    logits = -((d - c[:, :, None, None]) ** 2) / (2 * width[:, :, None, None].clamp_min(EPS) ** 2)
    logits = torch.where(m > 0, logits, torch.zeros_like(logits))
    return logits.softmax(1)


class BinDistillationLoss(nn.Module):
    """Cross-interaction bin distillation (full-surround paper, arXiv 2512.08700; its exact formula
    is not public, this is our reading): the student's per-pixel bin distribution over its own
    per-image metric bin centres is matched to the teacher's scale-invariant bin probabilities
    (``teacher_bin_probabilities``) with KL(q_teacher || p_student) = sum_k q_k (log q_k - log p_k),
    averaged over valid pixels (nats). The metric bin centres are learnt from ground
    truth elsewhere.
    ``student`` (N,K,H,W) logits (``from_logits``) or probabilities; ``teacher_probs`` (N,K,H,W)."""

    def __init__(self, from_logits: bool = True):
        super().__init__()
        self.from_logits = from_logits

    def forward(self, student: Tensor, teacher_probs: Tensor,
                mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, teacher_probs[:, :1]) * torch.isfinite(teacher_probs).all(1, keepdim=True)
        q = _clean(teacher_probs, m.expand_as(teacher_probs))
        logp = student.log_softmax(1) if self.from_logits else student.clamp_min(1e-12).log()
        kl = (torch.xlogy(q, q) - q * logp).sum(1, keepdim=True)
        return _wmean(kl, m)


class ViewRelationalLoss(nn.Module):
    """View-relational distillation between adjacent surround cameras (arXiv 2512.08700; exact
    formula not public, our reading). Each view's features (N,V,C,H,W) are average-pooled to a
    ``grid`` x ``grid`` array of tokens, L2-normalised over channels; for each adjacent pair (a, b)
    the relation matrix R_ab = cos(tokens_a, tokens_b) ((g^2) x (g^2), plus R_aa if ``intra``) of
    the student must match the teacher's: L = mean over pairs and valid token pairs of
    (R^s - R^t)^2. Relations are channel-agnostic, so student and teacher widths may differ.
    ``pairs`` default: the ring (i, i + 1 mod V). ``mask`` (N,V,1,H,W): a token is valid when at
    least half of its pixels are (restrict it to the overlap regions to use only those)."""

    def __init__(self, grid: int = 4, pairs: Sequence[tuple[int, int]] | None = None,
                 intra: bool = False):
        super().__init__()
        self.grid, self.pairs, self.intra = grid, pairs, intra

    def _tokens(self, f: Tensor) -> Tensor:
        n, v, c = f.shape[:3]
        t = F.adaptive_avg_pool2d(f.flatten(0, 1), self.grid).flatten(2)  # (NV, C, G^2)
        return F.normalize(t, dim=1, eps=EPS).view(n, v, c, -1)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
        n, v = student.shape[:2]
        if mask is None:
            mask = torch.ones_like(student[:, :, :1])
        tok_m = F.adaptive_avg_pool2d(mask.to(student.dtype).flatten(0, 1), self.grid)
        tok_m = (tok_m >= 0.5).to(student.dtype).view(n, v, -1)  # (N, V, G^2)
        ts, tt = self._tokens(student), self._tokens(teacher.detach())
        pairs = list(self.pairs) if self.pairs is not None else [(i, (i + 1) % v) for i in range(v)]
        if self.intra:
            pairs += [(i, i) for i in range(v)]
        total, count = student.sum() * 0.0, student.new_zeros(())
        for a, b in pairs:
            rs = torch.einsum("ncg,nch->ngh", ts[:, a], ts[:, b])
            rt = torch.einsum("ncg,nch->ngh", tt[:, a], tt[:, b])
            w = tok_m[:, a].unsqueeze(2) * tok_m[:, b].unsqueeze(1)
            total = total + ((rs - rt) ** 2 * w).sum()
            count = count + w.sum()
        return total / count.clamp_min(EPS)


def spatial_attention(f: Tensor, p: float = 2.0) -> Tensor:
    """A(F) = mean_c |F|^p normalised to mean 1 over each image (N,1,H,W); unitless."""
    a = f.abs().pow(p).mean(1, keepdim=True)
    return a / a.mean((2, 3), keepdim=True).clamp_min(EPS)


class AttentionFeatureDistillation(nn.Module):
    """Attention-adapted feature distillation (ADU-Depth, arXiv 2309.14744; formula not public,
    our reading). The student map is brought to the teacher's width by a 1x1 conv adapter (identity
    when widths match) and to its size bilinearly; with A_t the teacher's spatial attention
    (``spatial_attention``, detached):
    L = sum m A_t ||adapt(F_s) - F_t||^2 / (C sum m) + beta * sum m (A_s - A_t)^2 / sum m,
    A_s from the adapted student. Units: feature units squared. ``mask`` at any size (nearest)."""

    def __init__(self, student_channels: int, teacher_channels: int, p: float = 2.0,
                 beta: float = 1.0):
        super().__init__()
        self.adapter = (nn.Identity() if student_channels == teacher_channels else
                        nn.Conv2d(student_channels, teacher_channels, 1))
        self.p, self.beta = p, beta

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
        fs = self.adapter(student)
        if fs.shape[-2:] != teacher.shape[-2:]:
            fs = F.interpolate(fs, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
        ft = teacher.detach()
        if mask is None:
            m = torch.ones_like(ft[:, :1])
        else:
            m = F.interpolate(mask.to(ft.dtype), size=ft.shape[-2:], mode="nearest")
        m = m * torch.isfinite(ft).all(1, keepdim=True)
        ft = _clean(ft, m.expand_as(ft))
        a_t = spatial_attention(ft, self.p)
        feat = a_t * ((fs - ft) ** 2).mean(1, keepdim=True)
        loss = _wmean(feat, m)
        if self.beta:
            loss = loss + self.beta * _wmean((spatial_attention(fs, self.p) - a_t) ** 2, m)
        return loss


class FocalDepthResponseLoss(nn.Module):
    """Focal-depth-adapted response distillation (ADU-Depth, arXiv 2309.14744; formula not public,
    our reading): the student's depth is distilled towards the teacher's (metric, e.g. stereo) with
    L1 modulated like a focal loss, so that pixels the student already matches count less, and
    optionally towards near range:
    w = (1 - exp(-|e| / tau))^gamma * (d_ref / max(d_t, eps))^near_power  (detached),
    L = sum m w |e| / sum m, e = d_s - d_t. Units: metres (w unitless; tau and d_ref in metres)."""

    def __init__(self, gamma: float = 2.0, tau: float = 1.0, near_power: float = 0.0,
                 d_ref: float = 10.0):
        super().__init__()
        self.gamma, self.tau, self.near_power, self.d_ref = gamma, tau, near_power, d_ref

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, teacher)
        t = _clean(teacher, m).detach()
        err = (student - t).abs()
        with torch.no_grad():
            w = (1 - torch.exp(-err / self.tau)).pow(self.gamma)
            if self.near_power:
                w = w * (self.d_ref / t.clamp_min(EPS)).pow(self.near_power)
        return _wmean(w * err, m)


class _StdNLL(nn.Module):
    """A negative log-likelihood of a predicted std sigma, clamped to at least ``min_std``."""

    def __init__(self, min_std: float = 1e-3):
        super().__init__()
        self.min_std = min_std


class GaussianNLL(_StdNLL):
    """Gaussian negative log-likelihood with a predicted std sigma (metres, clamped >= min_std):
    L = mean_m [ (d - mu)^2 / (2 sigma^2) + log sigma + log(2 pi) / 2 ] (nats per pixel).
    Per pixel minimised at sigma = |d - mu|; over Gaussian errors at their true std."""

    def forward(self, pred: Tensor, std: Tensor, target: Tensor,
                mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, target)
        s = std.clamp_min(self.min_std)
        nll = (pred - _clean(target, m)) ** 2 / (2 * s ** 2) + s.log() + 0.5 * math.log(2 * math.pi)
        return _wmean(nll, m)


class LaplacianNLL(_StdNLL):
    """Laplacian negative log-likelihood parameterised by its std sigma (b = sigma / sqrt 2):
    L = mean_m [ |d - mu| / b + log(2 b) ] (nats per pixel). Per pixel minimised at
    b = |d - mu|; over Laplacian errors at their true std."""

    def forward(self, pred: Tensor, std: Tensor, target: Tensor,
                mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, target)
        b = std.clamp_min(self.min_std) / math.sqrt(2.0)
        return _wmean((pred - _clean(target, m)).abs() / b + (2 * b).log(), m)


class UncertaintyWeightedDistillation(nn.Module):
    """Distillation weighted by confidence (ADU-Depth's uncertainty guidance, our reading):
    L = sum m exp(-u / u0) |d_s - d_t| / sum m, with u the teacher's or the student's predicted std
    (metres; u0 in metres). With ``learn_uncertainty`` the weight keeps its gradient and the
    regulariser u / u0 is added (Kendall and Gal style, so u cannot grow without cost); otherwise
    u is detached. Units: metres."""

    def __init__(self, u0: float = 1.0, learn_uncertainty: bool = False):
        super().__init__()
        self.u0, self.learn = u0, learn_uncertainty

    def forward(self, student: Tensor, teacher: Tensor, uncertainty: Tensor,
                mask: Tensor | None = None) -> Tensor:
        m = _valid(mask, teacher) * torch.isfinite(uncertainty)
        u = _clean(uncertainty, m) / self.u0
        u = u if self.learn else u.detach()
        err = (student - _clean(teacher, m).detach()).abs()
        loss = torch.exp(-u) * err + (u if self.learn else 0.0)
        return _wmean(loss, m)
