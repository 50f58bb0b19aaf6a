"""`dmd3c complete` end to end on the real KITTI sample and on hand-made inputs."""
import json

import numpy as np
import pytest

from dmd3c_ros.cli import main
from dmd3c_ros.core.classical import complete_classical
from dmd3c_ros.core.io import read_kitti_depth, read_rgb, write_kitti_depth, write_rgb
from dmd3c_ros.core.metrics import depth_metrics


def test_complete_classical_on_kitti(kitti_dc, tmp_path, capsys):
    out, color, report = tmp_path / "d.png", tmp_path / "c.png", tmp_path / "m.json"
    code = main(["complete", "--backend", "classical", "--image", str(kitti_dc / "image_02.png"),
                 "--sparse", str(kitti_dc / "velodyne_raw_02.png"),
                 "--ground-truth", str(kitti_dc / "groundtruth_02.png"),
                 "--out", str(out), "--out-colorized", str(color), "--json", str(report)])
    assert code == 0
    written = read_kitti_depth(out)
    expected = complete_classical(read_kitti_depth(kitti_dc / "velodyne_raw_02.png"))
    np.testing.assert_allclose(written, expected, atol=0.5 / 256)  # PNG quantisation
    assert read_rgb(color).shape == (375, 1242, 3)
    figures = json.loads(report.read_text())
    assert figures["backend"] == "classical" and figures["mode"] == "completion"
    assert figures["metrics"]["rmse_mm"] <= 1100.0
    assert "RMSE" in capsys.readouterr().out


