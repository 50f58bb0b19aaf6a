"""`dmd3c bench`: the JSON contract (DESIGN.md), stages, resolutions, batches, skips and the node.

Most tests run on the synthetic frame (``--synthetic``) with a few frames; the node test starts a
real completion node process on a private, machine-local graph (graph.free_domain_id for the
domain; the bench runs it with graph.ros_process_env and the shipped Fast DDS profile, as
test_node_process.py does). No timing assertions: figures only have to be positive and ordered.
"""
import json
import math
import sys

import pytest
import yaml

from dmd3c_ros.cli import main
from dmd3c_ros.deploy import bench
from dmd3c_ros.paths import default_model_spec
from dmd3c_ros.runtime import factory

FAST = ["--synthetic", "--frames", "3", "--warmup", "1"]
MESSAGE_MODULES = ("rclpy", "rclpy.serialization", "sensor_msgs", "sensor_msgs.msg",
                   "dmd3c_ros.ros.bench", "dmd3c_ros.ros.adapters", "dmd3c_ros.ros.feeder")

needs_student = pytest.mark.skipif(default_model_spec() is None,
                                   reason="no shipped student (models/student.yaml)")


def run_bench(tmp_path, *args):
    out = tmp_path / "bench.json"
    markdown = tmp_path / "bench.md"
    code = main(["bench", *args, "--json", str(out), "--markdown", str(markdown)])
    return code, json.loads(out.read_text()), markdown.read_text()


def check_stages(stages: dict) -> None:
    assert stages, "no stage measured"
    for name, figures in stages.items():
        p50, p95 = figures["p50_ms"], figures["p95_ms"]
        for value in (p50, p95):
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, value)
        assert p95 >= p50, (name, figures)


