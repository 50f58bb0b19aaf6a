"""Dataset loaders (dmd3c_ros.training.data): tiny official layouts built here, the real samples
in ../shared/data, and rosbag2 bags written here with rosbags (sqlite3 and mcap)."""
import importlib.util
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from dmd3c_ros.core.calibration import rigid_transform
from dmd3c_ros.core.camera import CalibrationError, PinholeCamera
from dmd3c_ros.core.io import write_rgb
from dmd3c_ros.training.data import (SAMPLE_KEYS, KittiDepthCompletion, KittiDepthSelection,
                                     KittiFrameFolders, KittiObjectFrames, KittiStereo2015,
                                     LayoutError, NuScenesSampleFolder, RosbagFrames, RosbagTopics,
                                     SampleError, make_sample, open_nuscenes, validate_sample)
from dmd3c_ros.training.data.kitti_stereo import (KITTI_DEFAULT_BASELINE_M,
                                                  KITTI_DEFAULT_FOCAL_PX)
from dmd3c_ros.training.data.rosbag_messages import (MessageError, camera_info_to_camera,
                                                     depth_image_to_metres, image_to_rgb,
                                                     pointcloud2_to_points)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
W, H, F = 64, 32, 50.0                   # tiny camera: 64x32 pixels, fx = fy = 50 px
CX, CY = 31.5, 15.5
P2 = np.array([[F, 0, CX, F * 0.06], [0, F, CY, 0.0], [0, 0, 1, 0]])    # camera 2: 6 cm left
P3 = np.array([[F, 0, CX, -F * 0.47], [0, F, CY, 0.0], [0, 0, 1, 0]])   # camera 3: 47 cm right
BASELINE = 0.53                          # |0.06 - (-0.47)| metres
VELO_R = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float)  # LiDAR x fwd, y left, z up
VELO_T = np.array([0.0, -0.08, -0.27])
VELO_TO_CAM = rigid_transform(VELO_R, VELO_T)


@pytest.fixture
def kitti_stereo2015() -> Path:
    path = SHARED_DATA / "kitti_stereo2015"
    if not (path / "000046_10" / "disp_occ_0.png").is_file():
        pytest.skip(f"real KITTI stereo 2015 sample not found at {path}")
    return path


@pytest.fixture
def nuscenes_sample() -> Path:
    path = SHARED_DATA / "nuscenes_sample"
    if not (path / "calibration.json").is_file():
        pytest.skip(f"real nuScenes sample not found at {path}")
    return path


# ------------------------------------------------------------------------------ tiny files

def numbers(array) -> str:
    return " ".join(f"{v:.9e}" for v in np.asarray(array, float).reshape(-1))


def cam_to_cam_text() -> str:
    return "calib_time: 09-Jan-2012 13:57:47\n" + "".join(
        f"S_rect_0{i}: {W} {H}\nP_rect_0{i}: {numbers(P)}\n" for i, P in ((2, P2), (3, P3))) \
        + f"R_rect_00: {numbers(np.eye(3))}\n"


def write_raw_calibration(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "calib_cam_to_cam.txt").write_text(cam_to_cam_text())
    (folder / "calib_velo_to_cam.txt").write_text(
        f"calib_time: 15-Mar-2012 11:37:16\nR: {numbers(VELO_R)}\nT: {numbers(VELO_T)}\n")


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def write_u16(path: Path, raw: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), raw.astype(np.uint16))


