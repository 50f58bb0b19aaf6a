"""dmd3c export: trained student weights -> ONNX + model spec + safetensors, with a parity check."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from dmd3c_ros.cli import main  # noqa: E402
from dmd3c_ros.runtime.factory import create_backend  # noqa: E402
from dmd3c_ros.runtime.spec import load_spec, sha256_file  # noqa: E402
from dmd3c_ros.training.export import export_student  # noqa: E402
from dmd3c_ros.training.parity import sample_inputs  # noqa: E402
from dmd3c_ros.training.student import build_student, count_parameters  # noqa: E402

SIZE = (64, 128)   # network input (height, width), multiples of 32


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A randomly initialised tiny student saved as a training run saves it (model.* tensors)."""
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = build_student("tiny")
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        model.train()
        for seed in range(2):
            model(*(torch.from_numpy(a) for a in sample_inputs(SIZE, seed=seed, batch=2)))
    path = tmp_path_factory.mktemp("run") / "best.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"variant": "tiny"})
    return path, count_parameters(model)


@pytest.fixture(scope="module")
def exported(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return out, export_student(weights[0], out, "student_tiny", input_size=SIZE)


def test_export_writes_a_loadable_spec_with_parity(weights, exported):
    out, result = exported
    spec = load_spec(result["spec"])  # verifies the sha256 as well
    assert spec.name == "student_tiny" and spec.input_size == SIZE and spec.opset == 17
    assert spec.onnx == (out / "student_tiny.onnx").resolve()
    assert result["sha256"] == spec.sha256 == sha256_file(out / "student_tiny.onnx")
    assert spec.depth_scale == 80.0 and spec.depth_range == (0.5, 80.0) and spec.supports_mono
    assert (spec.rgb_input, spec.sparse_input) == ("rgb", "sparse")
    assert (spec.depth_output, spec.uncertainty_output) == ("depth", "uncertainty")
    assert spec.rgb_mean == (123.675, 116.28, 103.53) and spec.rgb_std == (58.395, 57.12, 57.375)
    assert spec.torch.kwargs == {"variant": "tiny"}
    assert spec.torch.weights == (out / "student_tiny.safetensors").resolve()
    assert result["variant"] == "tiny" and result["parameters"] == weights[1]
    parity = result["parity"]
    assert parity["lidar"]["sparse_pixels"] > 0 and parity["mono"]["sparse_pixels"] == 0
    assert 0 <= parity["max_abs_diff_m"] < 1e-4 and 0 <= parity["max_rel_err"] <= 1e-3
    assert parity["max_abs_diff_m"] == max(parity["lidar"]["depth_max_abs_diff_m"],
                                           parity["mono"]["depth_max_abs_diff_m"])
    assert parity["max_rel_err"] == max(parity[case][f"{name}_max_rel_err"]
                                        for case in ("lidar", "mono")
                                        for name in ("depth", "uncertainty"))


def test_exported_model_runs_in_the_runtime(exported):
    _, result = exported
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (50, 90, 3), dtype=np.uint8)   # resized to 64x128 by the runtime
    sparse = np.where(rng.random((50, 90)) < 0.05, rng.uniform(2, 60, (50, 90)), 0)
    sparse = sparse.astype(np.float32)
    ort_backend = create_backend("onnxruntime", result["spec"])
    torch_backend = create_backend("torch", result["spec"])  # the plain-key safetensors
    for lidar in (sparse, None):
        a, b = ort_backend.infer(rgb, lidar), torch_backend.infer(rgb, lidar)
        assert a.depth.shape == (50, 90) and a.uncertainty.shape == (50, 90)
        valid = np.isfinite(a.depth)   # NaN = no value (rows the input transform left out)
        assert valid.mean() > 0.5
        assert (a.depth[valid] >= 0.5).all() and (a.depth[valid] <= 80).all()
        np.testing.assert_allclose(a.depth, b.depth, atol=1e-3)  # NaN where the other has NaN


def test_export_cli_prints_json(weights, tmp_path, capsys):
    assert main(["export", str(weights[0]), "--out", str(tmp_path / "m.onnx"),
                 "--input-size", *map(str, SIZE)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["parity"]["max_rel_err"] <= 1e-3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.safetensors", "m.yaml"]
    assert load_spec(tmp_path / "m.yaml").sha256 == sha256_file(tmp_path / "m.onnx")


def test_export_cli_refuses_outside_feature_maps_for_a_student_without_them(weights, tmp_path,
                                                                             capsys):
    # Only a residual student (input stride 1, no context maps) has core.features' seven maps.
    assert main(["export", str(weights[0]), "--out", str(tmp_path / "m.onnx"),
                 "--input-size", *map(str, SIZE), "--features", "outside"]) == 2
    assert "needs a residual student" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_wants_an_onnx_path(weights, tmp_path, capsys):
    assert main(["export", str(weights[0]), "--out", str(tmp_path)]) == 2
    assert "--out must name the ONNX file" in capsys.readouterr().err


def test_parity_failure_removes_the_export(weights, tmp_path, monkeypatch):
    # An ONNX file of other weights than the checkpoint's: the check must catch it.
    from dmd3c_ros.training import export as export_module
    real_export = export_module.export_onnx

    def export_other_weights(model, path, input_size, **kwargs):
        other = build_student("tiny").eval()
        return real_export(other, path, input_size, **kwargs)

    monkeypatch.setattr(export_module, "export_onnx", export_other_weights)
    with pytest.raises(export_module.ExportParityError, match="relative"):
        export_student(weights[0], tmp_path, "m", input_size=SIZE)
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.yaml").exists()


def test_wrong_variant_is_a_clear_error(weights, tmp_path, capsys):
    with pytest.raises(ValueError, match="do not fit student variant 'small'"):
        export_student(weights[0], tmp_path / "a", "m", variant="small", input_size=SIZE)
    assert not (tmp_path / "a" / "m.onnx").exists()
    assert main(["export", str(weights[0]), "--out", str(tmp_path / "b" / "m.onnx"),
                 "--variant", "base", "--input-size", *map(str, SIZE)]) == 2
    err = capsys.readouterr().err
    assert "do not fit student variant 'base'" in err and "variant 'tiny'" in err


def test_bad_inputs_are_clear_errors(weights, tmp_path):
    from safetensors.torch import save_file
    with pytest.raises(ValueError, match="multiples of 32"):
        export_student(weights[0], tmp_path, "m", input_size=(60, 128))
    bare = tmp_path / "bare.safetensors"
    save_file({"model.x": torch.zeros(1)}, str(bare))
    with pytest.raises(ValueError, match="no 'variant'"):
        export_student(bare, tmp_path, "m", input_size=SIZE)


def test_variants_table_runs(capsys):
    from dmd3c_ros.training import variants
    assert variants.main(["--size", "64", "128", "--repeat", "1", "--threads", "1",
                          "--variants", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "python -m dmd3c_ros.training.variants --size 64 128" in out and "CPUs" in out
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 1
    parameters = count_parameters(build_student("tiny"))
    assert f"| {parameters:,} |" in rows[0]
