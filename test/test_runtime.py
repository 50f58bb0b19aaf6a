"""Runtime: model spec files, backend parity (ONNX Runtime vs PyTorch vs TensorRT), selection."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from dmd3c_ros.core.camera import PinholeCamera  # noqa: E402
from dmd3c_ros.runtime import factory  # noqa: E402
from dmd3c_ros.runtime.base import (BackendError, BackendUnavailableError,  # noqa: E402
                                    MonoNotSupportedError, Prediction)
from dmd3c_ros.runtime.factory import create_backend, resolve_backend_name  # noqa: E402
from dmd3c_ros.runtime.network import NetworkIO  # noqa: E402
from dmd3c_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from dmd3c_ros.runtime.pipeline import CompletionPipeline  # noqa: E402
from dmd3c_ros.runtime.spec import ModelSpec, ModelSpecError, load_spec  # noqa: E402
from dmd3c_ros.runtime.spec_write import write_spec  # noqa: E402
from dmd3c_ros.runtime.tensorrt_backend import TensorRTBackend, engine_key  # noqa: E402
from dmd3c_ros.runtime.torch_backend import TorchBackend  # noqa: E402

INPUT_H, INPUT_W = 64, 192   # network input (height, width)
DEPTH_SCALE = 10.0           # metres per network unit
TESTS = str(Path(__file__).resolve().parent)


class TinyNet(torch.nn.Module):
    """rgb (N, 3, h, w) + sparse (N, 1, h, w) -> depth, uncertainty (N, 1, h, w), network units."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.encode = torch.nn.Conv2d(4, channels, 3, padding=1)
        self.decode = torch.nn.Conv2d(channels, 2, 3, padding=1)

    def forward(self, rgb, sparse):
        features = torch.relu(self.encode(torch.cat([rgb, sparse], dim=1)))
        out = self.decode(features)
        depth = torch.nn.functional.softplus(out[:, :1]) + sparse
        return depth, torch.nn.functional.softplus(out[:, 1:])


def make_tiny_net(channels: int = 8, seed: int = 123) -> TinyNet:
    """The spec's torch factory: random weights (seed 123) until the safetensors are loaded."""
    torch.manual_seed(seed)
    return TinyNet(channels)


def _export(module, path: Path, dynamic_batch: bool = True) -> None:
    args = (torch.zeros(1, 3, INPUT_H, INPUT_W), torch.zeros(1, 1, INPUT_H, INPUT_W))
    axes = {n: {0: "batch"} for n in ("rgb", "sparse", "depth", "uncertainty")}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but still exact
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, args, str(path), input_names=["rgb", "sparse"],
                          output_names=["depth", "uncertainty"], opset_version=17, dynamo=False,
                          dynamic_axes=axes if dynamic_batch else None)


def _write(folder: Path, module, name="tiny", dynamic_batch=True, supports_mono=True) -> ModelSpec:
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    _export(module, folder / f"{name}.onnx", dynamic_batch)
    save_file(module.state_dict(), str(folder / f"{name}.safetensors"))
    return write_spec(folder / f"{name}.yaml", name=name, onnx=folder / f"{name}.onnx",
                      input_size=(INPUT_H, INPUT_W), depth_scale=DEPTH_SCALE,
                      depth_range=(0.1, 80.0), supports_mono=supports_mono,
                      uncertainty_output="uncertainty", torch_factory="test_runtime:make_tiny_net",
                      torch_kwargs={"channels": 8},
                      torch_weights=folder / f"{name}.safetensors")


@pytest.fixture(scope="module")
def model():
    module = make_tiny_net(seed=0).eval()
    return module


@pytest.fixture(scope="module")
def spec(model, tmp_path_factory) -> ModelSpec:
    return _write(tmp_path_factory.mktemp("model"), model)


