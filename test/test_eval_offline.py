"""dmd3c eval, offline mode: bags written here with rosbags alone (other topic names, an Ouster-like
cloud, bgr8 images, 32FC1 ground truth), the real KITTI sample, LiDAR splits, the JSON contract."""
import json
from pathlib import Path

import numpy as np
import pytest

from dmd3c_ros.cli import main
from dmd3c_ros.core.calibration import transform_from_quaternion
from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.classical import complete_classical
from dmd3c_ros.core.metrics import average_metrics, depth_metrics
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.evaluation.lidar_split import split_points, visible_mask
from dmd3c_ros.evaluation.offline import plan_models

W, H, F = 96, 64, 60.0
K = np.array([[F, 0, 47.5], [0, F, 31.5], [0, 0, 1.0]])
CAMERA = PinholeCamera(W, H, K, np.hstack([K, np.zeros((3, 1))]))
# LiDAR (x forward, y left, z up) 0.25 m above the camera; every entry exact in binary.
R_CAM_FROM_LIDAR = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float)
QUATERNION = (0.5, -0.5, 0.5, 0.5)          # x, y, z, w of R_CAM_FROM_LIDAR
T_CAM_FROM_LIDAR = np.eye(4)
T_CAM_FROM_LIDAR[:3, :3] = R_CAM_FROM_LIDAR
T_CAM_FROM_LIDAR[:3, 3] = (0.0, -0.25, 0.0)
GROUND_Y = 1.5                              # metres below the camera (optical y is down)
WALLS = (12.0, 21.0, 30.0, 39.0, 48.0)      # wall distance of each paired frame (metres)
START = 1_700_000_000_000_000_000
TOPICS = {"image": "/front/image_color", "info": "/front/camera_info",
          "points": "/os_cloud_node/points", "gt": "/front/depth"}
KEYS = ("frames", "rmse_mm", "mae_mm", "irmse_per_km", "imae_per_km", "abs_rel", "delta1")


def exact_depth(wall: float) -> np.ndarray:
    """(H, W) float32 depth of a wall at ``wall`` m over a flat ground, row 0 without a value."""
    v = (np.arange(H)[:, None] - K[1, 2]) / F * np.ones((1, W))
    with np.errstate(divide="ignore"):
        ground = np.where(v > 0, GROUND_Y / v, np.inf)
    depth = np.minimum(ground, wall).astype(np.float32)
    depth[0] = np.nan
    return depth


