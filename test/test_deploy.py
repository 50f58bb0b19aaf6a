"""deploy: calibration frames (shared by INT8 ONNX quantisation and TensorRT) and dmd3c quantize."""
import json

import numpy as np
import pytest

from dmd3c_ros.cli import main
from dmd3c_ros.deploy.calibration import (CalibrationError, calibration_feeds,
                                          calibration_samples, evenly_spaced)
from dmd3c_ros.runtime.network import NetworkIO
from dmd3c_ros.runtime.spec import load_spec, sha256_file

SIZE = (64, 128)   # network input (height, width) of the small exported students


@pytest.fixture(scope="module")
def sim_kitti(tmp_path_factory):
    """Three simulated frames as a KITTI-format folder (camera 2 + an HDL-64 sweep)."""
    out = tmp_path_factory.mktemp("calibration") / "kitti"
    assert main(["sim", "--frames", "3", "--seed", "4", "--format", "kitti-sample", "--lidar",
                 "hdl64", "--out", str(out), "--image-scale", "0.5"]) == 0
    return out


def _exported(tmp_path_factory, variant: str):
    """A randomly initialised student of ``variant`` exported at SIZE (float ONNX + spec)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from safetensors.torch import save_file
    from dmd3c_ros.training.export import export_student
    from dmd3c_ros.training.parity import sample_inputs
    from dmd3c_ros.training.student import build_student
    torch.manual_seed(0)
    model = build_student(variant)
    with torch.no_grad():  # batch-norm statistics as after training
        model.train()
        model(*(torch.from_numpy(a) for a in sample_inputs(SIZE, batch=2)))
    folder = tmp_path_factory.mktemp(variant)
    weights = folder / "best.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
              str(weights), metadata={"variant": variant})
    return export_student(weights, folder, "float", input_size=SIZE)["spec"]


@pytest.fixture(scope="module")
def float_spec(tmp_path_factory):
    return _exported(tmp_path_factory, "tiny")


def test_evenly_spaced_spreads_over_the_whole_source():
    assert evenly_spaced(10, 3) == [0, 4, 9]
    assert evenly_spaced(3, 5) == [0, 1, 2]          # fewer frames than asked: all of them
    assert evenly_spaced(10, 1) == [5]
    assert evenly_spaced(0, 4) == [] and evenly_spaced(4, 0) == []


def test_calibration_samples_read_a_kitti_folder(sim_kitti):
    samples = calibration_samples(sim_kitti, count=2)
    assert len(samples) == 2 and samples[0].name != samples[1].name
    for sample in samples:
        assert sample.rgb.dtype == np.uint8 and sample.rgb.ndim == 3
        assert sample.sparse.shape == sample.rgb.shape[:2] and sample.sparse.dtype == np.float32
        assert np.count_nonzero(sample.sparse) > 1000   # the simulated sweep, projected


def test_calibration_sources_fail_clearly(sim_kitti, tmp_path):
    with pytest.raises(CalibrationError, match="is not a folder"):
        calibration_samples(tmp_path / "nothing")
    with pytest.raises(CalibrationError, match="at least one frame"):
        calibration_samples(sim_kitti, count=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="cannot read calibration frames"):
        calibration_samples(tmp_path / "empty")
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    with pytest.raises(CalibrationError, match="--image-topic"):
        calibration_samples(bag)


def test_calibration_feeds_are_what_the_runtime_feeds(float_spec, sim_kitti):
    spec = load_spec(float_spec)
    samples = calibration_samples(sim_kitti, count=3)
    batches = list(calibration_feeds(spec, samples, batch=2))
    assert len(batches) == 2                       # 3 frames: 2 + (1 completed with the first)
    expected, _ = NetworkIO(spec).prepare([s.rgb for s in samples[:2]],
                                          [s.sparse for s in samples[:2]])
    for name in (spec.rgb_input, spec.sparse_input):
        assert batches[0][name].shape == (2,) + expected[name].shape[1:]
        np.testing.assert_array_equal(batches[0][name], expected[name])
        np.testing.assert_array_equal(batches[1][name][1], batches[0][name][0])


def test_quantized_model_runs_and_stays_close(float_spec, sim_kitti, tmp_path):
    pytest.importorskip("onnxruntime")
    from dmd3c_ros.deploy.quantize import quantize_model
    from dmd3c_ros.runtime.factory import create_backend
    out = tmp_path / "student_int8.onnx"
    result = quantize_model(float_spec, out, sim_kitti, frames=2, log=lambda _: None)
    spec = load_spec(result["spec"])                # verifies the sha256
    assert spec.onnx == out.resolve() and spec.sha256 == sha256_file(out) == result["sha256"]
    assert spec.name == "student_int8" and spec.torch is None
    assert result["quantize_nodes"] > 0 and result["weights_int8"] and len(result["frames"]) == 2
    source = load_spec(float_spec)
    assert (spec.input_size, spec.depth_scale, spec.depth_range) == \
        (source.input_size, source.depth_scale, source.depth_range)
    sample = calibration_samples(sim_kitti, count=1)[0]
    float_depth = create_backend("onnxruntime", float_spec).infer(sample.rgb, sample.sparse).depth
    int8_depth = create_backend("onnxruntime", spec).infer(sample.rgb, sample.sparse).depth
    valid = np.isfinite(float_depth) & np.isfinite(int8_depth)
    assert valid.mean() > 0.5
    relative = np.abs(int8_depth[valid] - float_depth[valid]) / float_depth[valid]
    assert 0 < np.median(relative) < 0.1     # int8 differs from float, but not wildly


def test_fine_resolution_convolutions_stay_float(tmp_path_factory, sim_kitti, tmp_path):
    pytest.importorskip("onnxruntime")
    from dmd3c_ros.deploy.quantize import fine_resolution_nodes, quantize_model
    v1 = _exported(tmp_path_factory, "tiny_v1")  # refinement at full resolution
    onnx_path = load_spec(v1).onnx
    full = fine_resolution_nodes(onnx_path, SIZE)
    assert full and all("refine" in n or "full_rgb" in n for n in full)
    assert fine_resolution_nodes(onnx_path, SIZE, op_types=("Gemm",)) == []
    assert fine_resolution_nodes(onnx_path, SIZE, max_stride=0) == []
    half = fine_resolution_nodes(onnx_path, SIZE, max_stride=2)
    assert set(full) < set(half)          # stride 2 adds the half-resolution convolutions
    result = quantize_model(v1, tmp_path / "q.onnx", sim_kitti, frames=1, log=lambda _: None)
    assert result["kept_float"] == half   # the default: strides 1 and 2 stay float
    result = quantize_model(v1, tmp_path / "r.onnx", sim_kitti, frames=1, float_stride=0,
                            log=lambda _: None)
    assert result["kept_float"] == [] and result["quantize_nodes"] > 0


def test_quantize_cli(float_spec, sim_kitti, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    report = tmp_path / "q.json"
    assert main(["quantize", float_spec, "--calibration", str(sim_kitti), "--out",
                 str(tmp_path / "q.onnx"), "--frames", "1", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["onnx"] == str((tmp_path / "q.onnx").resolve())
    assert main(["quantize", float_spec, "--calibration", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "r.onnx")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_onnxruntime_session_options(float_spec):
    pytest.importorskip("onnxruntime")
    from dmd3c_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
    backend = OnnxRuntimeBackend(load_spec(float_spec), intra_op_threads=1,
                                 graph_optimization="basic",
                                 session_config={"session.intra_op.allow_spinning": "0"})
    assert backend.graph_optimization == "basic"
    assert backend.session_config == {"session.intra_op.allow_spinning": "0"}
    # Ours by default: worker threads spin while a run lasts and sleep after it; the other
    # modes and explicit entries override it, an explicit entry winning over the mode.
    spec = load_spec(float_spec)
    assert OnnxRuntimeBackend(spec).session_config == {
        "session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}
    assert OnnxRuntimeBackend(spec, spinning="always").session_config == {
        "session.intra_op.allow_spinning": "1"}
    assert OnnxRuntimeBackend(spec, spinning="off").session_config == {
        "session.intra_op.allow_spinning": "0"}
    assert OnnxRuntimeBackend(spec, spinning="always", session_config={
        "session.intra_op.allow_spinning": "0"}).session_config == {
        "session.intra_op.allow_spinning": "0"}
    with pytest.raises(ValueError, match="spinning"):
        OnnxRuntimeBackend(spec, spinning=True)
    with pytest.raises(ValueError, match="graph_optimization"):
        OnnxRuntimeBackend(load_spec(float_spec), graph_optimization="max")


def test_ort_tuning_table(float_spec, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from dmd3c_ros.deploy import ort_tuning
    report = tmp_path / "tuning.json"
    assert ort_tuning.main(["--model", float_spec, "--frames", "2", "--warmup", "1",
                            "--threads", "1", "--spinning", "run", "off", "--graph-optimization",
                            "all", "--gap", "0", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["gap_s"] == 0.0
    assert set(result["sessions"]) == {"threads 1, spinning run, all",
                                       "threads 1, spinning off, all"}
    assert all(row[f"{way}_p90_ms"] >= row[f"{way}_median_ms"] > 0
               for row in result["sessions"].values() for way in ("network", "frame"))
    assert result["default"].endswith("spinning run, all")  # the backend's default
    table = capsys.readouterr().out
    assert table.count("| threads 1, spinning") == 2
    assert "`python -m dmd3c_ros.deploy.ort_tuning --model" in table