def frame(height, width, seed=0, density=0.05):
    """A random (rgb uint8, sparse float32 metres with ~density valid pixels) pair."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    sparse = np.where(rng.random((height, width)) < density,
                      rng.uniform(1.0, 60.0, (height, width)), 0.0).astype(np.float32)
    return rgb, sparse


def assert_same(a: Prediction, b: Prediction, atol=1e-4):
    np.testing.assert_allclose(a.depth, b.depth, atol=atol, rtol=0)
    np.testing.assert_allclose(a.uncertainty, b.uncertainty, atol=atol, rtol=0)


# -- model spec -------------------------------------------------------------------------------
def test_spec_round_trip(spec):
    loaded = load_spec(spec.path)
    assert loaded == spec
    assert loaded.input_wh == (INPUT_W, INPUT_H)
    text = yaml.safe_load(spec.path.read_text())
    assert text["onnx"] == "tiny.onnx" and text["torch"]["weights"] == "tiny.safetensors"
    assert text["units"] == "metres" and text["input_size"] == [INPUT_H, INPUT_W]
    assert "rgb_used" not in text and loaded.rgb_used    # the default: the image counts


def test_spec_rgb_used_flag(spec, tmp_path):
    from dataclasses import replace
    saved = replace(spec, rgb_used=False).save(tmp_path / "geo.yaml")
    assert yaml.safe_load(saved.path.read_text())["rgb_used"] is False
    assert load_spec(saved.path).rgb_used is False
    data = spec.to_dict(relative_to=spec.path.parent)
    data["rgb_used"] = "no"
    path = spec.path.parent / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelSpecError, match="'rgb_used' must be true or false"):
        load_spec(path)


def test_spec_sha256_mismatch_names_both_hashes(spec, tmp_path):
    onnx = tmp_path / "tiny.onnx"
    onnx.write_bytes(spec.onnx.read_bytes() + b"\0")
    data = spec.to_dict(relative_to=spec.path.parent)
    data["onnx"] = str(onnx)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelSpecError, match="sha256 mismatch") as error:
        load_spec(path)
    assert spec.sha256 in str(error.value)
    assert ModelSpec.load(path, verify=False).sha256 == spec.sha256


@pytest.mark.parametrize("section,key", [(None, "depth_scale"), (None, "supports_mono"),
                                         ("inputs", "rgb"), ("rgb_normalization", "std")])
def test_spec_missing_key_names_file_and_key(spec, tmp_path, section, key):
    data = spec.to_dict()
    del (data[section] if section else data)[key]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    full = f"{section}.{key}" if section else key
    with pytest.raises(ModelSpecError, match=rf"broken\.yaml: missing key '{full}'"):
        load_spec(path)


def test_spec_missing_files(spec, tmp_path):
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_spec(tmp_path / "nowhere.yaml")
    data = spec.to_dict()
    data["onnx"] = "missing.onnx"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ModelSpecError, match="key 'onnx'.*missing.onnx"):
        load_spec(tmp_path / "s.yaml")


# -- pre/post-processing ----------------------------------------------------------------------
def test_network_io_normalises_scales_and_clips(spec):
    io = NetworkIO(spec)
    rgb = np.empty((INPUT_H, INPUT_W, 3), np.uint8)
    rgb[:] = (124, 116, 104)  # ~ the ImageNet mean on the 0-255 scale
    sparse = np.zeros((INPUT_H, INPUT_W), np.float32)
    sparse[3, 4] = 25.0
    feeds, transforms = io.prepare([rgb], [sparse])
    assert feeds["rgb"].shape == (1, 3, INPUT_H, INPUT_W) and feeds["rgb"].dtype == np.float32
    assert np.abs(feeds["rgb"]).max() < 0.02
    assert feeds["sparse"][0, 0, 3, 4] == pytest.approx(25.0 / DEPTH_SCALE)
    raw = np.full((1, 1, INPUT_H, INPUT_W), 2.0, np.float32)  # 20 m
    raw[0, 0, 0, 0], raw[0, 0, 0, 1], raw[0, 0, 0, 2] = 100.0, -1.0, np.inf
    (prediction,) = io.finish({"depth": raw, "uncertainty": raw * 0.1}, transforms)
    assert prediction.depth[1, 1] == pytest.approx(20.0)
    assert prediction.depth[0, 0] == 80.0 and prediction.depth[0, 1] == pytest.approx(0.1)
    assert np.isnan(prediction.depth[0, 2]) and np.isnan(prediction.uncertainty[0, 2])
    assert prediction.uncertainty[1, 1] == pytest.approx(2.0)


# -- backend parity ---------------------------------------------------------------------------
def test_onnxruntime_matches_torch_at_another_camera_size(spec, model):
    ort_backend = OnnxRuntimeBackend(spec, intra_op_threads=2)
    torch_backend = TorchBackend(spec, model)
    rgb, sparse = frame(120, 300)  # relatively taller than 192x64: bottom 100 rows are used
    a, b = ort_backend.infer(rgb, sparse), torch_backend.infer(rgb, sparse)
    assert a.depth.shape == (120, 300) and a.depth.dtype == np.float32
    assert a.uncertainty.shape == (120, 300) and a.uncertainty.dtype == np.float32
    assert_same(a, b)
    assert np.isnan(a.depth[:20]).all() and np.isfinite(a.depth[20:]).all()
    assert np.nanmin(a.depth) >= 0.1 and np.nanmax(a.depth) <= 80.0


def test_infer_batch_matches_single_frames(spec, model):
    ort_backend = OnnxRuntimeBackend(spec)
    torch_backend = TorchBackend(spec, model)
    frames = [frame(120, 300, 1), frame(100, 300, 2), frame(90, 400, 3)]
    rgbs = [f[0] for f in frames]
    sparses = [frames[0][1], None, frames[2][1]]  # the second frame is mono
    batch_ort = ort_backend.infer_batch(rgbs, sparses)
    batch_torch = torch_backend.infer_batch(rgbs, sparses)
    assert [p.depth.shape for p in batch_ort] == [(120, 300), (100, 300), (90, 400)]
    for rgb, sparse, a, b in zip(rgbs, sparses, batch_ort, batch_torch):
        assert_same(a, b)
        assert_same(a, ort_backend.infer(rgb, sparse), atol=1e-5)
    assert ort_backend.infer_batch([]) == []


def test_views_side_by_side_match_one_batched_call(spec):
    frames = [frame(120, 300, 11), frame(100, 300, 12), frame(90, 400, 13), frame(120, 300, 14)]
    rgbs, sparses = [f[0] for f in frames], [f[1] for f in frames]
    batched = OnnxRuntimeBackend(spec, view_workers=1)
    side_by_side = OnnxRuntimeBackend(spec, view_workers=3)
    assert batched.view_workers == 1 and side_by_side.view_workers == 3
    one_call = batched.infer_batch(rgbs, sparses)
    for _ in range(2):  # the second call reuses the one-thread session and the threads
        parallel = side_by_side.infer_batch(rgbs, sparses)
        assert len(parallel) == 4
        for a, b in zip(parallel, one_call):
            assert_same(a, b, atol=1e-5)
    session, _ = side_by_side._views
    assert session is not side_by_side.session
    assert set(side_by_side.last_timings_ms) == {"preprocess", "inference", "postprocess"}
    with pytest.raises(ValueError, match="view_workers"):
        OnnxRuntimeBackend(spec, view_workers=0)
    side_by_side.close()
    assert side_by_side._views is None


def test_uncertainty_can_be_left_out_and_stages_are_timed(spec):
    backend = OnnxRuntimeBackend(spec)
    rgb, sparse = frame(120, 300, 4)
    full = backend.infer(rgb, sparse)
    stages = dict(backend.last_timings_ms)
    assert set(stages) == {"preprocess", "inference", "postprocess"}
    assert all(v > 0 for v in stages.values())
    lean = backend.infer(rgb, sparse, uncertainty=False)
    assert full.uncertainty is not None and lean.uncertainty is None
    np.testing.assert_array_equal(lean.depth, full.depth)
    (lean,) = backend.infer_batch([rgb], [sparse], uncertainty=False)
    assert lean.uncertainty is None
    # The pipeline passes the choice on and reports the backend's stages next to its own.
    camera = PinholeCamera.from_intrinsics(200.0, 200.0, 150.0, 60.0, 300, 120)
    for wanted in (True, False):
        result = CompletionPipeline(backend).run(rgb, camera, uncertainty=wanted)  # mono
        assert (result.uncertainty is not None) == wanted
        assert {"projection", "preprocess", "inference", "postprocess"} <= set(result.timings_ms)


def test_static_batch_model_runs_in_chunks(model, tmp_path):
    static = _write(tmp_path, model, name="static", dynamic_batch=False)
    backend = OnnxRuntimeBackend(static)
    assert backend.max_batch == 1
    frames = [frame(120, 300, s) for s in range(3)]
    batch = backend.infer_batch([f[0] for f in frames], [f[1] for f in frames])
    dynamic = TorchBackend(static, model)
    for (rgb, sparse), prediction in zip(frames, batch):
        assert_same(prediction, dynamic.infer(rgb, sparse))


def test_torch_backend_from_spec_factory_and_safetensors(spec, model, monkeypatch):
    monkeypatch.syspath_prepend(TESTS)  # the factory is "test_runtime:make_tiny_net"
    from_spec = create_backend("torch", spec.path)
    assert isinstance(from_spec, TorchBackend)
    rgb, sparse = frame(100, 250, 5)
    assert_same(from_spec.infer(rgb, sparse), TorchBackend(spec, model).infer(rgb, sparse),
                atol=1e-6)


# -- input validation and mono ----------------------------------------------------------------
def test_input_validation_errors(spec, model):
    backend = TorchBackend(spec, model)
    rgb, sparse = frame(64, 192)
    with pytest.raises(ValueError, match="uint8"):
        backend.infer(rgb.astype(np.float32), sparse)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        backend.infer(rgb[:, :, 0], sparse)
    with pytest.raises(ValueError, match="sparse depth must be"):
        backend.infer(rgb, sparse[:-1])
    with pytest.raises(ValueError, match="float metres"):
        backend.infer(rgb, (sparse * 256).astype(np.uint16))
    with pytest.raises(ValueError, match="2 rgb images and 1 sparse"):
        backend.infer_batch([rgb, rgb], [sparse])


def test_invalid_sparse_values_mean_no_value(spec, model):
    backend = OnnxRuntimeBackend(spec)
    rgb, sparse = frame(120, 300, 7)
    dirty = sparse.copy()
    dirty[50, 10:20] = np.nan
    dirty[60, 10:20] = -3.0
    dirty[70, 10:20] = np.inf
    before = dirty.copy()
    clean = np.where(np.isfinite(dirty) & (dirty > 0), dirty, 0.0).astype(np.float32)
    a, b = backend.infer(rgb, dirty), backend.infer(rgb, clean)
    assert np.array_equal(dirty, before, equal_nan=True)  # input untouched
    assert_same(a, b, atol=0)
    assert np.isfinite(a.depth[20:]).all()


def test_mono_needs_a_model_that_supports_it(model, tmp_path):
    spec = _write(tmp_path, model, name="lidar_only", supports_mono=False)
    backend = OnnxRuntimeBackend(spec)
    rgb, sparse = frame(120, 300)
    assert not backend.supports_mono
    with pytest.raises(MonoNotSupportedError):
        backend.infer(rgb, None)
    with pytest.raises(MonoNotSupportedError, match="frame 1"):
        backend.infer_batch([rgb, rgb], [sparse, np.zeros_like(sparse)])
    assert backend.infer(rgb, sparse).depth.shape == (120, 300)


def test_classical_backend():
    pytest.importorskip("dmd3c_ros.core.classical")
    backend = create_backend("classical", max_depth=80.0)
    rgb, sparse = frame(120, 300, density=0.1)
    assert backend.name == "classical" and not backend.supports_mono
    with pytest.raises(MonoNotSupportedError):
        backend.infer(rgb, np.zeros_like(sparse))
    with pytest.raises(MonoNotSupportedError):
        backend.infer(rgb, None)
    prediction = backend.infer(rgb, sparse)
    assert prediction.uncertainty is None
    assert prediction.depth.shape == (120, 300) and prediction.depth.dtype == np.float32
    assert np.nanmax(prediction.depth) <= 80.0 and np.isfinite(prediction.depth).mean() > 0.5


# -- selection --------------------------------------------------------------------------------
def test_auto_prefers_tensorrt_when_available(spec, monkeypatch):
    made = {}

    def fake_tensorrt(spec_, precision, engine_cache_dir, **options):
        made.update(spec=spec_, precision=precision, cache=engine_cache_dir)
        return "fake tensorrt backend"

    monkeypatch.setattr(factory, "tensorrt_available", lambda: True)
    monkeypatch.setattr(factory, "_make_tensorrt", fake_tensorrt)
    assert resolve_backend_name("auto") == "tensorrt"
    assert create_backend("auto", spec.path, precision="fp16",
                          engine_cache_dir="/tmp/x") == "fake tensorrt backend"
    assert made == {"spec": spec, "precision": "fp16", "cache": "/tmp/x"}


def test_auto_falls_back_to_onnxruntime(spec, monkeypatch):
    monkeypatch.setattr(factory, "tensorrt_available", lambda: False)
    assert resolve_backend_name("AUTO") == "onnxruntime"
    backend = create_backend("auto", spec, intra_op_threads=1, calibrator=None)
    assert isinstance(backend, OnnxRuntimeBackend) and backend.intra_op_threads == 1


def test_factory_errors(spec, monkeypatch):
    with pytest.raises(ValueError, match="auto, tensorrt, onnxruntime, torch, classical"):
        create_backend("cuda", spec)
    monkeypatch.setattr(factory, "default_model_spec", lambda: None)  # an install without one
    with pytest.raises(ModelSpecError, match="backend 'onnxruntime' needs a model spec YAML"):
        create_backend("onnxruntime")
    with pytest.raises(ValueError, match="precision"):
        create_backend("onnxruntime", spec, precision="fp8")


# -- TensorRT ---------------------------------------------------------------------------------
def test_engine_key_covers_every_input():
    base = ("ab" * 32, "10.3.0", "Orin (sm_87)", "fp16", {"rgb": (1, 3, 64, 192)})
    variants = [("cd" * 32,) + base[1:], base[:1] + ("10.4.0",) + base[2:],
                base[:2] + ("RTX 4090 (sm_89)",) + base[3:], base[:3] + ("fp32",) + base[4:],
                base[:4] + ({"rgb": (2, 3, 64, 192)},)]
    keys = {engine_key(*v) for v in variants}
    assert len(keys) == 5 and engine_key(*base) not in keys
    assert engine_key(*base) == engine_key(*base)


def test_tensorrt_int8_needs_a_calibrator(spec):
    with pytest.raises(BackendError, match="calibrator"):
        TensorRTBackend(spec, precision="int8")


@pytest.mark.skipif(factory.tensorrt_installed(), reason="TensorRT is installed here")
def test_tensorrt_missing_is_a_clear_error(spec):
    with pytest.raises(BackendUnavailableError, match="TensorRT and cuda-python"):
        create_backend("tensorrt", spec)


@pytest.mark.gpu
@pytest.mark.skipif(factory.cuda_device_count() == 0, reason="no CUDA GPU")
@pytest.mark.skipif(not factory.tensorrt_installed(),
                    reason="TensorRT and CUDA bindings not installed")
def test_tensorrt_engine_matches_onnxruntime(spec, tmp_path):
    reference = OnnxRuntimeBackend(spec)
    frames = [frame(120, 300, 11), frame(90, 400, 12)]
    rgbs, sparses = [f[0] for f in frames], [f[1] for f in frames]
    built = TensorRTBackend(spec, precision="fp32", engine_cache_dir=tmp_path, max_batch=2)
    assert built.engine_source == "built" and built.engine_path.is_file()
    for a, b in zip(built.infer_batch(rgbs, sparses), reference.infer_batch(rgbs, sparses)):
        assert_same(a, b, atol=1e-3)
    assert_same(built.infer(rgbs[0], sparses[0]), reference.infer(rgbs[0], sparses[0]),
                atol=1e-3)
    built.close()
    cached = TensorRTBackend(spec, precision="fp32", engine_cache_dir=tmp_path, max_batch=2)
    assert cached.engine_source == "cache" and cached.key == built.key
    assert_same(cached.infer(rgbs[1], sparses[1]), reference.infer(rgbs[1], sparses[1]),
                atol=1e-3)
    cached.close()
