"""The shipped students (models/): the residual student (``student``, the default model) and the
camera-only student it names for frames without LiDAR (``student_mono``, version 4): their specs
load and match their ONNX files, ONNX Runtime and the safetensors weights through PyTorch agree on
a real frame, and a frame without LiDAR runs the camera-only student."""
from __future__ import annotations

import numpy as np
import pytest

from dmd3c_ros.core.io import read_kitti_depth, read_rgb
from dmd3c_ros.paths import default_model_spec, share_dir
from dmd3c_ros.runtime.factory import create_backend
from dmd3c_ros.runtime.mono_fallback import MonoFallbackBackend
from dmd3c_ros.runtime.spec import load_spec

MONO_SPEC = share_dir() / "models" / "student_mono.yaml"
pytestmark = pytest.mark.skipif(default_model_spec() is None,
                                reason="no shipped student (models/student.yaml)")


def test_shipped_spec_describes_the_onnx_file():
    spec = load_spec(default_model_spec())       # checks the sha256 of the ONNX file
    assert tuple(spec.input_size) == (352, 1216) and not spec.supports_mono
    assert spec.classical_input == "classical" and spec.classical_resolution == "image"
    assert spec.depth_scale == 120.0 and tuple(spec.depth_range) == (0.5, 120.0)
    assert spec.mono_model == MONO_SPEC.resolve()
    assert spec.torch.factory == "dmd3c_ros.training.residual:build_residual_student"


def test_camera_only_student_is_version_4():
    mono = load_spec(MONO_SPEC)
    assert mono.sha256 == "78ec3012dc99a5c40a15aa3cdde81bb0611524c10739f2dbc744935f89639130"
    assert mono.supports_mono and mono.mono_model is None and mono.classical_input is None


def test_onnxruntime_and_torch_agree_on_a_real_frame(kitti_dc):
    rgb = read_rgb(kitti_dc / "image_02.png")
    sparse = read_kitti_depth(kitti_dc / "velodyne_raw_02.png")
    ort = create_backend("onnxruntime")           # no spec: the shipped student
    torch_backend = create_backend("torch")
    assert isinstance(ort, MonoFallbackBackend) and ort.supports_mono
    for lidar, high in ((sparse, 120.0), (None, 80.0)):   # completion, then mono (version 4)
        a = ort.infer(rgb, lidar).depth
        b = torch_backend.infer(rgb, lidar).depth
        both = np.isfinite(a) & np.isfinite(b)
        assert both.mean() > 0.9                   # all but the rows above the network's crop
        assert np.abs(a[both] - b[both]).max() < 1e-2  # metres
        assert (a[both] >= 0.5).all() and (a[both] <= high).all()


def test_frames_without_lidar_run_the_camera_only_student(kitti_dc):
    rgb = read_rgb(kitti_dc / "image_02.png")
    fallback = create_backend("onnxruntime").infer(rgb, None).depth
    alone = create_backend("onnxruntime", MONO_SPEC).infer(rgb, None).depth
    np.testing.assert_array_equal(fallback, alone)
