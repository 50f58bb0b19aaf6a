"""Losses on hand-made cases: identity, hand-computed values, invariances, masks, empty masks."""
import math

import pytest
import torch

from dmd3c_ros.training.losses import (
    AttentionFeatureDistillation, BinDistillationLoss, FocalDepthResponseLoss, GaussianNLL,
    GradientMatchingLoss, LaplacianNLL, MaskedL1, MaskedL2, PatchwiseNormalizedLoss,
    ScaleShiftInvariantLoss, UncertaintyWeightedDistillation, ViewRelationalLoss,
    align_scale_shift, spatial_attention, teacher_bin_probabilities)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def depth_pair(seed=0, h=16, w=16):
    t = 1 + 9 * rand(2, 1, h, w, seed=seed)
    p = 1 + 9 * rand(2, 1, h, w, seed=seed + 1)
    m = rand(2, 1, h, w, seed=seed + 2) > 0.3
    return p, t, m


# Each case: (module, function building (args, index of the argument that carries the gradient)).
def cases():
    p, t, m = depth_pair()
    fs, ft = rand(2, 4, 8, 8, seed=5), rand(2, 6, 8, 8, seed=6)
    vs, vt = rand(1, 3, 4, 8, 8, seed=7), rand(1, 3, 5, 8, 8, seed=8)
    return [
        (MaskedL1(), (p, t, m)),
        (MaskedL2(), (p, t, m)),
        (ScaleShiftInvariantLoss(), (1 / p, 1 / t, m)),
        (GradientMatchingLoss(), (p, t, m)),
        (PatchwiseNormalizedLoss(patch=8, stride=4), (p, t, m)),
        (PatchwiseNormalizedLoss(mode="random", crops=4), (p, t, m)),
        (BinDistillationLoss(),
         (rand(2, 5, 16, 16, seed=3), teacher_bin_probabilities(t, m, 5), m)),
        (ViewRelationalLoss(grid=2), (vs, vt, None)),
        (AttentionFeatureDistillation(4, 6), (fs, ft, None)),
        (FocalDepthResponseLoss(), (p, t, m)),
        (GaussianNLL(), (p, rand(2, 1, 16, 16, seed=4) + 0.1, t, m)),
        (LaplacianNLL(), (p, rand(2, 1, 16, 16, seed=4) + 0.1, t, m)),
        (UncertaintyWeightedDistillation(learn_uncertainty=True),
         (p, t, rand(2, 1, 16, 16, seed=4), m)),
    ]


@pytest.mark.parametrize("i", range(13))
def test_backpropagates_finite_gradients(i):
    loss_fn, args = cases()[i]
    args = [a.clone().requires_grad_(True) if j == 0 else a for j, a in enumerate(args)]
    loss = loss_fn(*args)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert args[0].grad is not None and torch.isfinite(args[0].grad).all()
    assert args[0].grad.abs().sum() > 0


@pytest.mark.parametrize("i", [0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12])
def test_empty_mask_gives_zero_with_graph(i):
    loss_fn, args = cases()[i]
    args = list(args)
    args[-1] = torch.zeros_like(args[-1])
    args[0] = args[0].clone().requires_grad_(True)
    loss = loss_fn(*args)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(args[0].grad).all()


def test_empty_mask_feature_losses():
    vs = rand(1, 3, 4, 8, 8, seed=7).requires_grad_(True)
    loss = ViewRelationalLoss(grid=2)(vs, rand(1, 3, 4, 8, 8), torch.zeros(1, 3, 1, 8, 8))
    assert loss.item() == 0.0
    loss.backward()
    fs = rand(2, 4, 8, 8).requires_grad_(True)
    loss = AttentionFeatureDistillation(4, 6)(fs, rand(2, 6, 8, 8), torch.zeros(2, 1, 8, 8))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(fs.grad).all()


@pytest.mark.parametrize("i", [0, 1, 2, 3, 4, 5, 9])
def test_masked_out_values_do_not_matter(i):
    loss_fn, args = cases()[i]
    p, t, m = args
    p2, t2 = p.clone(), t.clone()
    p2[~m], t2[~m] = 1e6, float("nan")
    if i == 5:  # random crops: same seed for both calls
        loss_fn2 = PatchwiseNormalizedLoss(mode="random", crops=4)
        assert torch.allclose(loss_fn(p, t, m), loss_fn2(p2, t2, m))
    else:
        assert torch.allclose(loss_fn(p, t, m), loss_fn(p2, t2, m))


