"""Teachers: the interface, Depth Anything V2 on a tiny random model, SGBM stereo on the real
KITTI stereo 2015 sample, and the simulated monocular teacher."""
import os
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never download anything
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from dmd3c_ros.training.teachers import (METRIC_DEPTH, RELATIVE_INVERSE_DEPTH,  # noqa: E402
                                         DepthAnythingV2Teacher, SimulatedMonoTeacher,
                                         StereoTeacher, Teacher, WeightsError, disparity_errors)
from dmd3c_ros.training.teachers.depth_anything import network_input_size  # noqa: E402

KITTI_STEREO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_stereo2015"


@pytest.fixture
def kitti_stereo_sample() -> dict:
    if not (KITTI_STEREO / "000046_10" / "disp_occ_0.png").is_file():
        pytest.skip(f"real KITTI stereo 2015 sample not found at {KITTI_STEREO} (../shared/data)")
    from dmd3c_ros.training.data.kitti_stereo import KittiStereo2015
    return KittiStereo2015(KITTI_STEREO)[0]


def scene(h=120, w=160):
    """A box 5 m away in front of a wall 20 m away, with a textured image."""
    depth = np.full((h, w), 20.0)
    depth[30:90, 40:100] = 5.0
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return rgb, depth


def align(pred, target, mask):
    """Least-squares scale and shift mapping pred onto target on mask."""
    A = np.stack([pred[mask], np.ones(mask.sum())], 1)
    (s, t), *_ = np.linalg.lstsq(A, target[mask], rcond=None)
    return s * pred + t


# --- interface -------------------------------------------------------------------------------

def test_teacher_is_abstract_and_kinds():
    with pytest.raises(TypeError):
        Teacher()
    assert StereoTeacher().kind == METRIC_DEPTH
    assert SimulatedMonoTeacher(0).kind == RELATIVE_INVERSE_DEPTH
    assert "simulated" in SimulatedMonoTeacher(3).name


# --- Depth Anything V2 -------------------------------------------------------------------------

def test_network_input_size_keeps_aspect_and_patch_multiple():
    h, w = network_input_size(375, 1242, 518, 14)
    assert h % 14 == 0 and w % 14 == 0 and h == 518
    assert abs(w / h - 1242 / 375) < 0.03


def test_depth_anything_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        DepthAnythingV2Teacher(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="no weights"):
        DepthAnythingV2Teacher(tmp_path)


def test_depth_anything_tiny_random_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    bb = transformers.Dinov2Config(image_size=56, patch_size=14, hidden_size=32,
                                   num_hidden_layers=4, num_attention_heads=2,
                                   intermediate_size=64, out_indices=[1, 2, 3, 4],
                                   reshape_hidden_states=False)
    config = transformers.DepthAnythingConfig(backbone_config=bb, reassemble_hidden_size=32,
                                              neck_hidden_sizes=[8, 16, 32, 32],
                                              fusion_hidden_size=16, head_hidden_size=8)
    transformers.DepthAnythingForDepthEstimation(config).save_pretrained(tmp_path)
    teacher = DepthAnythingV2Teacher(tmp_path, input_size=56)
    assert teacher.kind == RELATIVE_INVERSE_DEPTH and teacher.patch_size == 14
    rgb = np.random.default_rng(1).integers(0, 256, (45, 100, 3), dtype=np.uint8)
    before = rgb.copy()
    x = teacher.preprocess(rgb)
    assert x.shape[2] % 14 == 0 and x.shape[3] % 14 == 0 and x.shape[2] == 56
    out = teacher.predict(rgb)
    assert out.shape == (45, 100) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.array_equal(rgb, before)


# --- stereo -----------------------------------------------------------------------------------

def test_stereo_recovers_a_known_shift():
    rng = np.random.default_rng(2)
    texture = np.repeat(rng.integers(0, 256, (90, 200, 1), dtype=np.uint8), 3, axis=2)
    import cv2
    texture = cv2.GaussianBlur(texture, (3, 3), 0)
    shift = 12  # every pixel at disparity 12 px: right(x) = left(x + 12)
    left, right = texture[:, :160], texture[:, shift:160 + shift]
    teacher = StereoTeacher(num_disparities=32, lr_check=True)
    d = teacher.disparity(left, right)
    assert np.nanmedian(np.abs(d[:, 40:] - shift)) < 0.5
    depth = teacher.predict(left, right=right, focal_px=100.0, baseline_m=0.5)
    assert abs(np.nanmedian(depth[:, 40:]) - 100.0 * 0.5 / shift) < 0.1
    with pytest.raises(ValueError):
        teacher.predict(left)