def test_complete_from_points_and_raw_calibration(kitti_dc, tmp_path):
    report = tmp_path / "m.json"
    assert main(["complete", "--backend", "classical", "--image", str(kitti_dc / "image_02.png"),
                 "--points", str(kitti_dc / "velodyne.bin"), "--calib", str(kitti_dc),
                 "--ground-truth", str(kitti_dc / "groundtruth_02.png"),
                 "--out", str(tmp_path / "d.png"), "--json", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert figures["sparse_pixels"] >= 18000
    assert figures["metrics"]["rmse_mm"] < 2000.0


@pytest.fixture
def frame(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    sparse = np.zeros((30, 40), np.float32)
    sparse[::3, ::4] = 10.0
    write_rgb(tmp_path / "rgb.png", rgb)
    write_kitti_depth(tmp_path / "sparse.png", sparse)
    write_kitti_depth(tmp_path / "empty.png", np.zeros((30, 40)))
    write_kitti_depth(tmp_path / "small.png", sparse[:20])
    identity = "1 0 0 0 1 0 0 0 1"
    (tmp_path / "calib.txt").write_text(f"P2: 30 0 20 0 0 30 15 0 0 0 1 0\nR0_rect: {identity}\n"
                                        "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n")
    return tmp_path


def run_error(args, capsys):
    assert main(["complete", "--out", "unused.png"] + args) == 2
    return capsys.readouterr().err


def test_written_png_round_trips_metres(frame):
    assert main(["complete", "--backend", "classical", "--image", str(frame / "rgb.png"),
                 "--sparse", str(frame / "sparse.png"), "--out", str(frame / "d.png")]) == 0
    np.testing.assert_allclose(read_kitti_depth(frame / "d.png"), 10.0, atol=1 / 256)


@pytest.mark.parametrize("case, message", [
    (["--image", "missing.png", "--backend", "classical"], "missing.png: no such file"),
    (["--image", "{f}/rgb.png", "--backend", "classical"], "mono"),
    (["--image", "{f}/rgb.png", "--sparse", "{f}/empty.png", "--backend", "classical"], "mono"),
    (["--image", "{f}/rgb.png", "--sparse", "{f}/small.png", "--backend", "classical"],
     "does not match"),
    (["--image", "{f}/rgb.png", "--points", "{f}/p.bin", "--backend", "classical"], "--calib"),
    (["--image", "{f}/rgb.png", "--sparse", "{f}/sparse.png", "--backend", "onnxruntime",
      "--model", "{f}/no_such_model.yaml"], "no_such_model.yaml"),
    (["--image", "{f}/rgb.png", "--sparse", "{f}/rgb.png", "--backend", "classical"], "uint16"),
])
def test_clear_errors(frame, capsys, case, message):
    err = run_error([a.format(f=frame) for a in case], capsys)
    assert message in err and err.startswith("dmd3c complete: error:")


def test_malformed_sweep_is_an_error(frame, capsys):
    (frame / "p.bin").write_bytes(b"\0" * 18)
    err = run_error(["--image", str(frame / "rgb.png"), "--points", str(frame / "p.bin"),
                     "--calib", str(frame / "calib.txt"), "--backend", "classical"], capsys)
    assert "16-byte" in err


def test_metrics_module_is_what_the_cli_reports(kitti_dc, tmp_path):
    report = tmp_path / "m.json"
    main(["complete", "--backend", "classical", "--image", str(kitti_dc / "image_02.png"),
          "--sparse", str(kitti_dc / "velodyne_raw_02.png"),
          "--ground-truth", str(kitti_dc / "groundtruth_02.png"), "--out",
          str(tmp_path / "d.png"), "--json", str(report)])
    direct = depth_metrics(complete_classical(read_kitti_depth(kitti_dc / "velodyne_raw_02.png")),
                           read_kitti_depth(kitti_dc / "groundtruth_02.png"))
    assert json.loads(report.read_text())["metrics"]["rmse_mm"] == pytest.approx(direct["rmse_mm"])


def test_object_calibration_sweep(frame):
    # A wall 10 m ahead of the LiDAR (x forward) covers the whole 40x30 image after projection.
    y, z = np.meshgrid(np.linspace(-7, 7, 80), np.linspace(-6, 6, 60))
    sweep = np.stack([np.full(y.size, 10.0), y.ravel(), z.ravel(), np.zeros(y.size)], axis=1)
    sweep.astype(np.float32).tofile(frame / "wall.bin")
    assert main(["complete", "--backend", "classical", "--image", str(frame / "rgb.png"),
                 "--points", str(frame / "wall.bin"), "--calib", str(frame / "calib.txt"),
                 "--out", str(frame / "d.png")]) == 0
    np.testing.assert_allclose(read_kitti_depth(frame / "d.png"), 10.0, atol=1 / 256)


@pytest.mark.parametrize("backend", ["onnxruntime", "auto", "torch"])
def test_complete_with_a_model_spec(frame, tmp_path, monkeypatch, backend):
    from test_runtime import _write, make_tiny_net  # the tiny network the runtime tests build

    from dmd3c_ros.runtime.factory import create_backend
    monkeypatch.setattr("dmd3c_ros.runtime.factory.tensorrt_available", lambda: False)
    spec = _write(tmp_path / "model", make_tiny_net())
    report = tmp_path / "m.json"
    assert main(["complete", "--backend", backend, "--model", str(spec.path),
                 "--image", str(frame / "rgb.png"), "--sparse", str(frame / "sparse.png"),
                 "--out", str(tmp_path / "d.png"), "--json", str(report)]) == 0
    expected = create_backend("onnxruntime", spec).infer(read_rgb(frame / "rgb.png"),
                                                         read_kitti_depth(frame / "sparse.png"))
    np.testing.assert_allclose(read_kitti_depth(tmp_path / "d.png"),
                               np.nan_to_num(expected.depth), atol=1 / 256)
    assert json.loads(report.read_text())["backend"] == ("onnxruntime" if backend == "auto"
                                                         else backend)
    # No LiDAR argument: mono mode, which this model supports.
    assert main(["complete", "--backend", backend, "--model", str(spec.path), "--image",
                 str(frame / "rgb.png"), "--out", str(tmp_path / "m.png"), "--json",
                 str(report)]) == 0
    assert json.loads(report.read_text())["mode"] == "mono"


def test_calib_prints_the_node_parameter(kitti_dc, capsys):
    from dmd3c_ros.core.calibration import load_kitti_calibration
    from dmd3c_ros.core.config import parse_extrinsic
    assert main(["calib", "--calib", str(kitti_dc)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith('lidar_to_camera:="[')
    values = [float(v) for v in line.split("[")[1].rstrip(']"').split(",")]
    np.testing.assert_allclose(parse_extrinsic(values),
                               load_kitti_calibration(kitti_dc).lidar_to_camera)


def test_calib_errors(frame, capsys):
    assert main(["calib", "--calib", str(frame / "calib.txt")]) == 2
    assert "image size" in capsys.readouterr().err
    assert main(["calib", "--calib", str(frame / "calib.txt"), "--image-size", "forty"]) == 2
    assert main(["calib", "--calib", str(frame / "calib.txt"), "--image-size", "40x30"]) == 0
