"""InputTransform: crop policy, nearest-only sparse resampling, intrinsics, restore."""
import numpy as np
import pytest

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.input_transform import InputTransform
from dmd3c_ros.core.projection import project_to_depth

KITTI = (1242, 375)     # (W, H) of a KITTI image
NETWORK = (1216, 256)   # (w, h) of a typical network input


def test_taller_image_keeps_full_width_and_bottom_rows():
    t = InputTransform(KITTI, NETWORK)
    x0, y0, cw, ch = t.crop
    assert (x0, cw) == (0, 1242)
    assert y0 + ch == 375  # the bottom rows are kept, the sky is cropped
    assert ch == round(1242 * 256 / 1216)


def test_wider_image_keeps_full_height_and_centre_columns():
    t = InputTransform((1000, 100), (300, 100))
    assert t.crop == (350, 0, 300, 100)


def test_same_aspect_has_no_crop_and_same_size_is_identity():
    assert InputTransform((640, 480), (320, 240)).crop == (0, 0, 640, 480)
    t = InputTransform((320, 240), (320, 240))
    assert t.is_identity
    rgb = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = t.apply_rgb(rgb)
    assert np.array_equal(out, rgb) and out is not rgb


def test_apply_rgb_shape_dtype_and_size_check():
    t = InputTransform(KITTI, (608, 128))
    rgb = np.full((375, 1242, 3), 77, dtype=np.uint8)
    out = t.apply_rgb(rgb)
    assert out.shape == (128, 608, 3) and out.dtype == np.uint8 and np.all(out == 77)
    enlarged = InputTransform((100, 50), (400, 200)).apply_rgb(np.zeros((50, 100, 3), np.uint8))
    assert enlarged.shape == (200, 400, 3)
    with pytest.raises(ValueError, match="expected height 375"):
        t.apply_rgb(np.zeros((376, 1242, 3), np.uint8))


def test_sparse_point_keeps_exact_value_at_the_right_pixel():
    t = InputTransform(KITTI, (608, 128))
    x0, y0, cw, ch = t.crop
    sparse = np.zeros((375, 1242), np.float32)
    sparse[300, 601] = 12.345
    out = t.apply_sparse(sparse)
    # Pixel centres align (cv2.resize convention): the target pixel holds the source centre.
    u = int((601 - x0 + 0.5) * 608 / cw)
    v = int((300 - y0 + 0.5) * 128 / ch)
    assert out.dtype == np.float32 and out.shape == (128, 608)
    assert out[v, u] == np.float32(12.345)
    assert np.count_nonzero(out) == 1


def test_sparse_zbuffer_keeps_nearest_and_ignores_invalid_values():
    t = InputTransform((8, 4), (4, 2))  # 2x2 source blocks -> one target pixel
    sparse = np.zeros((4, 8), np.float32)
    sparse[0, 0], sparse[1, 1] = 9.0, 4.0          # same target pixel (0, 0): 4 wins
    sparse[0, 2], sparse[1, 3] = np.nan, -1.0      # no value
    sparse[2, 4] = np.inf                          # no value
    sparse[3, 7] = 2.5
    before = sparse.copy()
    out = t.apply_sparse(sparse)
    assert np.array_equal(sparse, before, equal_nan=True)  # input untouched
    expected = np.array([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.5]], np.float32)
    assert np.array_equal(out, expected)


def test_sparse_outside_the_crop_is_dropped():
    t = InputTransform(KITTI, (608, 128))
    sparse = np.zeros((375, 1242), np.float32)
    sparse[5, 600] = 30.0  # in the sky rows that are cropped away
    assert not t.apply_sparse(sparse).any()


@pytest.mark.parametrize("image_size,input_size", [(KITTI, (608, 128)), ((300, 100), (192, 64)),
                                                   ((640, 200), (320, 160)),
                                                   ((200, 100), (512, 192))])
def test_projection_with_transformed_camera_matches_apply_sparse(image_size, input_size):
    W, H = image_size
    camera = PinholeCamera.from_intrinsics(0.8 * W, 0.8 * W, W / 2 - 3.3, H / 2 + 2.1, W, H)
    t = InputTransform(image_size, input_size)
    x0, y0, cw, ch = t.crop
    rng = np.random.default_rng(1)
    # Well separated points (no z-buffer collisions) inside the crop, distinct depths.
    us = np.linspace(x0 + 3, x0 + cw - 4, 9)
    vs = np.linspace(y0 + 3, y0 + ch - 4, 6)
    u, v = (g.ravel() for g in np.meshgrid(us, vs))
    u, v = u + rng.uniform(-0.4, 0.4, u.size), v + rng.uniform(-0.4, 0.4, v.size)
    z = np.linspace(3.0, 60.0, u.size)
    points = np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], 1)

    scattered = t.apply_sparse(project_to_depth(points, camera))
    direct = project_to_depth(points, t.apply_camera(camera))
    assert direct.shape == scattered.shape == (input_size[1], input_size[0])
    rows, cols = np.nonzero(direct)
    assert rows.size == u.size
    for r, c in zip(rows, cols):
        match = np.argwhere(np.isclose(scattered, direct[r, c], rtol=0, atol=1e-5))
        assert len(match) == 1
        assert np.abs(match[0] - (r, c)).max() <= 1


