"""The shipped surround specs (models/student_surround.yaml and its camera-only
student_surround_mono.yaml): they load, match their ONNX files, and are the shipped students'
weights at a 448x800 input (all but the top 4 rows of a 1600x900 nuScenes view)."""
from __future__ import annotations

import pytest

from dmd3c_ros.core.input_transform import InputTransform
from dmd3c_ros.paths import default_model_spec, share_dir
from dmd3c_ros.runtime.spec import load_spec

MODELS = share_dir() / "models"
SURROUND_SPEC = MODELS / "student_surround.yaml"

pytestmark = pytest.mark.skipif(not SURROUND_SPEC.is_file() or default_model_spec() is None,
                                reason="no shipped surround spec (models/student_surround.yaml)")


def test_surround_spec_describes_the_onnx_file():
    spec = load_spec(SURROUND_SPEC)              # checks the sha256 of the ONNX file
    assert tuple(spec.input_size) == (448, 800) and not spec.supports_mono
    assert spec.onnx.name == "student_surround.onnx"
    # The classical pre-step at the network's size: six 1600x900 views stay affordable.
    assert spec.classical_input == "classical" and spec.classical_resolution == "input"
    assert spec.mono_model == (MODELS / "student_surround_mono.yaml").resolve()
    mono = load_spec(spec.mono_model)
    assert mono.sha256 == "28aaf66643c1fcf8b5572d22ddde43ca197e2a0844e6698956f16b2c9cdc6853"
    assert tuple(mono.input_size) == (448, 800) and mono.supports_mono


@pytest.mark.parametrize("surround, single", [("student_surround.yaml", "student.yaml"),
                                              ("student_surround_mono.yaml", "student_mono.yaml")])
def test_surround_specs_run_the_students_networks(surround, single):
    surround, student = load_spec(MODELS / surround), load_spec(MODELS / single)
    assert surround.torch.factory == student.torch.factory
    assert surround.torch.kwargs == student.torch.kwargs
    for key in ("rgb_mean", "rgb_std", "depth_scale", "depth_range", "rgb_input",
                "sparse_input", "features_input", "classical_input", "depth_output",
                "uncertainty_output"):
        assert getattr(surround, key) == getattr(student, key), key


def test_the_surround_student_has_its_own_weights_and_the_mono_one_shares():
    # Surround version 7 is version 6 fine-tuned on pairs of views (models/README.md); the
    # camera-only student is version 4 at both sizes, one copy of its weights.
    surround, student = load_spec(MODELS / "student_surround.yaml"), load_spec(
        MODELS / "student.yaml")
    assert surround.torch.weights.name == "student_surround.safetensors"
    assert surround.torch.weights != student.torch.weights and surround.torch.weights.is_file()
    mono, single_mono = (load_spec(MODELS / n) for n in ("student_surround_mono.yaml",
                                                         "student_mono.yaml"))
    assert mono.torch.weights == single_mono.torch.weights


def test_surround_input_keeps_the_whole_nuscenes_view():
    height, width = load_spec(SURROUND_SPEC).input_size
    # 900 rows at 800 / 1600 would be 450, not a multiple of 32: all but the top 4 rows.
    assert InputTransform((1600, 900), (width, height)).crop == (0, 4, 1600, 896)
    assert InputTransform((1600, 900), (1216, 352)).crop == (0, 437, 1600, 463)  # the student
