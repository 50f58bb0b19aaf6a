"""The residual student (training/residual.py): identity start, range, gradients, export parity,
the runtime's classical pre-step, and the camera-only fallback its spec names."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from dmd3c_ros.core.classical import complete_classical  # noqa: E402
from dmd3c_ros.core.input_transform import InputTransform  # noqa: E402
from dmd3c_ros.runtime.classical_backend import ClassicalBackend  # noqa: E402
from dmd3c_ros.runtime.factory import create_backend  # noqa: E402
from dmd3c_ros.runtime.mono_fallback import MonoFallbackBackend  # noqa: E402
from dmd3c_ros.runtime.spec import load_spec  # noqa: E402
from dmd3c_ros.training.export import export_student  # noqa: E402
from dmd3c_ros.training.parity import residual_input, sample_inputs  # noqa: E402
from dmd3c_ros.training.residual import (_halve, build_residual_student,  # noqa: E402
                                         classical_features)
from dmd3c_ros.training.student import build_student  # noqa: E402

SIZE = (64, 128)
SCALE = 120.0   # metres per network unit, the residual student's range end


VARIANTS = ("residual", "residual_geo_half")  # full resolution; halved inside the graph


def _inputs(seed=0, batch=2, size=SIZE):
    rgb, sparse = sample_inputs(size, seed=seed, batch=batch)
    return (torch.from_numpy(rgb), torch.from_numpy(sparse),
            torch.from_numpy(residual_input(sparse, 1.0)))


def _perturb(model, seed=0):
    """Weights as after training: the zero-initialised correction is no longer zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.out.weight.add_(0.2 * torch.randn(model.out.weight.shape, generator=generator))
        model.out.bias.add_(0.1)
        model.train()
        for s in range(2):  # batch-norm statistics of real inputs
            model(*_inputs(s))
    return model.eval()


@pytest.mark.parametrize("variant, size", [("residual", SIZE), ("residual_geo_half", SIZE),
                                           ("residual_geo_half", (48, 80))])
def test_untrained_student_returns_the_classical_completion_exactly(variant, size):
    model = build_residual_student(variant).eval()
    rgb, sparse, classical = _inputs(size=size)
    with torch.no_grad():
        depth, sigma = model(rgb, sparse, classical)
    assert torch.equal(depth, classical)     # bit for bit, every pixel, every frame
    assert (sigma > 0).all() and torch.isfinite(sigma).all()


@pytest.mark.parametrize("resolution, shape", [("image", (75, 150)), ("image", (96, 150)),
                                               ("input", SIZE)])
def test_untrained_student_through_the_runtime_equals_the_classical_backend(
        tmp_path, resolution, shape):
    """``image``: the classical completion of the camera-size map times the correction (and
    the classical completion itself outside the network's crop), so the identity holds for any
    camera size, on every pixel; ``input``: at the network's size (no resize here)."""
    path = _export_untrained(tmp_path, classical_resolution=resolution)
    assert load_spec(path).classical_resolution == resolution
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    sparse = np.where(rng.random(shape) < 0.06, rng.uniform(1, 110, shape), 0).astype(np.float32)
    expected = ClassicalBackend(max_depth=SCALE).infer(rgb, sparse).depth
    for name in ("onnxruntime", "torch"):
        prediction = create_backend(name, path).infer(rgb, sparse)
        got = prediction.depth
        in_range = np.isfinite(expected) & (expected >= 0.5)   # the spec clips to 0.5-120 m
        if resolution == "input":   # rows outside the network's crop of the image: NaN
            in_range &= np.isfinite(got)
        else:   # every pixel, the rows outside the network's crop too (no uncertainty there)
            assert np.isfinite(got).sum() == np.isfinite(expected).sum()
            x0, y0, cw, ch = InputTransform(shape[::-1], load_spec(path).input_wh).crop
            outside = np.ones(shape, bool)
            outside[y0:y0 + ch, x0:x0 + cw] = False
            assert outside.any() == (shape == (96, 150))   # (75, 150): resized, not cropped
            assert np.isfinite(prediction.depth[outside]).all()
            assert np.isnan(prediction.uncertainty[outside]).all()
        np.testing.assert_allclose(got[in_range], expected[in_range], rtol=1e-5)
        assert not np.isfinite(got[~np.isfinite(expected)]).any()


