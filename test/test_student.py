"""Student networks: shapes, positivity, gradients, bin head invariants, mono mode, ONNX parity."""
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.nn import functional as F  # noqa: E402

from dmd3c_ros.training.student import (VARIANTS, Student, StudentConfig,  # noqa: E402
                                        _binomial5, build_student, count_parameters, gflops,
                                        nearest_fill, sparse_fill)

H, W = 64, 192


def _inputs(batch=2, lidar=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.randn(batch, 3, H, W, generator=gen)
    if not lidar:
        return rgb, torch.zeros(batch, 1, H, W)
    depth = 0.05 + 0.9 * torch.rand(batch, 1, H, W, generator=gen)
    keep = torch.rand(batch, 1, H, W, generator=gen) < 0.05
    return rgb, depth * keep


def _check_outputs(depth, sigma, batch=2):
    for t in (depth, sigma):
        assert t.shape == (batch, 1, H, W)
        assert torch.isfinite(t).all()
        assert (t > 0).all()


@pytest.mark.parametrize("lidar", [True, False], ids=["completion", "mono"])
def test_forward_backward_tiny(lidar):
    torch.manual_seed(0)
    model = build_student("tiny").train()
    rgb, sparse = _inputs(lidar=lidar)
    depth, sigma = model(rgb, sparse)
    _check_outputs(depth, sigma)
    (depth.mean() + sigma.mean()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        if lidar:   # with an empty sparse input the sparse branch's weights see zeros only
            assert param.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_every_variant_forward_and_all_gradients():
    for name in VARIANTS:
        torch.manual_seed(1)
        model = build_student(name).train()
        out = model.forward_with_aux(*_inputs(seed=2))
        _check_outputs(out["depth"], out["uncertainty"])
        loss = out["depth"].mean() + out["uncertainty"].mean() + out["bin_probs"].pow(2).mean()
        loss.backward()
        dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
        assert not dead, f"{name}: no gradient for {dead}"


@pytest.mark.parametrize("variant", ["tiny", "tiny_v2"])
def test_bin_head_invariants_and_aux_shapes(variant):
    torch.manual_seed(0)
    model = build_student(variant).eval()
    cfg = model.config
    b = cfg.bin_stride
    with torch.no_grad():
        for lidar in (True, False):
            out = model.forward_with_aux(*_inputs(lidar=lidar))
            centres, probs = out["bin_centres"], out["bin_probs"]
            assert centres.shape == (2, cfg.bins)
            assert probs.shape == (2, cfg.bins, H // b, W // b)
            assert out["features"].shape == (2, cfg.decoder_widths[-1], H // 2, W // 2)
            assert out["bottleneck"].shape == (2, cfg.widths[-1], H // 32, W // 32)
            assert (centres > 0).all() and (centres <= 1).all()
            assert (centres[:, 1:] > centres[:, :-1]).all()
            assert torch.allclose(probs.sum(dim=1), torch.ones(2, H // b, W // b), atol=1e-5)
            assert (probs >= 0).all()
            coarse = out["coarse_depth"]
            assert (coarse >= centres.min()).all() and (coarse <= centres.max() + 1e-6).all()
            # The refinement is bounded: a factor of at most exp(refine_bound) either way of
            # the base, which is the bin estimate without LiDAR and lies between the bin
            # estimate and the densified LiDAR with it.
            if lidar:
                sparse = _inputs(lidar=True)[1]
                fill = sparse_fill(sparse, (sparse > 0).float())[0]
                low, high = torch.minimum(fill, coarse), torch.maximum(fill, coarse)
                bound = math.exp(cfg.refine_bound) * (1 + 1e-5)
                assert (out["depth"] >= low / bound).all()
                assert (out["depth"] <= high * bound).all()
            else:
                ratio = (out["depth"] / coarse).log().abs()
                assert (ratio <= cfg.refine_bound + 1e-5).all()
            depth, sigma = model(*_inputs(lidar=lidar))
            assert torch.equal(depth, out["depth"]) and torch.equal(sigma, out["uncertainty"])


def test_lidar_changes_the_prediction():
    torch.manual_seed(0)
    model = build_student("tiny").eval()
    rgb, sparse = _inputs()
    with torch.no_grad():
        with_lidar = model(rgb, sparse)[0]
        mono = model(rgb, torch.zeros_like(sparse))[0]
    assert not torch.allclose(with_lidar, mono)


def test_size_must_be_multiple_of_32():
    model = build_student("tiny").eval()
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.zeros(1, 3, 48, 192), torch.zeros(1, 1, 48, 192))


def test_config_validation_and_factory():
    with pytest.raises(ValueError):
        StudentConfig(widths=(8, 16))
    with pytest.raises(ValueError, match="unknown student variant"):
        build_student("huge")
    model = build_student("tiny", bins=8, widths=[8, 16, 16, 32, 32])
    assert model.config.bins == 8 and model.config.widths == (8, 16, 16, 32, 32)
    assert isinstance(Student(), Student)


def test_variant_sizes_and_flops():
    params = {name: count_parameters(build_student(name)) for name in VARIANTS}
    assert 0.1e6 <= params["tiny"] <= 0.35e6
    assert 0.5e6 <= params["small"] <= 1.0e6
    assert 2.0e6 <= params["base"] <= 3.0e6
    model = build_student("tiny")
    g_small, g_large = gflops(model, 64, 192), gflops(model, 128, 384)
    assert g_small > 0 and g_large == pytest.approx(4 * g_small, rel=0.02)  # linear in pixels
    assert model.training  # gflops restores the mode


def test_gflops_counts_conv_and_linear_exactly():
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.dw = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)
            self.fc = torch.nn.Linear(4, 5)

        def forward(self, rgb, sparse):
            x = self.dw(self.conv(rgb))
            return self.fc(x.mean(dim=(2, 3)))

    expected = 8 * 16 * (4 * 3 * 9) + 8 * 16 * (4 * 9) + 4 * 5
    assert gflops(Two(), 8, 16) * 1e9 == pytest.approx(expected)


def test_sparse_fill_coarse_to_fine():
    sparse = torch.zeros(1, 1, 64, 64)
    sparse[0, 0, 5, 5] = 2.0                  # one value: it fills its own 32x32 cell only
    fill, has, level = sparse_fill(sparse, (sparse > 0).float())
    assert torch.all(fill[..., :32, :32] == 2.0) and torch.all(has[..., :32, :32] == 1)
    assert not fill[..., 32:, :].any() and not has[..., :, 32:].any()
    assert level[0, 0, 5, 5] == 0 and level[0, 0, 31, 31] == 1.0 and level[0, 0, 63, 63] == 1.0
    sparse[0, 0, 40, 40] = 4.0                 # another 32-cell keeps its own value
    sparse[0, 0, 4, 4] = 6.0                   # two values in one 2x2 cell: averaged there
    fill, has, level = sparse_fill(sparse, (sparse > 0).float())
    assert fill[0, 0, 63, 63] == 4.0 and has[0, 0, 63, 63] == 1
    assert fill[0, 0, 4, 5] == pytest.approx(4.0) and level[0, 0, 4, 5] == pytest.approx(0.2)
    assert fill[0, 0, 5, 5] == 2.0 and fill[0, 0, 20, 20] == pytest.approx(4.0)
    empty = torch.zeros(1, 1, 64, 64)          # mono: nothing anywhere
    fill, has, _ = sparse_fill(empty, empty)
    assert not fill.any() and not has.any()


def test_nearest_fill_lets_the_nearest_return_win():
    sparse = torch.zeros(1, 1, 40, 40)
    sparse[0, 0, 20, 20] = 0.5                 # one return: fills a neighbourhood, no further
    fill, has = nearest_fill(sparse, (sparse > 0).float())
    assert fill[0, 0, 20, 20] == pytest.approx(0.5) and fill[0, 0, 22, 20] == pytest.approx(0.5)
    # the 5x5 diamond, grown by the 7x7 fill of empty pixels: 11x11 less three per corner
    assert has[0, 0, 25, 20] == 1 and has[0, 0, 24, 24] == 1 and has[0, 0, 25, 25] == 0
    assert has[0, 0, 26, 20] == 0 and has.sum() == 121 - 4 * 3
    assert torch.all((fill > 0) == (has > 0))
    # A near (0.1) and a far (0.6) return three columns apart: next to the near one the near one
    # wins (below the 0.35 that averaging gives), softened by the 5x5 blur; away from the edge
    # each side keeps its own depth.
    sparse[0, 0, 20, 20] = 0.0
    sparse[0, 0, 20, 18], sparse[0, 0, 20, 21] = 0.1, 0.6
    fill, has = nearest_fill(sparse, (sparse > 0).float())
    assert fill[0, 0, 20, 19] < 0.25
    assert fill[0, 0, 20, 15] == pytest.approx(0.1) and fill[0, 0, 20, 26] == pytest.approx(0.6)
    beyond = torch.full((1, 1, 8, 8), 1.2)     # returns beyond 1.01 units are left out
    assert not nearest_fill(beyond, torch.ones_like(beyond))[1].any()
    empty = torch.zeros(1, 1, 16, 16)          # mono: nothing anywhere
    fill, has = nearest_fill(empty, empty)
    assert not fill.any() and not has.any()


def test_binomial_blur_is_the_5x5_convolution():
    x = torch.rand(2, 1, 23, 37)
    k = torch.tensor([1.0, 4, 6, 4, 1]) / 16
    expected = F.conv2d(x, (k[:, None] * k[None, :])[None, None], padding=2)
    assert torch.allclose(_binomial5(x), expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_onnx_export_matches_torch(name, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(3)
    model = build_student(name)
    with torch.no_grad():   # non-trivial batch-norm statistics, then eval mode
        model.train()
        for seed in range(3):
            model(*_inputs(seed=seed))
    model.eval()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but still exact
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, H, W), torch.zeros(1, 1, H, W)), str(path),
                          input_names=["rgb", "sparse"], output_names=["depth", "uncertainty"],
                          opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch"}
                                        for n in ("rgb", "sparse", "depth", "uncertainty")})
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert {op.domain for op in graph.opset_import} <= {"", "ai.onnx"}
    assert {node.domain for node in graph.graph.node} <= {"", "ai.onnx"}
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [17]

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for lidar in (True, False):
        rgb, sparse = _inputs(lidar=lidar, seed=5)
        with torch.no_grad():
            expected = [t.numpy() for t in model(rgb, sparse)]
        got = session.run(["depth", "uncertainty"], {"rgb": rgb.numpy(), "sparse": sparse.numpy()})
        for e, g in zip(expected, got):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)