def test_disparity_errors_hand_made():
    gt = np.array([[10.0, 100.0, 0.0, 20.0]])
    pred = np.array([[12.0, 104.0, 5.0, np.nan]])
    e = disparity_errors(pred, gt)
    # 10 -> 12: error 2 (<= 3) inlier; 100 -> 104: error 4 <= 5 % of 100 inlier; no gt ignored
    assert e["n_gt"] == 3 and e["coverage"] == pytest.approx(2 / 3)
    assert e["d1"] == 0.0 and e["epe"] == pytest.approx(3.0) and e["d1_all"] == pytest.approx(1 / 3)


def test_stereo_on_kitti_stereo_2015(kitti_stereo_sample):
    s = kitti_stereo_sample
    e = disparity_errors(StereoTeacher().disparity(s["rgb"], s["stereo"]["rgb"]),
                         s["stereo"]["gt_disparity"])
    print(f"SGBM on KITTI stereo 2015 {s['name']}: D1 {e['d1']:.2%} EPE {e['epe']:.2f} px "
          f"coverage {e['coverage']:.1%} D1 (missing = outlier) {e['d1_all']:.2%}")
    assert e["d1"] < 0.30 and e["coverage"] > 0.5 and e["epe"] < 3.0


# --- simulated monocular teacher -----------------------------------------------------------------

def test_simulated_mono_is_relative_inverse_depth():
    rgb, depth = scene()
    inv = 1.0 / depth
    mask = np.ones_like(depth, bool)
    raw, aligned_absrel = [], []
    for seed in range(6):
        out = SimulatedMonoTeacher(seed=seed).predict(rgb, depth=depth)
        assert out.shape == depth.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert out[60, 70] > out[5, 5]  # nearer = larger
        raw.append(np.mean(np.abs(out - inv) / inv))
        aligned = align(out.astype(np.float64), inv, mask)
        aligned_absrel.append(np.mean(np.abs(aligned - inv) / inv))
    assert np.median(raw) > 0.5  # not metric inverse depth: unknown scale and shift
    assert max(aligned_absrel) < 0.1  # but an affine map away from it


def test_simulated_mono_blurs_edges():
    rgb, depth = scene()
    teacher = SimulatedMonoTeacher(seed=1, noise=0.0, warp_amplitude=0.0)
    row = align(teacher.predict(rgb, depth=depth).astype(np.float64), 1.0 / depth,
                np.ones_like(depth, bool))[60]
    low, high = 1 / 20.0, 1 / 5.0
    between = (row > low + 0.1 * (high - low)) & (row < high - 0.1 * (high - low))
    assert between[30:50].sum() >= 2  # the step at column 40 is spread over several pixels
    assert not between[:30].any()  # and stays local


def test_simulated_mono_seeds_deterministic_and_differ():
    rgb, depth = scene()
    before = depth.copy()
    a = SimulatedMonoTeacher(seed=1).predict(rgb, depth=depth)
    b = SimulatedMonoTeacher(seed=1).predict(rgb, depth=depth)
    c = SimulatedMonoTeacher(seed=2).predict(rgb, depth=depth)
    d = SimulatedMonoTeacher(seed=1).predict(rgb, depth=depth, index=1)
    assert np.array_equal(a, b) and not np.allclose(a, c) and not np.allclose(a, d)
    assert np.array_equal(depth, before)


def test_simulated_mono_sky_is_far_and_needs_depth():
    rgb, depth = scene()
    depth[:5] = 0.0  # no ground truth: sky
    teacher = SimulatedMonoTeacher(seed=0, noise=0.0, warp_amplitude=0.0, edge_blur_px=0.0)
    out = align(teacher.predict(rgb, depth=depth).astype(np.float64), 1 / np.where(
        depth > 0, depth, np.inf), np.ones_like(depth, bool))
    assert np.abs(out[:3]).max() < 1e-6 and np.isfinite(out).all()
    with pytest.raises(ValueError):
        teacher.predict(rgb)