@pytest.mark.parametrize("variant", VARIANTS)
def test_correction_is_bounded_and_range_reaches_120_m(variant):
    model = _perturb(build_residual_student(variant))
    rgb, sparse, classical = _inputs(1)
    with torch.no_grad():
        out = model.forward_with_aux(rgb, sparse, classical)
    bound = model.config.bound
    assert out["correction"].abs().max() <= bound
    ratio = out["depth"][classical > 0] / classical[classical > 0]
    assert ratio.min() >= np.exp(-bound) - 1e-6 and ratio.max() <= np.exp(bound) + 1e-6
    assert not torch.equal(out["depth"], classical)       # trained weights do correct
    assert (out["depth"][classical == 0] == 0).all()       # no classical value, no depth
    # 110 m in, more than the old 80 m range out: nothing caps the network below 120 m.
    far = torch.full_like(classical, 110.0 / SCALE)
    with torch.no_grad():
        model.out.bias[0] = 5.0                           # push towards the upper bound
        depth = model(rgb, sparse, far)[0] * SCALE
    assert depth.max() > 120.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_backward_reaches_every_parameter(variant):
    model = _perturb(build_residual_student(variant)).train()
    out = model.forward_with_aux(*_inputs(2))
    loss = out["depth"].abs().mean() + out["uncertainty"].mean() + out["features"].mean()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_features_are_finite_and_see_disagreeing_returns():
    sparse = torch.zeros(1, 1, 32, 32)
    sparse[0, 0, 10, 10] = 0.5                      # a return behind a nearer classical answer
    classical = torch.full_like(sparse, 0.1)
    features = classical_features(sparse, classical)
    assert torch.isfinite(features).all() and features.shape[1] == 7
    assert features[0, 4, 10, 10] == pytest.approx(float(np.log(5.0)))   # log ratio at the return
    assert features[0, 4].abs().sum() == features[0, 4, 10, 10].abs()     # nowhere else


def _export_untrained(tmp_path, mono_model=None, classical_resolution="image"):
    from safetensors.torch import save_file
    model = build_residual_student()
    weights = tmp_path / "residual.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
              str(weights), metadata={"variant": "residual"})
    return export_student(weights, tmp_path, "residual", input_size=SIZE, depth_scale=SCALE,
                          depth_range=(0.5, SCALE), mono_model=mono_model,
                          classical_resolution=classical_resolution)["spec"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_parity_and_spec_of_the_new_graph(tmp_path, variant):
    from safetensors.torch import save_file
    model = _perturb(build_residual_student(variant))
    weights = tmp_path / "trained.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
              str(weights), metadata={"variant": variant})
    result = export_student(weights, tmp_path, "r", input_size=SIZE, depth_scale=SCALE,
                            depth_range=(0.5, SCALE))
    assert result["parity"]["max_rel_err"] <= 1e-3 and "mono" not in result["parity"]
    spec = load_spec(result["spec"])
    assert spec.classical_input == "classical" and not spec.supports_mono
    assert spec.rgb_used == model.uses_rgb == (variant == "residual")
    # the full-resolution student takes the runtime's feature maps; the halved one cannot
    second = "features" if variant == "residual" else "sparse"
    assert [name for name, _ in spec.inputs] == ["rgb", second, "classical"]
    assert spec.depth_range == (0.5, SCALE) and spec.depth_scale == SCALE
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (50, 90, 3), dtype=np.uint8)      # resized by the runtime
    sparse = np.where(rng.random((50, 90)) < 0.06, rng.uniform(2, 90, (50, 90)), 0)
    a = create_backend("onnxruntime", spec).infer(rgb, sparse.astype(np.float32))
    b = create_backend("torch", spec).infer(rgb, sparse.astype(np.float32))
    np.testing.assert_allclose(a.depth, b.depth, rtol=1e-3)
    with pytest.raises(Exception, match="needs LiDAR"):
        create_backend("onnxruntime", spec).infer(rgb, None)