def sweep(wall: float) -> np.ndarray:
    """(N, 3) LiDAR-frame returns of the scene (NaN rows = no return, as Ouster sends them)."""
    elevation, azimuth = np.meshgrid(np.radians(np.linspace(-22, 12, 40)),
                                     np.radians(np.r_[np.linspace(-55, 55, 240), 170, 180]))
    d_lidar = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                        np.sin(elevation)], -1).reshape(-1, 3)
    d_cam = d_lidar @ R_CAM_FROM_LIDAR.T
    origin = T_CAM_FROM_LIDAR[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = np.stack([np.where(d_cam[:, 2] > 0, (wall - origin[2]) / d_cam[:, 2], np.inf),
                         np.where(d_cam[:, 1] > 0, (GROUND_Y - origin[1]) / d_cam[:, 1],
                                  np.inf)], 1).min(1)
    hits = np.where(hits < 120.0, hits, np.nan)
    return d_lidar * hits[:, None]


def texture(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------ the bag

OUSTER = [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 16, 7), ("t", 20, 6),
          ("reflectivity", 24, 4), ("ring", 26, 4), ("ambient", 28, 4), ("range", 32, 6)]


def write_bag(path: Path, storage: str = "mcap") -> None:
    """5 paired frames at 10 Hz (bgr8 image + CameraInfo + 32FC1 depth at the image stamp, an
    Ouster-like sweep 10 ms later) and a sixth frame whose sweep comes 80 ms late (unpaired)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    types = get_typestore(Stores.ROS2_JAZZY)
    t = types.types

    def header(stamp, frame):
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](
            sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame)

    def image(pixels, encoding, stamp):
        data = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
        return t["sensor_msgs/msg/Image"](header=header(stamp, "front_optical"), height=H,
                                          width=W, encoding=encoding, is_bigendian=0,
                                          step=data.size // H, data=data)

    def info(stamp):
        return t["sensor_msgs/msg/CameraInfo"](
            header=header(stamp, "front_optical"), height=H, width=W,
            distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(-1), r=np.eye(3).reshape(-1),
            p=CAMERA.P.reshape(-1), binning_x=0, binning_y=0,
            roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                      do_rectify=False))

    def cloud(xyz, stamp):
        element = {7: "<f4", 6: "<u4", 4: "<u2"}
        record = np.dtype({"names": [n for n, _, _ in OUSTER],
                           "formats": [element[d] for _, _, d in OUSTER],
                           "offsets": [o for _, o, _ in OUSTER], "itemsize": 48})
        table = np.zeros(len(xyz), record)
        for axis, name in enumerate("xyz"):
            table[name] = xyz[:, axis]
        table["intensity"] = 50.0
        table["ring"] = np.arange(len(xyz)) % 40
        return t["sensor_msgs/msg/PointCloud2"](
            header=header(stamp, "os_sensor"), height=1, width=len(xyz),
            fields=[t["sensor_msgs/msg/PointField"](name=n, offset=o, datatype=d, count=1)
                    for n, o, d in OUSTER],
            is_bigendian=False, point_step=48, row_step=48 * len(xyz),
            data=table.view(np.uint8).reshape(-1), is_dense=False)

    tf = t["tf2_msgs/msg/TFMessage"](transforms=[t["geometry_msgs/msg/TransformStamped"](
        header=header(START, "front_optical"), child_frame_id="os_sensor",
        transform=t["geometry_msgs/msg/Transform"](
            translation=t["geometry_msgs/msg/Vector3"](x=0.0, y=-0.25, z=0.0),
            rotation=t["geometry_msgs/msg/Quaternion"](x=QUATERNION[0], y=QUATERNION[1],
                                                       z=QUATERNION[2], w=QUATERNION[3])))])
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=types) for topic, msgtype in
                 ((TOPICS["image"], "sensor_msgs/msg/Image"),
                  (TOPICS["info"], "sensor_msgs/msg/CameraInfo"),
                  (TOPICS["gt"], "sensor_msgs/msg/Image"),
                  (TOPICS["points"], "sensor_msgs/msg/PointCloud2"),
                  ("/tf_static", "tf2_msgs/msg/TFMessage"))}

        def write(topic, msg, stamp):
            writer.write(conns[topic], stamp, types.serialize_cdr(msg, msg.__msgtype__))
        write("/tf_static", tf, START - 10**9)
        for i, wall in enumerate(WALLS + (25.0,)):
            stamp = START + i * 100_000_000
            write(TOPICS["image"], image(texture(i)[..., ::-1], "bgr8", stamp), stamp)
            write(TOPICS["info"], info(stamp), stamp)
            write(TOPICS["gt"], image(exact_depth(wall), "32FC1", stamp), stamp)
            late = 10_000_000 if i < len(WALLS) else 80_000_000
            write(TOPICS["points"], cloud(sweep(wall), stamp + late), stamp + late)


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "bag"
    write_bag(path)
    return path


def bag_args(bag: Path, out: Path) -> list[str]:
    return ["eval", "--bag", str(bag), "--image-topic", TOPICS["image"],
            "--camera-info-topic", TOPICS["info"], "--points-topic", TOPICS["points"],
            "--out", str(out / "report"), "--json", str(out / "eval.json")]


def strict_json(path: Path) -> dict:
    def no_nan(token):
        raise AssertionError(f"{path} holds {token}")
    return json.loads(Path(path).read_text(), parse_constant=no_nan)


def test_bag_metrics_equal_a_direct_computation(bag, tmp_path):
    # The extrinsic in /tf_static is exact in binary, so the loader's transform is ours.
    np.testing.assert_array_equal(transform_from_quaternion((0, -0.25, 0), QUATERNION),
                                  T_CAM_FROM_LIDAR)
    assert main(bag_args(bag, tmp_path) + ["--gt-topic", TOPICS["gt"],
                                           "--backend", "classical"]) == 0
    data = strict_json(tmp_path / "eval.json")
    result = data["results"]["classical"]

    per_image, bands = [], {"0-20": [], "20-40": [], "40-80": []}
    coverage = {"0": [], "0-2": [], "2-4": [], "4+": []}
    for wall in WALLS:
        xyz = sweep(wall).astype(np.float32)  # float32 on the wire
        sparse = project_to_depth(xyz, CAMERA, T_CAM_FROM_LIDAR, min_depth=0.1, max_depth=100.0)
        prediction = complete_classical(sparse, max_depth=100.0)
        prediction = np.where((prediction >= 0.1) & (prediction <= 100.0), prediction, np.nan)
        gt = exact_depth(wall)
        per_image.append(depth_metrics(prediction, gt))
        for label, low, high in (("0-20", 0, 20), ("20-40", 20, 40), ("40-80", 40, 80)):
            band = np.where((gt >= low) & ((gt < high) if high < 80 else (gt <= high)), gt, 0)
            bands[label].append(depth_metrics(prediction, band))
        # coverage: pixels from the nearest projected return, by brute force
        rows, cols = np.nonzero(sparse > 0)
        v, u = np.mgrid[:gt.shape[0], :gt.shape[1]]
        nearest = np.sqrt(((v[..., None] - rows) ** 2 + (u[..., None] - cols) ** 2).min(-1))
        for label, low, high in (("0", -1, 0), ("0-2", 0, 2), ("2-4", 2, 4), ("4+", 4, np.inf)):
            band = np.where((nearest > low) & (nearest <= high), gt, 0)
            coverage[label].append(depth_metrics(prediction, band))
    expected = average_metrics(per_image)
    assert result["frames"] == len(WALLS) == expected["frames"]
    for key in KEYS[1:]:
        assert result[key] == pytest.approx(expected[key], rel=1e-6), key
    for label, rows in bands.items():
        expected_band = average_metrics(rows)
        assert result["bands"][label]["frames"] == expected_band["frames"] > 0
        assert result["bands"][label]["rmse_mm"] == pytest.approx(expected_band["rmse_mm"],
                                                                  rel=1e-6)
    for label, rows in coverage.items():
        expected_band = average_metrics(rows)
        assert result["coverage"][label]["frames"] == expected_band["frames"]
        assert result["coverage"][label]["mae_mm"] == pytest.approx(expected_band["mae_mm"],
                                                                    rel=1e-5, nan_ok=True)
    assert result["coverage"]["0"]["frames"] > 0 and result["coverage"]["0-2"]["frames"] > 0
    frame = data["run"]["per_frame"][0]
    assert sum(b["pixels"] for b in frame["coverage"].values()) == frame["metrics"]["pixels"]
    assert data["run"]["dropped"][TOPICS["image"]]["points"] == 1  # the late sweep
    assert result["latency_ms"]["p50"] > 0 and result["latency_ms"]["p95"] > 0
    # the same with the extrinsic given on the command line instead of /tf_static
    args = bag_args(bag, tmp_path / "explicit") + [
        "--gt-topic", TOPICS["gt"], "--backend", "classical",
        "--lidar-to-camera", *[repr(float(v)) for v in T_CAM_FROM_LIDAR.ravel()]]
    assert main(args) == 0
    again = strict_json(tmp_path / "explicit" / "eval.json")["results"]["classical"]
    assert again["rmse_mm"] == result["rmse_mm"]


def test_kitti_sample_rmse_equals_dmd3c_complete(kitti_dc, tmp_path):
    root = tmp_path / "kitti"
    root.mkdir()
    (root / kitti_dc.name).symlink_to(kitti_dc, target_is_directory=True)
    assert main(["eval", "--kitti", str(root), "--backend", "classical", "--out",
                 str(tmp_path / "report"), "--json", str(tmp_path / "eval.json")]) == 0
    result = strict_json(tmp_path / "eval.json")["results"]["classical"]
    assert main(["complete", "--backend", "classical", "--image", str(kitti_dc / "image_02.png"),
                 "--sparse", str(kitti_dc / "velodyne_raw_02.png"),
                 "--ground-truth", str(kitti_dc / "groundtruth_02.png"),
                 "--out", str(tmp_path / "depth.png"),
                 "--json", str(tmp_path / "complete.json")]) == 0
    complete = strict_json(tmp_path / "complete.json")["metrics"]
    assert result["frames"] == 1
    for key in KEYS[1:]:
        assert result[key] == pytest.approx(complete[key], rel=1e-6), key
    # the report breaks the same pixels down by distance to the nearest return of the input
    assert set(result["coverage"]) == {"0", "0-2", "2-4", "4+"}
    assert all(result["coverage"][k]["frames"] == 1 for k in result["coverage"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "nearest LiDAR return of the input" in report


def test_kitti_sample_lidar_split_is_deterministic(kitti_dc, tmp_path):
    runs = []
    for name in ("a", "b"):
        assert main(["eval", "--kitti", str(kitti_dc), "--backend", "classical",
                     "--lidar-split", "0.2", "--seed", "3", "--out", str(tmp_path / name),
                     "--json", str(tmp_path / f"{name}.json")]) == 0
        runs.append(strict_json(tmp_path / f"{name}.json")["results"]["classical"])
    assert runs[0]["frames"] == 1 and np.isfinite(runs[0]["rmse_mm"])
    for key in KEYS:
        assert runs[0][key] == runs[1][key]


def test_lidar_split_seeded_disjoint_and_sized():
    rng = np.random.default_rng(0)
    n = 5000
    xyz = np.column_stack([rng.uniform(-30, 30, n), rng.uniform(-5, 5, n),
                           rng.uniform(-20, 150, n)])
    points = np.column_stack([xyz, np.arange(n)]).astype(np.float64)  # column 3: point id
    visible = visible_mask(points, CAMERA, None, min_depth=0.1, max_depth=100.0)
    assert 100 < visible.sum() < n  # some points are behind, outside or too far
    kept, gt = split_points(points, CAMERA, None, 0.3, seed=7, min_depth=0.1, max_depth=100.0)
    kept_ids = kept[:, 3].astype(int)
    held = np.setdiff1d(np.arange(n), kept_ids)
    assert len(held) == round(0.3 * visible.sum())
    assert len(kept_ids) + len(held) == n and len(np.unique(kept_ids)) == len(kept_ids)
    assert visible[held].all()  # only visible points are held out: the rest stay in the input
    assert not np.isin(held, kept_ids).any()
    np.testing.assert_array_equal(gt, project_to_depth(points[held], CAMERA, None,
                                                       min_depth=0.1, max_depth=100.0))
    assert gt.dtype == np.float32 and np.count_nonzero(gt) > 0
    again, gt_again = split_points(points, CAMERA, None, 0.3, seed=7)
    np.testing.assert_array_equal(again, kept)
    np.testing.assert_array_equal(gt_again, gt)
    other, _ = split_points(points, CAMERA, None, 0.3, seed=8)
    assert not np.array_equal(other[:, 3], kept[:, 3])
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_points(points, CAMERA, None, 1.0, seed=0)


def test_plan_models_rule():
    assert plan_models(["classical"], []) == [("classical", None)]
    assert plan_models([], []) == [("auto", None)]
    assert plan_models(["onnxruntime", "torch"], ["a.yaml", "b.yaml"]) == [
        ("onnxruntime", "a.yaml"), ("torch", "b.yaml")]
    assert plan_models(["onnxruntime"], ["a.yaml", "b.yaml"]) == [
        ("onnxruntime", "a.yaml"), ("onnxruntime", "b.yaml")]
    assert plan_models(["classical", "onnxruntime"], ["a.yaml"]) == [
        ("classical", None), ("onnxruntime", "a.yaml")]
    with pytest.raises(ValueError, match="one backend per model"):
        plan_models(["classical", "onnxruntime"], ["a.yaml", "b.yaml", "c.yaml"])


def test_side_by_side_json_contract(bag, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from test_runtime import _write, make_tiny_net  # the tiny network the runtime tests build
    spec = _write(tmp_path / "model", make_tiny_net(seed=0).eval(), name="tiny")
    assert main(bag_args(bag, tmp_path) + ["--lidar-split", "0.25", "--seed", "1",
                                           "--backend", "classical", "--backend", "onnxruntime",
                                           "--model", str(spec.path)]) == 0
    data = strict_json(tmp_path / "eval.json")
    assert set(data) == {"results", "run"}
    assert list(data["results"]) == ["classical", "onnxruntime:tiny"]
    for result in data["results"].values():
        for key in KEYS:
            assert isinstance(result[key], (int, float)), key
        assert result["frames"] == len(WALLS)
        assert set(result["bands"]) == {"0-20", "20-40", "40-80"}
        assert set(result["latency_ms"]) >= {"p50", "p95"}
    assert data["run"]["gt"].startswith("lidar split")
    assert data["run"]["models"]["onnxruntime:tiny"]["model"] == str(spec.path)


def test_eval_errors_are_clear(bag, tmp_path, capsys):
    assert main(bag_args(bag, tmp_path) + ["--backend", "classical"]) == 2
    assert "--gt-topic" in capsys.readouterr().err
    assert main(["eval", "--bag", str(bag), "--gt-topic", TOPICS["gt"],
                 "--out", str(tmp_path)]) == 2
    assert "--image-topic" in capsys.readouterr().err
    assert main(["eval", "--kitti", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_rig_bag_is_scored_per_camera(tmp_path):
    """A stereo rig's bag (synthetic, extrinsics from /tf_static): one summary per camera."""
    from dmd3c_ros.training.sim.run import run_sim
    bag = tmp_path / "stereo"
    run_sim(bag, frames=2, seed=2, fmt="rosbag2-mcap", rig="stereo", image_scale=0.25)
    report = tmp_path / "eval.json"
    assert main(["eval", "--bag", str(bag), "--image-topic", "/camera_2/image",
                 "--image-topic", "/camera_3/image", "--points-topic", "/velodyne/points",
                 "--gt-topic", "/camera_2/depth_gt", "--gt-topic", "/camera_3/depth_gt",
                 "--backend", "classical", "--out", str(tmp_path / "out"), "--json",
                 str(report)]) == 0
    result = json.loads(report.read_text())["results"]["classical"]
    assert result["frames"] == 4
    assert len(result["cameras"]) == 2
    for camera in result["cameras"].values():
        assert camera["frames"] == 2 and camera["rmse_mm"] > 0


def test_gt_max_depth_scores_only_pixels_within_the_cap(bag, tmp_path):
    cap = 25.0
    assert main(bag_args(bag, tmp_path) + ["--gt-topic", TOPICS["gt"], "--backend", "classical",
                                           "--gt-max-depth", str(cap)]) == 0
    data = strict_json(tmp_path / "eval.json")
    assert data["run"]["gt_max_depth_m"] == cap
    pixels = [r["metrics"]["pixels"] for r in data["run"]["per_frame"]]
    every = [int(np.count_nonzero(np.isfinite(exact_depth(w)) & (exact_depth(w) > 0)))
             for w in WALLS]
    within = [int(np.count_nonzero(exact_depth(w) <= cap)) for w in WALLS]  # NaN compares False
    assert pixels == within and sum(within) < sum(every)
    assert data["results"]["classical"]["bands"]["40-80"]["frames"] == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "--gt-max-depth 25.0" in report and "at most 25 m away are scored" in report


def test_mono_with_classical_is_an_error(bag, tmp_path, capsys):
    assert main(bag_args(bag, tmp_path) + ["--gt-topic", TOPICS["gt"], "--backend", "classical",
                                           "--mono"]) == 2
    err = capsys.readouterr().err
    assert "--mono" in err and "classical" in err
    assert not (tmp_path / "eval.json").exists()


def test_mono_with_an_onnx_model_runs_without_lidar(bag, tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from test_runtime import _write, make_tiny_net  # the tiny network the runtime tests build
    net = make_tiny_net(seed=0).eval()
    spec = _write(tmp_path / "model", net, name="tiny")
    assert main(bag_args(bag, tmp_path) + ["--gt-topic", TOPICS["gt"], "--backend",
                                           "onnxruntime", "--model", str(spec.path),
                                           "--mono"]) == 0
    data = strict_json(tmp_path / "eval.json")
    assert data["run"]["input_mode"] == "mono" and "gt_max_depth_m" in data["run"]
    assert data["run"]["gt_max_depth_m"] is None
    assert data["results"]["onnxruntime:tiny"]["frames"] == len(WALLS)
    assert [r["mode"] for r in data["run"]["per_frame"]] == ["mono"] * len(WALLS)
    assert "coverage" not in data["results"]["onnxruntime:tiny"]  # no LiDAR, no coverage
    assert all("coverage" not in r for r in data["run"]["per_frame"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "--mono" in report and "Mono mode" in report
    assert "every ground-truth pixel is scored" in report
    # a model whose spec says it needs LiDAR: a clear error
    needs_lidar = _write(tmp_path / "lidar_only", net, name="lidar_only", supports_mono=False)
    capsys.readouterr()
    assert main(bag_args(bag, tmp_path / "b") + ["--gt-topic", TOPICS["gt"], "--backend",
                                                 "onnxruntime", "--model",
                                                 str(needs_lidar.path), "--mono"]) == 2
    assert "supports_mono: false" in capsys.readouterr().err