def test_projection_consistency_on_real_kitti(kitti_dc):
    from dmd3c_ros.core.calibration import load_kitti_calibration
    from dmd3c_ros.core.io import read_kitti_velodyne
    calibration = load_kitti_calibration(kitti_dc, KITTI)
    points = read_kitti_velodyne(kitti_dc / "velodyne.bin")
    t = InputTransform(KITTI, NETWORK)
    scattered = t.apply_sparse(project_to_depth(points, calibration.camera,
                                                calibration.lidar_to_camera))
    direct = project_to_depth(points, t.apply_camera(calibration.camera),
                              calibration.lidar_to_camera)
    # Every direct return has a scattered return within 1 px (z-buffer ties may pick neighbours).
    padded = np.pad(scattered > 0, 1)
    near = np.zeros_like(direct, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            near |= padded[dy:dy + direct.shape[0], dx:dx + direct.shape[1]]
    valid = direct > 0
    assert valid.sum() > 5000
    assert near[valid].mean() > 0.99


def test_apply_camera_updates_intrinsics_and_checks_size():
    camera = PinholeCamera.from_intrinsics(700.0, 700.0, 600.0, 180.0, *KITTI)
    t = InputTransform(KITTI, (608, 128))
    x0, y0, cw, ch = t.crop
    moved = t.apply_camera(camera)
    assert moved.size == (608, 128)
    assert moved.fx == pytest.approx(700.0 * 608 / cw)
    assert moved.cy == pytest.approx((180.0 - y0 + 0.5) * 128 / ch - 0.5)
    assert InputTransform(KITTI, KITTI).apply_camera(camera) is camera
    with pytest.raises(ValueError, match="1242x375"):
        t.apply_camera(PinholeCamera.from_intrinsics(700.0, 700.0, 600.0, 180.0, 1000, 375))


@pytest.mark.parametrize("image_size,input_size", [(KITTI, (608, 128)), ((300, 100), (384, 128)),
                                                   ((400, 100), (192, 64))])
def test_restore_inverts_apply_for_smooth_depth(image_size, input_size):
    W, H = image_size
    u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    depth = 5.0 + 0.01 * u + 0.03 * v  # metres, a tilted plane
    t = InputTransform(image_size, input_size)
    x0, y0, cw, ch = t.crop
    network = t.apply_sparse(depth)
    if input_size[0] > cw:  # enlarging leaves holes in the scattered map: fill them densely
        network = cv2_resize_dense(depth[y0:y0 + ch, x0:x0 + cw], input_size)
    restored = t.restore(network)
    assert restored.shape == (H, W) and restored.dtype == np.float32
    inside = restored[y0:y0 + ch, x0:x0 + cw]
    assert np.isfinite(inside).all()
    assert np.abs(inside - depth[y0:y0 + ch, x0:x0 + cw]).max() < 0.1
    outside = np.ones((H, W), bool)
    outside[y0:y0 + ch, x0:x0 + cw] = False
    assert np.isnan(restored[outside]).all()
    assert outside.any() == (t.crop != (0, 0, W, H))


def cv2_resize_dense(crop, size):
    import cv2
    return cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR)


def test_restore_never_blends_with_nan():
    t = InputTransform((300, 100), (150, 50))
    network = np.full((50, 150), 10.0, np.float32)
    network[10:30, 40:80] = np.nan
    before = network.copy()
    restored = t.restore(network)
    assert np.array_equal(network, before, equal_nan=True)
    finite = np.isfinite(restored)
    assert np.allclose(restored[finite], 10.0, atol=1e-5)
    assert np.isnan(restored[40, 120]) and finite[5, 5]
    with pytest.raises(ValueError, match="expected"):
        t.restore(np.zeros((49, 150), np.float32))


@pytest.mark.parametrize("image_size,input_size", [(KITTI, (1216, 352)), ((1600, 600), (800, 448)),
                                                   ((300, 100), (384, 128))])
def test_restore_writes_the_resize_into_the_crop_box(image_size, input_size):
    """restore resizes straight into its output (for a wider image the crop box is a strided
    view): the same as resizing, then placing the result in a frame of ``outside``."""
    import cv2
    rng = np.random.default_rng(3)
    w, h = input_size
    t = InputTransform(image_size, input_size)
    x0, y0, cw, ch = t.crop
    interpolation = cv2.INTER_AREA if (cw <= w and ch <= h) else cv2.INTER_LINEAR
    network = rng.uniform(1.0, 80.0, (h, w)).astype(np.float32)
    holed = network.copy()
    holed[5:9, 7:30] = np.nan
    for values, outside in ((network, np.nan), (network, 1.0), (holed, np.nan)):
        valid = np.isfinite(values)
        weight = cv2.resize(valid.astype(np.float32), (cw, ch), interpolation=interpolation)
        total = cv2.resize(np.where(valid, values, 0.0).astype(np.float32), (cw, ch),
                           interpolation=interpolation)
        with np.errstate(divide="ignore", invalid="ignore"):
            resized = np.where(weight >= 0.5, total / weight, np.nan).astype(np.float32)
        if valid.all():
            resized = cv2.resize(values, (cw, ch), interpolation=interpolation)
        expected = np.full((image_size[1], image_size[0]), outside, np.float32)
        expected[y0:y0 + ch, x0:x0 + cw] = resized
        np.testing.assert_array_equal(t.restore(values, outside=outside), expected)