@needs_student
def test_json_contract_with_classical_and_onnxruntime_side_by_side(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(factory, "tensorrt_available", lambda: False)
    code, result, markdown = run_bench(tmp_path, *FAST)
    assert code == 0
    assert {"classical", "onnxruntime"} <= set(result["backends"])
    assert "node" not in result  # only with --node
    for label, stages in result["backends"].items():
        check_stages(stages)
        assert stages["total"]["p50_ms"] >= stages["inference"]["p50_ms"]
    assert set(result["backends"]["classical"]) == {"decode", "projection", "inference",
                                                    "encode", "total"}
    assert set(result["backends"]["onnxruntime"]) == {"decode", "projection", "preprocess",
                                                      "inference", "postprocess", "encode",
                                                      "total"}
    # One run, interleaved: both in the recorded order, both timed the same number of frames.
    assert result["order"][:2] == ["classical", "onnxruntime"]
    runs = {r["backend"]: r for r in result["runs"]}
    assert runs["classical"]["frames"] == runs["onnxruntime"]["frames"] == 3
    assert result["frames"] == 3 and result["warmup"] == 1
    assert result["machine"]["cores"] >= 1 and result["machine"]["numpy"]
    assert result["command"].startswith("dmd3c bench") and "--frames 3" in result["command"]
    # Markdown: a header with the machine and command, a row per backend.
    assert "Machine:" in markdown and "Command: `dmd3c bench" in markdown
    assert "| classical |" in markdown and "| onnxruntime |" in markdown


def test_resolution_sets_the_image_size_decoded_and_encoded(tmp_path):
    pytest.importorskip("rclpy")
    code, result, markdown = run_bench(tmp_path, *FAST, "--backend", "classical",
                                       "--resolution", "620x188", "--resolution", "320x100")
    assert code == 0
    by_size = {r["resolution"]: r for r in result["runs"]}
    assert set(by_size) == {"620x188", "320x100"}
    for size, run in by_size.items():
        assert run["decoded_size"] == run["encoded_size"] == size
        assert run["sparse_pixels"] > 0
        check_stages(run["stages"])
    # 'backends' holds the first resolution.
    assert result["backends"]["classical"] == by_size["620x188"]["stages"]
    assert "## 620x188, batch 1" in markdown and "## 320x100, batch 1" in markdown


@needs_student
def test_batch_two_reports_per_frame_time(tmp_path):
    pytest.importorskip("onnxruntime")
    code, result, markdown = run_bench(tmp_path, "--synthetic", "--frames", "2", "--warmup", "0",
                                       "--resolution", "320x100", "--backend", "classical",
                                       "--backend", "onnxruntime", "--batch", "1",
                                       "--batch", "2")
    assert code == 0
    batch2 = [r for r in result["runs"] if r["batch"] == 2]
    assert {r["backend"] for r in batch2} == {"classical", "onnxruntime"}
    for run in batch2:
        stages = run["stages"]
        check_stages(stages)
        assert stages["per_frame_ms"]["p50_ms"] == pytest.approx(stages["total"]["p50_ms"] / 2)
    network = next(r for r in batch2 if r["backend"] == "onnxruntime")["stages"]
    assert {"preprocess", "inference", "postprocess"} <= set(network)
    assert all("per_frame_ms" not in r["stages"] for r in result["runs"] if r["batch"] == 1)
    assert all("per_frame_ms" not in s for s in result["backends"].values())
    assert "per batch of 2" in markdown


def test_without_rclpy_the_message_stages_are_left_out(tmp_path, monkeypatch):
    for name in MESSAGE_MODULES:  # None in sys.modules: importing it raises ImportError
        monkeypatch.setitem(sys.modules, name, None)
    messages, why = bench.message_stages()
    assert messages is None and "decode and encode not measured" in why
    code, result, markdown = run_bench(tmp_path, *FAST, "--backend", "classical")
    assert code == 0
    stages = result["backends"]["classical"]
    assert set(stages) == {"projection", "inference", "total"}
    check_stages(stages)
    assert any("decode and encode not measured" in note for note in result["notes"])
    assert "decode and encode not measured" in markdown
    assert result["runs"][0]["encoded_size"] is None


def test_tensorrt_unavailable_is_recorded_as_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(factory, "tensorrt_available", lambda: False)
    code, result, markdown = run_bench(tmp_path, *FAST, "--backend", "classical",
                                       "--backend", "tensorrt")
    assert code == 0
    assert result["skipped"] == {"tensorrt": bench.TENSORRT_SKIPPED}
    assert set(result["backends"]) == {"classical"}
    assert f"tensorrt: {bench.TENSORRT_SKIPPED}" in markdown


@needs_student
def test_extra_models_get_their_own_label_and_missing_ones_are_skipped(tmp_path):
    pytest.importorskip("onnxruntime")
    shipped = default_model_spec()
    data = yaml.safe_load(shipped.read_text())
    data["name"] = "student_copy"
    data["onnx"] = str(shipped.parent / data["onnx"])
    if data.get("mono_model"):
        data["mono_model"] = str(shipped.parent / data["mono_model"])
    data.pop("torch", None)
    copy = tmp_path / "copy.yaml"
    copy.write_text(yaml.safe_dump(data))
    code, result, _ = run_bench(tmp_path, "--synthetic", "--frames", "1", "--warmup", "0",
                                "--resolution", "320x100", "--backend", "onnxruntime",
                                "--model", str(shipped), "--model", str(copy),
                                "--model", str(tmp_path / "student_int8.yaml"))
    assert code == 0
    assert list(result["backends"]) == ["onnxruntime", "onnxruntime:student_copy"]
    assert list(result["skipped"]) == ["onnxruntime:student_int8"]
    assert "not measured" in result["skipped"]["onnxruntime:student_int8"]


def test_no_backend_at_all_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(factory, "tensorrt_available", lambda: False)
    assert main(["bench", *FAST, "--backend", "tensorrt"]) == 2
    assert "no backend could be measured" in capsys.readouterr().err


def test_frame_at_scales_the_camera_and_keeps_the_points():
    frame = bench.synthetic_frame()
    small = bench.frame_at(frame, 621, 188)
    assert small.rgb.shape == (188, 621, 3) and small.camera.size == (621, 188)
    assert small.points is frame.points
    assert small.camera.fx == pytest.approx(frame.camera.fx / 2)
    assert bench.frame_at(frame, *frame.size) is frame


def test_kitti_frame_loads(kitti_dc):
    frame = bench.load_frame(kitti_dc)
    assert frame.size == (1242, 375) and frame.points.shape[1] == 4
    assert frame.name == kitti_dc.name


def test_node_through_a_real_node_process(tmp_path):
    """--node: the completion node in its own process (classical backend, for a quick start-up)
    on a private domain, a 2 s stream at 10 Hz."""
    pytest.importorskip("rclpy")
    from dmd3c_ros.ros.graph import free_domain_id
    code, result, markdown = run_bench(
        tmp_path, "--synthetic", "--frames", "1", "--warmup", "0", "--backend", "classical",
        "--node", "--node-backend", "classical", "--seconds", "2", "--rate", "10",
        "--domain-id", str(free_domain_id()))
    node = result["node"]
    assert code == 0, node
    assert set(node) >= {"backend", "p50_ms", "p95_ms", "dropped", "frames", "measured"}
    assert node["backend"] == "classical"
    assert node["frames"] == node["frames_sent"] == 20
    assert node["frames_answered"] > 0
    assert node["dropped"] == node["frames_sent"] - node["frames_answered"]
    assert 0 < node["p50_ms"] <= node["p95_ms"]
    assert 0 < node["subscriber_p50_ms"] <= node["subscriber_p95_ms"]
    assert "inside the node" in node["measured"]
    assert "## Node" in markdown and "| classical | 1242x375 |" in markdown


def test_nuscenes_sweep_batched_against_single_views(tmp_path, nuscenes_sample):
    code, result, markdown = run_bench(tmp_path, "--synthetic", "--frames", "1", "--warmup", "0",
                                       "--resolution", "320x100", "--backend", "classical",
                                       "--nuscenes", str(nuscenes_sample))
    assert code == 0
    surround = result["surround"]
    assert len(surround["cameras"]) == 6 and set(surround["sizes"]) == {"1600x900"}
    modes = {(r["backend"], r["mode"]): r for r in surround["runs"]}
    assert set(modes) == {("classical", "batch"), ("classical", "singles")}
    for run in modes.values():
        check_stages(run["stages"])
        assert {"projection", "inference", "total"} <= set(run["stages"])
    ratio = surround["ratios"]["classical"]
    assert ratio == pytest.approx(modes[("classical", "singles")]["stages"]["total"]["p50_ms"]
                                  / modes[("classical", "batch")]["stages"]["total"]["p50_ms"])
    assert "6 views as one batch vs one at a time" in markdown
    assert all(r["view_workers"] == 1 for r in modes.values())  # classical: one call
    assert "side by side" not in markdown