def depth_raw(seed: int) -> np.ndarray:
    """uint16 KITTI depth (metres x 256) with about half the pixels empty."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((H, W)) < 0.5, rng.integers(256, 20000, (H, W)), 0).astype(np.uint16)


def sweep(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 5, (20, 4)).astype(np.float32)


def check_sample(sample: dict) -> dict:
    assert tuple(sample) == SAMPLE_KEYS
    validate_sample(sample)
    assert sample["rgb"].dtype == np.uint8 and sample["sparse"].dtype == np.float32
    assert sample["camera"].size == (sample["rgb"].shape[1], sample["rgb"].shape[0])
    return sample


# -------------------------------------------------------------------- sample contract itself

def test_validate_sample_rejects_broken_samples():
    camera = PinholeCamera.from_intrinsics(F, F, CX, CY, W, H)
    sample = make_sample("a", "test", image(0), camera)
    assert sample["sparse"].shape == (H, W) and not sample["sparse"].any()  # no LiDAR: all zero
    assert sample["gt"] is None and sample["stereo"] is None and sample["stamp"] is None
    for key, value, match in [("sparse", np.zeros((H, W)), "float32"),
                              ("gt", np.full((H, W), np.nan, np.float32), "finite"),
                              ("rgb", np.zeros((H, W, 3), np.float32), "uint8"),
                              ("points", np.zeros((3, 3), np.float32), "points"),
                              ("camera", PinholeCamera.from_intrinsics(F, F, CX, CY, W + 1, H),
                               "image"),
                              ("lidar_to_camera", np.zeros((4, 4)), "lidar_to_camera"),
                              ("stamp", 3, "stamp")]:
        with pytest.raises(SampleError, match=match):
            validate_sample({**sample, key: value})
    with pytest.raises(SampleError, match="unexpected"):
        validate_sample({**sample, "extra": 1})


# ------------------------------------------------------------------ KITTI DC train/val drives

DRIVE = "2011_09_26_drive_0001_sync"
FRAMES = ("0000000000", "0000000001")


def make_kitti_dc(root: Path, raw_root: Path, raw_layout: str = "date", split: str = "train"):
    """Depth-completion drive (2 frames x cameras 2, 3) + its raw folder; returns written data."""
    date = DRIVE.split("_drive_")[0]
    raw = raw_root / date / DRIVE if raw_layout == "date" else raw_root / DRIVE
    write_raw_calibration(raw.parent if raw_layout == "date" else raw)
    data = {}
    for f, frame in enumerate(FRAMES):
        for i in (2, 3):
            seed = 10 * f + i
            rgb, sparse, gt = image(seed), depth_raw(seed), depth_raw(seed + 100)
            write_rgb(raw / f"image_0{i}" / "data" / f"{frame}.png", rgb)
            depth = root / split / DRIVE / "proj_depth"
            write_u16(depth / "velodyne_raw" / f"image_0{i}" / f"{frame}.png", sparse)
            write_u16(depth / "groundtruth" / f"image_0{i}" / f"{frame}.png", gt)
            data[frame, i] = (rgb, sparse, gt)
        (raw / "velodyne_points" / "data").mkdir(parents=True, exist_ok=True)
        sweep(f).tofile(raw / "velodyne_points" / "data" / f"{frame}.bin")
    for i in (2, 3):
        (raw / f"image_0{i}" / "timestamps.txt").write_text(
            "2011-09-26 13:02:25.964389445\n2011-09-26 13:02:26.074398000\n")
    return data


def test_kitti_dc_official_layout(tmp_path):
    data = make_kitti_dc(tmp_path / "dc", tmp_path / "raw")
    loader = KittiDepthCompletion(tmp_path / "dc", "train", raw_root=tmp_path / "raw")
    assert len(loader) == 4 and "4 samples" in loader.describe() and "KittiDepth" in repr(loader)
    names = [s["name"] for s in loader]
    assert sorted(names) == sorted(f"{DRIVE}/image_0{i}/{f}" for f in FRAMES for i in (2, 3))
    for sample in loader:
        check_sample(sample)
        frame, i = sample["name"].split("/")[2], int(sample["name"].split("/")[1][-1])
        rgb, sparse, gt = data[frame, i]
        assert sample["source"] == "kitti_dc/train"
        np.testing.assert_array_equal(sample["rgb"], rgb)
        np.testing.assert_array_equal(sample["sparse"], sparse / 256.0)  # KITTI PNG -> metres
        np.testing.assert_array_equal(sample["gt"], gt / 256.0)
        np.testing.assert_allclose(sample["camera"].P, P2 if i == 2 else P3)
        np.testing.assert_allclose(sample["lidar_to_camera"], VELO_TO_CAM)  # R_rect = I here
        np.testing.assert_array_equal(sample["points"], sweep(FRAMES.index(frame)))
        stereo = sample["stereo"]
        np.testing.assert_array_equal(stereo["rgb"], data[frame, 5 - i][0])
        np.testing.assert_allclose(stereo["camera"].P, P3 if i == 2 else P2)
        assert stereo["baseline_m"] == pytest.approx(BASELINE) and stereo["gt_disparity"] is None
        second = datetime(2011, 9, 26, 13, 2, 25, tzinfo=timezone.utc).timestamp()
        expected = second + (0.964389445 if frame == FRAMES[0] else 1.074398)
        assert sample["stamp"] == pytest.approx(expected, abs=1e-6)
    first = loader[0]
    first["sparse"][:] = 0  # samples own their arrays: the next read is unchanged
    assert loader[0]["sparse"].any() and loader[-1]["name"] == loader[3]["name"]
    with pytest.raises(IndexError):
        loader[4]


@pytest.mark.parametrize("raw_layout", ["date", "flat"])
def test_kitti_dc_synthetic_tree_with_raw_root_equal_to_root(tmp_path, raw_layout):
    # What `dmd3c sim --format kitti` writes: one root, calibration pair per drive.
    make_kitti_dc(tmp_path, tmp_path, raw_layout, split="val")
    date_level = tmp_path / "2011_09_26"
    if raw_layout == "date":  # move the pair into the drive folder (per-drive calibration)
        for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
            (date_level / name).rename(date_level / DRIVE / name)
    loader = KittiDepthCompletion(tmp_path, "val", cameras=(2,), stereo=False, points=False)
    assert len(loader) == 2
    sample = check_sample(loader[1])
    assert sample["source"] == "kitti_dc/val" and sample["stereo"] is None
    assert sample["points"] is None and sample["camera"].fx == F


def test_kitti_dc_missing_parts_are_clear_errors(tmp_path):
    with pytest.raises(LayoutError, match="train"):
        KittiDepthCompletion(tmp_path / "nothing")
    make_kitti_dc(tmp_path / "dc", tmp_path / "raw")
    (tmp_path / "empty_raw").mkdir()
    with pytest.raises(LayoutError, match="image_02/data"):
        KittiDepthCompletion(tmp_path / "dc", raw_root=tmp_path / "empty_raw")
    (tmp_path / "raw" / "2011_09_26" / "calib_velo_to_cam.txt").unlink()
    with pytest.raises(LayoutError, match="calib_velo_to_cam"):
        KittiDepthCompletion(tmp_path / "dc", raw_root=tmp_path / "raw")
    with pytest.raises(ValueError, match="cameras"):
        KittiDepthCompletion(tmp_path / "dc", raw_root=tmp_path / "raw", cameras=(1,))


def test_kitti_dc_wrong_image_size_is_a_calibration_error(tmp_path):
    make_kitti_dc(tmp_path / "dc", tmp_path / "raw")
    write_rgb(tmp_path / "raw" / "2011_09_26" / DRIVE / "image_02" / "data" / f"{FRAMES[0]}.png",
              np.zeros((H + 2, W, 3), np.uint8))
    loader = KittiDepthCompletion(tmp_path / "dc", raw_root=tmp_path / "raw", cameras=(2,))
    with pytest.raises(CalibrationError, match="S_rect_02"):
        loader[0]


# ---------------------------------------------------------------- KITTI DC cropped selections

def make_selection(folder: Path, names, with_gt: bool, K: np.ndarray):
    data = {}
    for n, (prefix, suffix) in enumerate(names):
        def name(token):
            return f"{prefix}{token}_{suffix}" if prefix else suffix
        rgb, sparse, gt = image(n), depth_raw(n), depth_raw(n + 50)
        write_rgb(folder / "image" / f"{name('image')}.png", rgb)
        write_u16(folder / "velodyne_raw" / f"{name('velodyne_raw')}.png", sparse)
        if with_gt:
            write_u16(folder / "groundtruth_depth" / f"{name('groundtruth_depth')}.png", gt)
        (folder / "intrinsics").mkdir(exist_ok=True)
        (folder / "intrinsics" / f"{name('image')}.txt").write_text(numbers(K) + "\n")
        data[n] = (rgb, sparse, gt)
    return data


def test_kitti_val_selection_cropped(tmp_path):
    # The selection's K is the full camera's K shifted by the crop: bottom-centre 48x32 of 64x32
    # here (1216x352 of 1242x375 in KITTI).
    full = PinholeCamera.from_projection(P2, W + 16, H + 8)
    crop = full.cropped(8, 8, W, H)
    names = [(f"{DRIVE}_", "0000000005_image_02"), (f"{DRIVE}_", "0000000006_image_03")]
    data = make_selection(tmp_path / "val_selection_cropped", names, True, crop.K)
    for root in (tmp_path, tmp_path / "val_selection_cropped"):
        loader = KittiDepthSelection(root)
        assert len(loader) == 2 and "with ground truth" in loader.describe()
    for n, sample in enumerate(loader):
        check_sample(sample)
        rgb, sparse, gt = data[n]
        assert sample["name"] == f"{DRIVE}_{names[n][1]}"
        assert sample["source"] == "kitti_dc/val_selection_cropped"
        np.testing.assert_array_equal(sample["rgb"], rgb)
        np.testing.assert_array_equal(sample["sparse"], sparse / 256.0)
        np.testing.assert_array_equal(sample["gt"], gt / 256.0)
        np.testing.assert_allclose(sample["camera"].K, crop.K)
        assert sample["camera"].cx == pytest.approx(CX - 8) and sample["camera"].cy == CY - 8
        np.testing.assert_allclose(sample["camera"].P[:, 3], 0)
        assert sample["lidar_to_camera"] is None and sample["points"] is None
        assert sample["stereo"] is None and sample["stamp"] is None


def test_kitti_test_anonymous_has_no_gt_and_zero_k_is_an_error(tmp_path):
    folder = tmp_path / "test_depth_completion_anonymous"
    K = np.array([[F, 0, CX], [0, F, CY], [0, 0, 1]])
    make_selection(folder, [("", "0000000000"), ("", "0000000001")], False, K)
    loader = KittiDepthSelection(tmp_path, "test_depth_completion_anonymous")
    assert len(loader) == 2 and "no ground truth" in loader.describe()
    sample = check_sample(loader[1])
    assert sample["gt"] is None and sample["name"] == "0000000001"
    (folder / "intrinsics" / "0000000001.txt").write_text(numbers(np.zeros(9)))
    with pytest.raises(CalibrationError, match="all-zero K"):
        loader[1]
    (folder / "intrinsics" / "0000000001.txt").write_text("1 2 3")
    with pytest.raises(CalibrationError, match="9 numbers"):
        loader[1]
    (folder / "intrinsics" / "0000000001.txt").unlink()
    with pytest.raises(LayoutError, match="intrinsics"):
        loader[1]
    with pytest.raises(LayoutError, match="val_selection_cropped"):
        KittiDepthSelection(tmp_path)


# ------------------------------------------------------------ one folder per frame (+ object)

def test_kitti_frame_folders_tiny(tmp_path):
    for n, frame in enumerate(FRAMES):
        folder = tmp_path / frame
        write_rgb(folder / "image_02.png", image(n))
        write_rgb(folder / "image_03.png", image(n + 7))
        sweep(n).tofile(folder / "velodyne.bin")
        if n == 0:  # frame 0 carries the official PNGs; frame 1 only the sweep
            write_u16(folder / "velodyne_raw_02.png", depth_raw(n))
            write_u16(folder / "groundtruth_02.png", depth_raw(n + 1))
    write_raw_calibration(tmp_path)  # one pair shared by the frames, in <root>
    loader = KittiFrameFolders(tmp_path)
    assert len(loader) == 2
    first, second = check_sample(loader[0]), check_sample(loader[1])
    assert first["name"] == f"{FRAMES[0]}/image_02" and first["source"] == "kitti_dc/frames"
    np.testing.assert_array_equal(first["sparse"], depth_raw(0) / 256.0)
    np.testing.assert_array_equal(first["gt"], depth_raw(1) / 256.0)
    np.testing.assert_array_equal(first["stereo"]["rgb"], image(7))
    assert first["stereo"]["baseline_m"] == pytest.approx(BASELINE)
    assert second["gt"] is None  # no groundtruth_02.png: unknown
    from dmd3c_ros.core.projection import project_to_depth
    np.testing.assert_array_equal(second["sparse"], project_to_depth(
        sweep(1), second["camera"], VELO_TO_CAM))
    assert len(KittiFrameFolders(tmp_path / FRAMES[0], cameras=(2, 3))) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="image_0"):
        KittiFrameFolders(tmp_path / "empty")


def test_kitti_frame_folders_real(kitti_dc):
    loader = KittiFrameFolders(kitti_dc)
    assert len(loader) == 1
    sample = check_sample(loader[0])
    assert sample["rgb"].shape == (375, 1242, 3)
    assert int((sample["sparse"] > 0).sum()) == 19154  # the official velodyne_raw_02.png
    valid = sample["gt"][sample["gt"] > 0]
    assert 5.0 < valid.min() and valid.max() < 90.0
    assert sample["camera"].fx == pytest.approx(721.5377)
    assert sample["stereo"]["baseline_m"] == pytest.approx(0.54, abs=0.01)  # 0.5327 from P_rect
    assert sample["stereo"]["camera"].P[0, 3] == pytest.approx(-339.5242, abs=1e-3)
    assert sample["points"].shape == (121948, 4)


def object_calib_text(P=P2) -> str:
    Tr = VELO_TO_CAM[:3]
    return (f"P0: {numbers(P2)}\nP1: {numbers(P2)}\nP2: {numbers(P)}\nP3: {numbers(P3)}\n"
            f"R0_rect: {numbers(np.eye(3))}\nTr_velo_to_cam: {numbers(Tr)}\n")


def lidar_point_at(u: float, v: float, depth: float) -> np.ndarray:
    """A LiDAR-frame point that camera P2 sees at pixel (u, v) with ``depth``."""
    camera = np.linalg.solve(P2[:, :3], np.array([u, v, 1.0]) * depth - P2[:, 3])
    return np.linalg.solve(VELO_R, camera - VELO_T)


@pytest.mark.parametrize("layout", ["folders", "official"])
def test_kitti_object_tiny(tmp_path, layout):
    points = np.array([[*lidar_point_at(10, 5, 7.5), 0.3], [*lidar_point_at(40, 20, 12.0), 0.9],
                       [*lidar_point_at(10, 5, 20.0), 0.1]], np.float32)  # hidden behind #0
    if layout == "folders":
        folder = tmp_path / "000007"
        paths = (folder / "image_2.png", folder / "image_3.png", folder / "velodyne.bin",
                 folder / "calib.txt")
    else:
        split = tmp_path / "training"
        paths = (split / "image_2" / "000007.png", split / "image_3" / "000007.png",
                 split / "velodyne" / "000007.bin", split / "calib" / "000007.txt")
    write_rgb(paths[0], image(1))
    write_rgb(paths[1], image(2))
    paths[2].parent.mkdir(parents=True, exist_ok=True)
    points.tofile(paths[2])
    paths[3].parent.mkdir(parents=True, exist_ok=True)
    paths[3].write_text(object_calib_text())
    loader = KittiObjectFrames(tmp_path)
    sample = check_sample(loader[0])
    assert sample["name"] == "000007" and sample["gt"] is None
    assert sample["sparse"][5, 10] == pytest.approx(7.5, abs=1e-4)  # z-buffer: nearest wins
    assert sample["sparse"][20, 40] == pytest.approx(12.0, abs=1e-4)
    assert int((sample["sparse"] > 0).sum()) == 2
    np.testing.assert_array_equal(sample["points"], points)
    assert sample["stereo"]["baseline_m"] == pytest.approx(BASELINE)


def test_kitti_object_real(kitti_object):
    sample = check_sample(KittiObjectFrames(kitti_object)[0])
    assert sample["rgb"].shape == (370, 1224, 3) and sample["gt"] is None
    assert int((sample["sparse"] > 0).sum()) > 15000
    assert sample["points"].shape == (115384, 4) and sample["stereo"] is None


# ------------------------------------------------------------------------- KITTI stereo 2015

def test_kitti_stereo2015_official_layout(tmp_path):
    split = tmp_path / "training"
    disparity = np.zeros((H, W), np.uint16)
    disparity[4, 5], disparity[10, 20] = 10 * 256, 25 * 256 + 128  # 10 px and 25.5 px
    for stem in ("000000_10", "000001_10"):
        write_rgb(split / "image_2" / f"{stem}.png", image(1))
        write_rgb(split / "image_3" / f"{stem}.png", image(2))
        write_u16(split / "disp_occ_0" / f"{stem}.png", disparity)
    write_rgb(split / "image_2" / "000000_11.png", image(3))  # no ground truth: not a sample
    (split / "calib_cam_to_cam").mkdir()
    for n in ("000000", "000001"):
        (split / "calib_cam_to_cam" / f"{n}.txt").write_text(cam_to_cam_text())
    loader = KittiStereo2015(tmp_path)
    assert len(loader) == 2 and [s["name"] for s in loader] == ["000000_10", "000001_10"]
    sample = check_sample(loader[0])
    assert not sample["sparse"].any() and sample["lidar_to_camera"] is None
    assert sample["points"] is None
    np.testing.assert_allclose(sample["camera"].P, P2)
    stereo = sample["stereo"]
    np.testing.assert_allclose(stereo["camera"].P, P3)
    np.testing.assert_array_equal(stereo["rgb"], image(2))
    assert stereo["baseline_m"] == pytest.approx(BASELINE)
    assert stereo["gt_disparity"][4, 5] == 10.0 and stereo["gt_disparity"][10, 20] == 25.5
    assert sample["gt"][4, 5] == pytest.approx(F * BASELINE / 10.0)  # depth = f * B / d
    assert sample["gt"][10, 20] == pytest.approx(F * BASELINE / 25.5)
    assert int((sample["gt"] > 0).sum()) == 2
    override = KittiStereo2015(split, focal_px=100.0, baseline_m=0.5)[0]
    assert override["gt"][4, 5] == pytest.approx(100.0 * 0.5 / 10.0)
    assert override["stereo"]["baseline_m"] == 0.5


def test_kitti_stereo2015_flat_layout_uses_stated_defaults(tmp_path):
    folder = tmp_path / "000046_10"
    write_rgb(folder / "image_2.png", image(1))
    write_rgb(folder / "image_3.png", image(2))
    disparity = np.zeros((H, W), np.uint16)
    disparity[3, 3] = 40 * 256
    write_u16(folder / "disp_occ_0.png", disparity)
    sample = check_sample(KittiStereo2015(tmp_path)[0])
    expected = KITTI_DEFAULT_FOCAL_PX * KITTI_DEFAULT_BASELINE_M / 40.0
    assert (KITTI_DEFAULT_FOCAL_PX, KITTI_DEFAULT_BASELINE_M) == (721.5377, 0.54)
    assert sample["gt"][3, 3] == pytest.approx(expected)
    assert sample["camera"].fx == KITTI_DEFAULT_FOCAL_PX and sample["camera"].cx == (W - 1) / 2
    assert sample["stereo"]["baseline_m"] == pytest.approx(KITTI_DEFAULT_BASELINE_M)
    explicit = KittiStereo2015(folder, focal_px=700.0, baseline_m=0.5)[0]
    assert explicit["gt"][3, 3] == pytest.approx(700.0 * 0.5 / 40.0)
    (folder / "image_3.png").unlink()
    with pytest.raises(Exception, match="image_3"):
        KittiStereo2015(tmp_path)[0]
    with pytest.raises(LayoutError):
        KittiStereo2015(tmp_path / "missing")
    with pytest.raises(ValueError, match="focal_px"):
        KittiStereo2015(tmp_path, focal_px=0.0)


def test_kitti_stereo2015_real(kitti_stereo2015):
    loader = KittiStereo2015(kitti_stereo2015)
    sample = check_sample(loader[0])
    gt, disparity = sample["gt"], sample["stereo"]["gt_disparity"]
    assert np.array_equal(gt > 0, disparity > 0) and (gt > 0).mean() > 0.1
    assert 2.0 < gt[gt > 0].min() and gt.max() < 100.0  # plausible road-scene depths
    assert not sample["sparse"].any() and sample["stereo"]["rgb"].shape == sample["rgb"].shape


# ----------------------------------------------------------------------------------- nuScenes

def test_nuscenes_sample_folder_real(nuscenes_sample):
    import json
    calib = json.loads((nuscenes_sample / "calibration.json").read_text())
    loader = open_nuscenes(nuscenes_sample)
    assert isinstance(loader, NuScenesSampleFolder) and len(loader) == 6
    counts = {}
    for sample in loader:
        check_sample(sample)
        camera_name = sample["name"].split("/")[-1]
        entry = calib["cameras"][camera_name]
        assert sample["rgb"].shape == (900, 1600, 3) and sample["gt"] is None
        np.testing.assert_allclose(sample["camera"].K, entry["K"])
        np.testing.assert_allclose(sample["lidar_to_camera"], entry["lidar2cam"])
        assert sample["points"].shape == (34688, 5)
        assert sample["stamp"] == pytest.approx(entry["timestamp"])
        counts[camera_name] = int((sample["sparse"] > 0).sum())
    assert all(counts[c] > 1000 for c in ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT"))
    front = NuScenesSampleFolder(nuscenes_sample, cameras=["CAM_FRONT"], max_depth=20.0)
    assert len(front) == 1 and front[0]["sparse"].max() <= 20.0


def test_nuscenes_errors(tmp_path):
    with pytest.raises(LayoutError, match="calibration.json"):
        NuScenesSampleFolder(tmp_path)
    (tmp_path / "calibration.json").write_text('{"cameras": {}}')
    with pytest.raises(Exception, match="lidar"):
        NuScenesSampleFolder(tmp_path)
    dataroot = tmp_path / "full"
    (dataroot / "v1.0-mini").mkdir(parents=True)
    if importlib.util.find_spec("nuscenes") is not None:
        pytest.skip("nuscenes-devkit is installed")
    with pytest.raises(ImportError, match="pip install nuscenes-devkit"):
        open_nuscenes(dataroot)


# ------------------------------------------------------------------------------------ rosbag2

BAG_START = 1_700_000_000 * 10**9  # ns
K_TINY = np.array([[F, 0, CX], [0, F, CY], [0, 0, 1]])
# base_link <- LiDAR: 1 m forward, 1.8 m up; base_link <- camera optical frame (z forward).
BASE_FROM_LIDAR = rigid_transform(np.eye(3), [1.0, 0.0, 1.8])
BASE_FROM_OPTICAL = rigid_transform([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], [1.5, 0.1, 1.5])
OPTICAL_QUATERNION = (-0.5, 0.5, -0.5, 0.5)  # x, y, z, w of BASE_FROM_OPTICAL's rotation
CAMERA_FROM_LIDAR = np.linalg.inv(BASE_FROM_OPTICAL) @ BASE_FROM_LIDAR


def ros_types():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)


def header(types, stamp_ns: int, frame: str):
    time = types.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9,
                                                      nanosec=stamp_ns % 10**9)
    return types.types["std_msgs/msg/Header"](stamp=time, frame_id=frame)


def image_msg(types, pixels: np.ndarray, encoding: str, stamp: int, pad: int = 0,
              big_endian: bool = False):
    """An Image with ``pad`` bytes of padding per row."""
    height, width = pixels.shape[:2]
    wire = pixels.astype(pixels.dtype.newbyteorder(">" if big_endian else "<"))
    rows = wire.reshape(height, -1).view(np.uint8)
    data = np.zeros((height, rows.shape[1] + pad), np.uint8)
    data[:, :rows.shape[1]] = rows
    return types.types["sensor_msgs/msg/Image"](
        header=header(types, stamp, "camera_optical"), height=height, width=width,
        encoding=encoding, is_bigendian=int(big_endian), step=data.shape[1],
        data=data.reshape(-1))


def camera_info_msg(types, stamp: int, K=K_TINY):
    t = types.types
    P = np.hstack([np.asarray(K, float), np.zeros((3, 1))])
    return t["sensor_msgs/msg/CameraInfo"](
        header=header(types, stamp, "camera_optical"), height=H, width=W,
        distortion_model="plumb_bob", d=np.zeros(5), k=np.asarray(K, float).reshape(-1),
        r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                  do_rectify=False))


OUSTER_FIELDS = [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 16, 7), ("t", 20, 6),
                 ("reflectivity", 24, 4), ("ring", 26, 4), ("ambient", 28, 4), ("range", 32, 6)]


def cloud_msg(types, xyz: np.ndarray, intensity: np.ndarray, stamp: int, frame: str = "os_lidar",
              fields=OUSTER_FIELDS, point_step: int = 48, big_endian: bool = False,
              height: int = 2):
    """An organised PointCloud2 in an Ouster-like padded layout (48-byte points)."""
    order = ">" if big_endian else "<"
    element = {7: "f4", 8: "f8", 6: "u4", 4: "u2"}
    record = np.dtype({"names": [n for n, _, _ in fields],
                       "formats": [order + element[d] for _, _, d in fields],
                       "offsets": [o for _, o, _ in fields], "itemsize": point_step})
    table = np.zeros(len(xyz), record)
    for axis, name in enumerate("xyz"):
        table[name] = xyz[:, axis]
    table["intensity"] = intensity
    t = types.types
    width = len(xyz) // height
    return t["sensor_msgs/msg/PointCloud2"](
        header=header(types, stamp, frame), height=height, width=width,
        fields=[t["sensor_msgs/msg/PointField"](name=n, offset=o, datatype=d, count=1)
                for n, o, d in fields],
        is_bigendian=big_endian, point_step=point_step, row_step=point_step * width,
        data=table.view(np.uint8).reshape(-1), is_dense=False)


def tf_static_msg(types):
    t = types.types

    def stamped(child, translation, quaternion):
        return t["geometry_msgs/msg/TransformStamped"](
            header=header(types, BAG_START, "base_link"), child_frame_id=child,
            transform=t["geometry_msgs/msg/Transform"](
                translation=t["geometry_msgs/msg/Vector3"](x=translation[0], y=translation[1],
                                                           z=translation[2]),
                rotation=t["geometry_msgs/msg/Quaternion"](x=quaternion[0], y=quaternion[1],
                                                           z=quaternion[2], w=quaternion[3])))
    return t["tf2_msgs/msg/TFMessage"](transforms=[
        stamped("os_lidar", BASE_FROM_LIDAR[:3, 3], (0, 0, 0, 1)),
        stamped("/camera_optical", BASE_FROM_OPTICAL[:3, 3], OPTICAL_QUATERNION)])


def lidar_points_at(pixels_depths) -> np.ndarray:
    """LiDAR-frame points that the tiny camera ([K | 0]) sees at the given (u, v, depth)."""
    out = []
    for u, v, depth in pixels_depths:
        camera = np.linalg.solve(K_TINY, np.array([u, v, 1.0]) * depth)
        out.append((np.linalg.inv(CAMERA_FROM_LIDAR) @ np.append(camera, 1.0))[:3])
    return np.array(out)


def sweep_for(i: int):
    """Sweep i: one point at pixel (10, 5) with depth 8 + i, one at (50, 25), two NaN returns."""
    xyz = np.vstack([lidar_points_at([(10, 5, 8.0 + i), (50, 25, 20.0)]),
                     np.full((2, 3), np.nan)])
    return xyz, np.array([100.0 + i, 7.0, 0.0, 0.0])


def gt_for(i: int) -> np.ndarray:
    gt = np.full((H, W), 1.0 + i, np.float32)
    gt[0, :] = np.nan  # REP 117: NaN = no value
    gt[1, :] = -np.inf
    return gt


def write_bag(path: Path, storage: str, with_tf: bool = True, K=K_TINY) -> None:
    """4 frames at 10 Hz: bgr8 images (padded rows) + CameraInfo + 32FC1 gt at the image stamps,
    Ouster-like sweeps 20 ms later for frames 0-2 only (frame 3's sweep comes 70 ms late)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    types = ros_types()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {topic: writer.add_connection(topic, msgtype, typestore=types)
                       for topic, msgtype in [("/cam/image_raw", "sensor_msgs/msg/Image"),
                                              ("/cam/camera_info", "sensor_msgs/msg/CameraInfo"),
                                              ("/cam/depth_gt", "sensor_msgs/msg/Image"),
                                              ("/ouster/points", "sensor_msgs/msg/PointCloud2"),
                                              ("/tf_static", "tf2_msgs/msg/TFMessage")]}

        def write(topic, msg, stamp):
            writer.write(connections[topic], stamp + 5_000_000,  # received 5 ms after stamp
                         types.serialize_cdr(msg, msg.__msgtype__))
        if with_tf:
            write("/tf_static", tf_static_msg(types), BAG_START - 10**9)
        for i in range(4):
            stamp = BAG_START + i * 100_000_000
            write("/cam/image_raw", image_msg(types, image(i)[..., ::-1], "bgr8", stamp, pad=4),
                  stamp)
            write("/cam/camera_info", camera_info_msg(types, stamp, K), stamp)
            write("/cam/depth_gt", image_msg(types, gt_for(i), "32FC1", stamp), stamp)
            xyz, intensity = sweep_for(i)
            offset = 20_000_000 if i < 3 else 70_000_000  # LiDAR 20 ms after the camera
            write("/ouster/points", cloud_msg(types, xyz, intensity, stamp + offset),
                  stamp + offset)