@pytest.mark.parametrize("i", [0, 1, 2, 3, 4, 9])
def test_zero_for_identical_inputs(i):
    loss_fn, (p, t, m) = cases()[i]
    assert loss_fn(t, t, m).item() == pytest.approx(0.0, abs=1e-6)


def test_masked_l1_l2_known_values():
    p = torch.tensor([[[[1.0, 2.0], [3.0, 10.0]]]])
    t = torch.tensor([[[[2.0, 2.0], [1.0, 0.0]]]])
    m = torch.tensor([[[[1, 1], [1, 0]]]], dtype=torch.bool)
    assert MaskedL1()(p, t, m).item() == pytest.approx((1 + 0 + 2) / 3)
    assert MaskedL2()(p, t, m).item() == pytest.approx((1 + 0 + 4) / 3)
    # Multi-scale: a half-size constant prediction upsampled, weighted sum.
    loss = MaskedL2(weights=[0.5, 1.0])([torch.full((1, 1, 1, 1), 2.0), p], t, m)
    assert loss.item() == pytest.approx(0.5 * (0 + 0 + 1) / 3 + 5 / 3)


def test_alignment_known_values_and_ssi_invariance():
    t = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    s, sh, ok = align_scale_shift(2 * t - 1, t)
    assert s.item() == pytest.approx(0.5) and sh.item() == pytest.approx(0.5) and ok.item() == 1
    # Hand case: p = (0, 1, 2), d = (0, 2, 1): s = 0.5, t = 0.5, residuals (.5, -1, .5) -> 0.5.
    p = torch.tensor([[[[0.0, 1.0, 2.0]]]])
    d = torch.tensor([[[[0.0, 2.0, 1.0]]]])
    assert ScaleShiftInvariantLoss(grad_weight=0)(p, d).item() == pytest.approx(0.5)
    p, t, m = depth_pair()
    ssi = ScaleShiftInvariantLoss()
    base = ssi(1 / p, 1 / t, m)
    assert base > 0
    assert ssi(3.7 / p + 2.5, 1 / t, m).item() == pytest.approx(base.item(), rel=1e-4)
    assert ssi(0.2 * t - 4, t, m).item() == pytest.approx(0.0, abs=1e-6)


def test_ssi_single_valid_pixel_is_zero():
    p, t, _ = depth_pair()
    m = torch.zeros_like(t, dtype=torch.bool)
    m[0, 0, 3, 3] = True
    pr = p.clone().requires_grad_(True)
    loss = ScaleShiftInvariantLoss()(pr, t, m)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(pr.grad).all()


def test_gradient_matching_known_value_and_offset():
    p, t, m = depth_pair()
    assert GradientMatchingLoss()(t + 3.0, t, m).item() == pytest.approx(0.0, abs=1e-5)
    r = torch.tensor([[[[0.0, 1.0, 3.0]]]])  # residual gradients |1|, |2|; no y-gradients
    assert GradientMatchingLoss(scales=1)(r, torch.zeros_like(r)).item() == pytest.approx(1.5)


def test_patchwise_invariant_to_per_patch_affine():
    p, t, m = depth_pair(h=16, w=16)
    loss = PatchwiseNormalizedLoss(patch=8, stride=8, min_valid=4)
    base = loss(p, t, m)
    scale = torch.tensor([[0.5, 3.0], [2.0, 7.0]]).repeat_interleave(8, 0).repeat_interleave(8, 1)
    shift = torch.tensor([[-1.0, 4.0], [10.0, 0.0]]).repeat_interleave(8, 0).repeat_interleave(8, 1)
    assert loss(p * scale + shift, t, m).item() == pytest.approx(base.item(), rel=1e-4)
    assert loss(t * scale + shift, t, m).item() == pytest.approx(0.0, abs=1e-5)


def test_patchwise_known_value():
    # One 2x2 patch. p = (0,0,0,4): median 0, MAD 1 -> (0,0,0,4); d = (0,1,2,3): median 1, MAD 1
    # -> (-1,0,1,2); L1 = (1 + 0 + 1 + 2) / 4 = 1.
    p = torch.tensor([[[[0.0, 0.0], [0.0, 4.0]]]])
    d = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    assert PatchwiseNormalizedLoss(patch=2, stride=2, min_valid=1)(p, d).item() == pytest.approx(
        1.0, rel=1e-4)


