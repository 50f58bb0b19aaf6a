"""The shipped student (models/): its spec loads and matches its ONNX file, ONNX Runtime and the
safetensors weights through PyTorch agree on a real frame, and mono mode works."""
from __future__ import annotations

import numpy as np
import pytest

from dmd3c_ros.core.io import read_kitti_depth, read_rgb
from dmd3c_ros.paths import default_model_spec
from dmd3c_ros.runtime.factory import create_backend
from dmd3c_ros.runtime.spec import load_spec

pytestmark = pytest.mark.skipif(default_model_spec() is None,
                                reason="no shipped student (models/student.yaml)")


def test_shipped_spec_describes_the_onnx_file():
    spec = load_spec(default_model_spec())       # checks the sha256 of the ONNX file
    assert spec.supports_mono and tuple(spec.input_size) == (352, 1216)
    assert spec.depth_scale == 80.0 and tuple(spec.depth_range) == (0.5, 80.0)


def test_onnxruntime_and_torch_agree_on_a_real_frame(kitti_dc):
    rgb = read_rgb(kitti_dc / "image_02.png")
    sparse = read_kitti_depth(kitti_dc / "velodyne_raw_02.png")
    ort = create_backend("onnxruntime")           # no spec: the shipped student
    torch_backend = create_backend("torch")
    for lidar in (sparse, None):                   # completion, then mono
        a = ort.infer(rgb, lidar).depth
        b = torch_backend.infer(rgb, lidar).depth
        both = np.isfinite(a) & np.isfinite(b)
        assert both.mean() > 0.9                   # all but the rows above the network's crop
        assert np.abs(a[both] - b[both]).max() < 1e-2  # metres
        assert (a[both] >= 0.5).all() and (a[both] <= 80.0).all()