TOPICS = RosbagTopics(image="/cam/image_raw", points="/ouster/points", gt="/cam/depth_gt")


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_rosbag_frames_pairing_and_values(tmp_path, storage):
    write_bag(tmp_path / "bag", storage)
    assert (tmp_path / "bag" / "metadata.yaml").is_file()
    with RosbagFrames(tmp_path / "bag", TOPICS) as loader:
        assert len(loader) == 3  # frame 3 has no sweep within 0.05 s
        assert loader.dropped == {"camera_info": 0, "points": 1, "gt": 0}
        assert "dropped" in loader.describe()
        np.testing.assert_allclose(loader.lidar_to_camera, CAMERA_FROM_LIDAR, atol=1e-9)
        for i, sample in enumerate(loader):
            check_sample(sample)
            stamp = BAG_START + i * 100_000_000
            assert sample["source"] == "rosbag2" and sample["name"] == f"bag/{stamp}"
            assert sample["stamp"] == pytest.approx(stamp * 1e-9)
            np.testing.assert_array_equal(sample["rgb"], image(i))  # bgr8 -> RGB
            np.testing.assert_allclose(sample["camera"].K, K_TINY)
            xyz, intensity = sweep_for(i)
            assert sample["points"].shape == (2, 4)  # NaN returns dropped
            np.testing.assert_allclose(sample["points"][:, :3], xyz[:2], atol=1e-5)
            np.testing.assert_array_equal(sample["points"][:, 3], intensity[:2])
            assert sample["sparse"][5, 10] == pytest.approx(8.0 + i, abs=1e-4)  # its own sweep
            assert sample["sparse"][25, 50] == pytest.approx(20.0, abs=1e-4)
            assert int((sample["sparse"] > 0).sum()) == 2
            assert (sample["gt"][2:] == 1.0 + i).all() and not sample["gt"][:2].any()
        assert loader[-1]["name"] == loader[2]["name"]
    explicit = RosbagFrames(tmp_path / "bag", {"image": "/cam/image_raw",
                                               "camera_info": "/cam/camera_info",
                                               "points": "/ouster/points"},
                            lidar_to_camera=CAMERA_FROM_LIDAR.reshape(-1).tolist())
    sample = explicit[0]
    assert sample["gt"] is None and sample["sparse"][5, 10] == pytest.approx(8.0, abs=1e-4)
    wide = RosbagFrames(tmp_path / "bag", TOPICS, slop=0.08)
    assert len(wide) == 4 and wide[3]["sparse"][5, 10] == pytest.approx(11.0, abs=1e-4)
    mono = RosbagFrames(tmp_path / "bag", RosbagTopics(image="/cam/image_raw"))
    sample = check_sample(mono[3])
    assert not sample["sparse"].any() and sample["points"] is None
    assert sample["lidar_to_camera"] is None