def test_bin_distillation():
    t = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    q = teacher_bin_probabilities(t, None, 4, inverse=True)
    assert torch.allclose(q.sum(1), torch.ones(1, 1, 2, 2))
    assert q[0, :, 0, 0].argmax() == 3 and q[0, :, 1, 1].argmax() == 0  # far -> last bin
    # Scale-and-shift invariant teacher bins.
    assert torch.allclose(q, teacher_bin_probabilities(5 * t + 2, None, 4))
    loss = BinDistillationLoss()
    assert loss(q.log(), q).item() == pytest.approx(0.0, abs=1e-6)
    assert BinDistillationLoss(from_logits=False)(q, q).item() == pytest.approx(0.0, abs=1e-6)
    # Uniform student against a one-hot teacher: KL = log K.
    onehot = torch.zeros(1, 4, 2, 2)
    onehot[:, 0] = 1
    assert loss(torch.zeros(1, 4, 2, 2), onehot).item() == pytest.approx(math.log(4))


def test_view_relational():
    vs = rand(2, 3, 4, 8, 8)
    assert ViewRelationalLoss(grid=2)(vs, vs).item() == pytest.approx(0.0, abs=1e-6)
    # Relations are invariant to a channel permutation / scaling of the teacher.
    assert ViewRelationalLoss(grid=2, intra=True)(vs, 3 * vs.flip(2)).item() == pytest.approx(
        0.0, abs=1e-6)
    assert ViewRelationalLoss(grid=2)(vs, rand(2, 3, 5, 8, 8, seed=9)).item() > 0


def test_attention_feature_distillation():
    f = rand(2, 4, 8, 8)
    assert AttentionFeatureDistillation(4, 4)(f, f).item() == pytest.approx(0.0, abs=1e-6)
    a = spatial_attention(f)
    assert a.mean((2, 3)).allclose(torch.ones(2, 1))
    # Student at half resolution and other width still works; mask at full size.
    loss = AttentionFeatureDistillation(3, 4)(rand(2, 3, 4, 4), f, torch.ones(2, 1, 16, 16))
    assert torch.isfinite(loss) and loss > 0
    # Known value: identical attention (constant maps), features differ by 1 everywhere.
    ones = torch.ones(1, 2, 2, 2)
    assert AttentionFeatureDistillation(2, 2)(2 * ones, ones).item() == pytest.approx(1.0)


def test_focal_response_known_value():
    s = torch.tensor([[[[3.0, 5.0]]]])
    t = torch.tensor([[[[2.0, 5.0]]]])
    expected = (1 - math.exp(-1)) ** 2 * 1 / 2
    assert FocalDepthResponseLoss(gamma=2, tau=1)(s, t).item() == pytest.approx(expected)
    near = FocalDepthResponseLoss(gamma=2, tau=1, near_power=1, d_ref=4.0)(s, t)
    assert near.item() == pytest.approx(expected * 2)


@pytest.mark.parametrize("cls,sampler", [
    (GaussianNLL, lambda g, n: torch.randn(n, generator=g)),
    (LaplacianNLL, lambda g, n: torch.distributions.Laplace(0.0, 1 / math.sqrt(2)).sample((n,))),
])
def test_nll_minimised_at_true_std(cls, sampler):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    true_std = 0.7
    err = (sampler(g, 100_000) * true_std).view(1, 1, 1, -1)
    stds = torch.linspace(0.4, 1.0, 61)
    losses = [cls()(err, torch.full_like(err, s.item()), torch.zeros_like(err)).item()
              for s in stds]
    assert stds[int(torch.tensor(losses).argmin())].item() == pytest.approx(true_std, abs=0.02)


def test_nll_known_values():
    mu, d = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0)
    std = torch.full((1, 1, 1, 1), 2.0)
    assert GaussianNLL()(mu, std, d).item() == pytest.approx(0.5 + math.log(2) + 0.5 * math.log(
        2 * math.pi))
    b = 2 / math.sqrt(2)
    assert LaplacianNLL()(mu, std, d).item() == pytest.approx(2 / b + math.log(2 * b))


def test_uncertainty_weighted_distillation():
    s = torch.tensor([[[[1.0, 3.0]]]])
    t = torch.tensor([[[[0.0, 1.0]]]])
    u = torch.tensor([[[[0.0, 1.0]]]])
    expected = (1.0 + math.exp(-1) * 2) / 2
    assert UncertaintyWeightedDistillation()(s, t, u).item() == pytest.approx(expected)
    learned = UncertaintyWeightedDistillation(learn_uncertainty=True)(s, t, u)
    assert learned.item() == pytest.approx(expected + 0.5)
    assert UncertaintyWeightedDistillation()(t, t, u).item() == 0.0