def test_feature_maps_outside_the_graph_give_the_graphs_answer(tmp_path):
    """The same weights exported with the maps made in the graph and by the runtime
    (core.features): the same depths through ONNX Runtime and the torch backend."""
    from safetensors.torch import save_file
    model = _perturb(build_residual_student("residual_geo"))
    weights = tmp_path / "geo.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
              str(weights), metadata={"variant": "residual_geo"})
    specs = {where: load_spec(export_student(weights, tmp_path / where, "geo", input_size=SIZE,
                                             depth_scale=SCALE, depth_range=(0.5, SCALE),
                                             features=where)["spec"])
             for where in ("graph", "outside")}
    assert specs["graph"].features_input is None
    assert specs["outside"].features_input == "features"
    assert specs["outside"].torch.kwargs == {"variant": "residual_geo", "features_input": True}
    assert "features: features" in specs["outside"].path.read_text()
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (50, 90, 3), dtype=np.uint8)
    sparse = np.where(rng.random((50, 90)) < 0.06, rng.uniform(2, 90, (50, 90)), 0)
    sparse = sparse.astype(np.float32)
    reference = create_backend("onnxruntime", specs["graph"]).infer(rgb, sparse).depth
    assert np.isfinite(reference).any()
    for backend in ("onnxruntime", "torch"):
        depth = create_backend(backend, specs["outside"]).infer(rgb, sparse).depth
        np.testing.assert_allclose(depth, reference, rtol=1e-5)
    with pytest.raises(ValueError, match="input stride 1"):
        export_student(weights, tmp_path / "half", "h", variant="residual_geo_half",
                       input_size=SIZE, depth_scale=SCALE, depth_range=(0.5, SCALE),
                       features="outside")


def test_half_resolution_inputs_keep_the_nearest_return_and_pad_to_32():
    sparse = torch.zeros(1, 1, 4, 6)
    sparse[0, 0, 0, 0], sparse[0, 0, 1, 1] = 0.5, 0.2    # block (0, 0): the nearer one wins
    sparse[0, 0, 3, 5] = 0.7                             # block (1, 2): the only return
    classical = torch.arange(24.0).reshape(1, 1, 4, 6)
    half_sparse, half_classical = _halve(sparse, classical)
    assert torch.equal(half_sparse, torch.tensor([[[[0.2, 0.0, 0.0], [0.0, 0.0, 0.7]]]]))
    assert half_classical.tolist() == [[[[0.0, 2.0, 4.0], [12.0, 14.0, 16.0]]]]
    model = build_residual_student("residual_geo_half").eval()
    with pytest.raises(ValueError, match="multiple of 2"):
        model(*_inputs(size=(63, 128)))
    # 48x80 runs at 24x40, padded to 32x64 inside, and answers at 48x80
    out = _perturb(model).forward_with_aux(*_inputs(size=(48, 80)))
    assert out["depth"].shape[-2:] == (48, 80) and out["features"].shape[-2:] == (16, 32)


def test_half_resolution_variant_takes_the_full_variant_weights():
    full, half = build_residual_student("residual_geo"), build_residual_student("residual_geo_half")
    assert half.load_state_dict(full.state_dict()).missing_keys == []