def test_rosbag_errors(tmp_path):
    write_bag(tmp_path / "bag", "sqlite3", with_tf=False)
    with pytest.raises(LookupError, match="lidar_to_camera"):
        RosbagFrames(tmp_path / "bag", TOPICS)
    with pytest.raises(LayoutError, match="no image paired"):
        RosbagFrames(tmp_path / "bag", TOPICS, slop=0.01, lidar_to_camera=np.eye(4))
    with pytest.raises(LayoutError, match="/cam/image_raw"):
        RosbagFrames(tmp_path / "bag", RosbagTopics(image="/other/image"))
    with pytest.raises(LayoutError, match="bag folder"):
        RosbagFrames(tmp_path / "missing", TOPICS)
    (tmp_path / "not_a_bag").mkdir()
    with pytest.raises(LayoutError, match="not a readable rosbag2 bag"):
        RosbagFrames(tmp_path / "not_a_bag", TOPICS)
    write_bag(tmp_path / "uncalibrated", "mcap", K=np.zeros((3, 3)))
    loader = RosbagFrames(tmp_path / "uncalibrated", TOPICS)
    with pytest.raises(MessageError, match="all zero"):
        loader[0]


def test_rosbag_message_decoders():
    types = ros_types()
    rgb = image(3)
    rgba = np.dstack([rgb, np.full((H, W), 9, np.uint8)])
    for pixels, encoding in [(rgb, "rgb8"), (rgb[..., ::-1], "bgr8"), (rgba, "rgba8"),
                             (rgba[..., [2, 1, 0, 3]], "bgra8")]:
        np.testing.assert_array_equal(image_to_rgb(image_msg(types, pixels, encoding, 0, 3)), rgb)
    grey = image_to_rgb(image_msg(types, rgb[..., 0], "mono8", 0))
    assert grey.shape == (H, W, 3) and (grey[..., 2] == rgb[..., 0]).all()
    millimetres = np.array([[0, 1500], [65535, 250]], np.uint16)
    depth = depth_image_to_metres(image_msg(types, millimetres, "16UC1", 0, 2, big_endian=True))
    np.testing.assert_allclose(depth, millimetres / 1000.0)  # 16UC1 mm -> metres, 0 = none
    with pytest.raises(MessageError, match="encoding"):
        image_to_rgb(image_msg(types, millimetres, "16UC1", 0))
    with pytest.raises(MessageError, match="encoding"):
        depth_image_to_metres(image_msg(types, rgb, "rgb8", 0))
    # big-endian float64 x, y, z without intensity, 40-byte points
    xyz = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [np.inf, 0, 0], [7.0, 8.0, 9.0]])
    fields = [("x", 0, 8), ("y", 8, 8), ("z", 16, 8), ("intensity", 28, 7)]
    msg = cloud_msg(types, xyz, np.arange(4.0), 0, fields=fields, point_step=40,
                    big_endian=True, height=1)
    points = pointcloud2_to_points(msg)
    np.testing.assert_array_equal(points[:, :3], xyz[[0, 1, 3]])
    np.testing.assert_array_equal(points[:, 3], [0.0, 1.0, 3.0])
    no_intensity = cloud_msg(types, xyz, np.zeros(4), 0, fields=fields[:3] + [("intensity", 24, 7)],
                             point_step=32, height=1)
    no_intensity.fields = no_intensity.fields[:3]
    assert (pointcloud2_to_points(no_intensity)[:, 3] == 0).all()
    bad = cloud_msg(types, xyz[[0, 1, 3]], np.zeros(3), 0, height=1, point_step=16,
                    fields=[("x", 0, 6), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)])
    with pytest.raises(MessageError, match="float32 or float64"):
        pointcloud2_to_points(bad)
    camera = camera_info_to_camera(camera_info_msg(types, 0))
    assert camera.size == (W, H) and camera.fx == F
    with pytest.raises(MessageError, match="all zero"):
        camera_info_to_camera(camera_info_msg(types, 0, np.zeros((3, 3))))
