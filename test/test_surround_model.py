"""The shipped surround spec (models/student_surround.yaml): it loads, matches its ONNX file, and
is the shipped student's weights at a 448x800 input (all but the top 4 rows of a 1600x900
nuScenes view)."""
from __future__ import annotations

import pytest

from dmd3c_ros.core.input_transform import InputTransform
from dmd3c_ros.paths import default_model_spec, share_dir
from dmd3c_ros.runtime.spec import load_spec

SURROUND_SPEC = share_dir() / "models" / "student_surround.yaml"

pytestmark = pytest.mark.skipif(not SURROUND_SPEC.is_file() or default_model_spec() is None,
                                reason="no shipped surround spec (models/student_surround.yaml)")


def test_surround_spec_describes_the_onnx_file():
    spec = load_spec(SURROUND_SPEC)              # checks the sha256 of the ONNX file
    assert spec.sha256 == "28aaf66643c1fcf8b5572d22ddde43ca197e2a0844e6698956f16b2c9cdc6853"
    assert tuple(spec.input_size) == (448, 800) and spec.supports_mono
    assert spec.onnx.name == "student_surround.onnx"


def test_surround_spec_shares_the_students_weights():
    surround, student = load_spec(SURROUND_SPEC), load_spec(default_model_spec())
    assert surround.torch.weights == student.torch.weights  # one copy: models/student.safetensors
    assert surround.torch.factory == student.torch.factory
    assert surround.torch.kwargs == student.torch.kwargs
    for key in ("rgb_mean", "rgb_std", "depth_scale", "depth_range", "rgb_input",
                "sparse_input", "depth_output", "uncertainty_output"):
        assert getattr(surround, key) == getattr(student, key), key


def test_surround_input_keeps_the_whole_nuscenes_view():
    height, width = load_spec(SURROUND_SPEC).input_size
    # 900 rows at 800 / 1600 would be 450, not a multiple of 32: all but the top 4 rows.
    assert InputTransform((1600, 900), (width, height)).crop == (0, 4, 1600, 896)
    assert InputTransform((1600, 900), (1216, 352)).crop == (0, 437, 1600, 463)  # the student