def test_a_model_that_ignores_the_image_gets_zeros_and_the_same_answer(tmp_path):
    """``rgb_used: false`` (written by the export of a geometry-only student): the runtime
    skips preparing the image and feeds zeros; the depths are bit for bit those of the image."""
    from dataclasses import replace

    from safetensors.torch import save_file
    model = _perturb(build_residual_student("residual_geo"))
    weights = tmp_path / "geo.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
              str(weights), metadata={"variant": "residual_geo"})
    spec = load_spec(export_student(weights, tmp_path, "geo", input_size=SIZE, depth_scale=SCALE,
                                    depth_range=(0.5, SCALE))["spec"])
    assert spec.rgb_used is False and "rgb_used: false" in spec.path.read_text()
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (50, 90, 3), dtype=np.uint8)
    sparse = np.where(rng.random((50, 90)) < 0.06, rng.uniform(2, 90, (50, 90)), 0)
    sparse = sparse.astype(np.float32)
    zeros_fed = create_backend("onnxruntime", spec)
    image_fed = create_backend("onnxruntime", replace(spec, rgb_used=True))
    feeds, _ = zeros_fed.io.prepare([rgb, rgb], [sparse, sparse])
    assert not feeds["rgb"].any()
    for name in ("depth", "uncertainty"):
        a = getattr(zeros_fed.infer(rgb, sparse), name)
        b = getattr(image_fed.infer(rgb, sparse), name)
        np.testing.assert_array_equal(a, b)
    (tmp_path / "rgb").mkdir()
    assert load_spec(_export_untrained(tmp_path / "rgb")).rgb_used   # the image student uses it


def test_classical_pre_step_is_the_core_function():
    sparse = np.zeros((2, 1, 32, 64), np.float32)
    sparse[:, :, 20:, ::5] = 0.25
    got = residual_input(sparse, 1.0)
    expected = np.nan_to_num(complete_classical(sparse[0, 0] * 1.0, max_depth=1.0), nan=0.0)
    np.testing.assert_array_equal(got[0, 0], expected)


def test_mono_model_runs_frames_without_lidar(tmp_path):
    from safetensors.torch import save_file
    mono_dir = tmp_path / "mono"
    mono_dir.mkdir()
    tiny = build_student("tiny").eval()
    tiny_weights = mono_dir / "tiny.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in tiny.state_dict().items()},
              str(tiny_weights), metadata={"variant": "tiny"})
    mono_spec = export_student(tiny_weights, mono_dir, "mono", input_size=SIZE)["spec"]
    spec = _export_untrained(tmp_path, mono_model=mono_spec)
    backend = create_backend("onnxruntime", spec)
    assert isinstance(backend, MonoFallbackBackend) and backend.supports_mono
    assert backend.spec.classical_input == "classical"          # the primary's spec
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    sparse = np.where(rng.random(SIZE) < 0.06, rng.uniform(1, 60, SIZE), 0).astype(np.float32)
    alone_mono = create_backend("onnxruntime", mono_spec).infer(rgb, None).depth
    alone_lidar = ClassicalBackend(max_depth=SCALE).infer(rgb, sparse).depth
    got = backend.infer_batch([rgb, rgb, rgb], [None, sparse, np.zeros(SIZE, np.float32)])
    np.testing.assert_allclose(got[0].depth, alone_mono, rtol=1e-6)
    np.testing.assert_allclose(got[2].depth, alone_mono, rtol=1e-6)
    ok = np.isfinite(alone_lidar) & (alone_lidar >= 0.5)
    np.testing.assert_allclose(got[1].depth[ok], alone_lidar[ok], rtol=1e-6)
    assert set(backend.last_timings_ms) >= {"preprocess", "inference", "postprocess"}


def test_dense_maps_resize_without_blending():
    from dmd3c_ros.core.input_transform import InputTransform
    depth = np.full((75, 150), 10.0, np.float32)
    depth[:, 75:] = 50.0
    small = InputTransform((150, 75), (128, 64)).apply_dense(depth)
    assert small.shape == (64, 128) and set(np.unique(small)) == {10.0, 50.0}
    assert np.array_equal(InputTransform((128, 64), (128, 64)).apply_dense(small), small)


def test_coarse_image_variant_starts_as_the_geometry_only_student():
    geo = _perturb(build_residual_student("residual_geo"))
    coarse = build_residual_student("residual_geo_rgb16")
    missing = coarse.load_state_dict(geo.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("rgb_in.") for key in missing)
    coarse.eval()
    rgb, sparse, classical = _inputs(3)
    with torch.no_grad():
        assert torch.equal(coarse(rgb, sparse, classical)[0], geo(rgb, sparse, classical)[0])
    coarse.train()
    coarse(rgb, sparse, classical)[0].mean().backward()
    assert coarse.rgb_in[2].weight.grad.abs().sum() > 0     # the image can start to count
