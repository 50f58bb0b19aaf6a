"""`dmd3c engine`: TensorRT engine builds, INT8 calibration, the timing and calibration caches.

Without TensorRT, pycuda and a GPU (this machine) the tests check what runs anywhere: the command
line, its clear errors, the cache file names, the calibration frames regrouped into the engine's
batches, the calibrator's batches and cache against a stand-in for pycuda's driver, and the
parity measure. The build tests at the end need the real thing and skip without it.
"""
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from dmd3c_ros.cli import build_parser, main
from dmd3c_ros.deploy import engine as engine_module
from dmd3c_ros.deploy.calibration import calibration_feeds, calibration_samples
from dmd3c_ros.deploy.engine import build_engine, depth_parity, parity_frames
from dmd3c_ros.paths import default_model_spec
from dmd3c_ros.runtime import factory, tensorrt_backend, tensorrt_calibration
from dmd3c_ros.runtime.base import BackendError, BackendUnavailableError
from dmd3c_ros.runtime.spec import load_spec
from dmd3c_ros.runtime.tensorrt_backend import (TensorRTBackend, calibration_cache_path,
                                                rebatch_feeds, timing_cache_path)

NEEDS_GPU = "needs TensorRT, CUDA bindings (cuda-python or pycuda) and an NVIDIA GPU"
SHA_A, SHA_B = "ab" * 32, "cd" * 32


@pytest.fixture(scope="module")
def student():
    path = default_model_spec()
    if path is None:
        pytest.skip("the shipped student (models/student.yaml) is not here")
    return load_spec(path)


@pytest.fixture(scope="module")
def mono_student(student):
    """The camera-only student the shipped (residual) student names for frames without LiDAR."""
    return load_spec(student.mono_model) if student.mono_model else student


@pytest.fixture(scope="module")
def sim_kitti(tmp_path_factory):
    """Two simulated frames as a KITTI-format folder (camera 2 + an HDL-64 sweep)."""
    out = tmp_path_factory.mktemp("calibration") / "kitti"
    assert main(["sim", "--frames", "2", "--seed", "3", "--format", "kitti-sample", "--lidar",
                 "hdl64", "--out", str(out)]) == 0
    return out


# -- command line -----------------------------------------------------------------------------
def test_engine_command_parses_with_the_node_defaults():
    args = build_parser().parse_args(["engine", "models/student.yaml"])
    assert args.func is engine_module.run
    assert (args.precision, args.max_batch, args.calibration, args.calibration_frames) == \
        ("fp16", 1, None, 32)
    assert not (args.rebuild or args.recalibrate or args.no_parity)
    args = build_parser().parse_args(["engine", "m.yaml", "--precision", "int8", "--calibration",
                                      "frames", "--calibration-frames", "8", "--json", "r.json"])
    assert (args.precision, args.calibration, args.calibration_frames, args.json) == \
        ("int8", "frames", 8, "r.json")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["engine", "m.yaml", "--precision", "fp8"])


@pytest.mark.skipif(factory.tensorrt_available(), reason="TensorRT runs here: the command builds")
def test_without_tensorrt_the_command_says_what_is_missing(student, tmp_path, capsys):
    report = tmp_path / "engine.json"
    assert main(["engine", str(student.path), "--engine-cache-dir", str(tmp_path),
                 "--json", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmd3c engine: error: backend 'tensorrt' needs")
    assert "Traceback" not in err and not report.exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-built


def test_int8_without_frames_or_cache_asks_for_calibration(student, tmp_path, capsys):
    assert main(["engine", str(student.path), "--precision", "int8",
                 "--engine-cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmd3c engine: error: int8 needs calibration frames")
    assert "--calibration DIR" in err and "never the data you measure accuracy on" in err
    with pytest.raises(ValueError, match="--calibration DIR"):
        build_engine(student.path, "int8", engine_cache_dir=tmp_path, recalibrate=True)
    with pytest.raises(BackendError, match="dmd3c engine .* --precision int8 --calibration DIR"):
        TensorRTBackend(student, precision="int8", engine_cache_dir=tmp_path)


@pytest.mark.skipif(factory.tensorrt_available(), reason="TensorRT runs here: it would build")
def test_int8_with_frames_or_a_cache_gets_past_calibration(student, sim_kitti, tmp_path, capsys):
    # With frames, or with the model's calibration cache, int8 needs nothing more than TensorRT.
    assert main(["engine", str(student.path), "--precision", "int8", "--calibration",
                 str(sim_kitti), "--engine-cache-dir", str(tmp_path)]) == 2
    assert "backend 'tensorrt' needs" in capsys.readouterr().err
    cache = calibration_cache_path(tmp_path, student.sha256, student.input_size)
    cache.write_bytes(b"scales")
    with pytest.raises(BackendUnavailableError, match="backend 'tensorrt' needs"):
        build_engine(student.path, "int8", engine_cache_dir=tmp_path)
    with pytest.raises(BackendUnavailableError, match="backend 'tensorrt' needs"):
        TensorRTBackend(student, precision="int8", engine_cache_dir=tmp_path)  # as the node does


@pytest.mark.parametrize("options, message", [
    ({"precision": "fp8"}, "precision must be one of fp32, fp16, int8"),
    ({"max_batch": 0}, "max_batch must be at least 1"),
    ({"calibration_frames": 0}, "calibration_frames must be at least 1"),
])
def test_bad_arguments_are_clear_errors(student, options, message):
    options = {"precision": "fp16", **options}
    with pytest.raises(ValueError, match=message):
        build_engine(student.path, options.pop("precision"), **options)


# -- cache files ------------------------------------------------------------------------------
def test_calibration_cache_is_named_by_the_onnx_sha256_and_input_size(tmp_path):
    a = calibration_cache_path(tmp_path, SHA_A, (352, 1216))
    assert a == calibration_cache_path(tmp_path, SHA_A.upper(), (352, 1216))
    assert a.parent == tmp_path and a.name == f"calibration-{SHA_A[:16]}-352x1216.cache"
    assert calibration_cache_path(tmp_path, SHA_B, (352, 1216)) != a
    assert calibration_cache_path(tmp_path, SHA_A, (256, 1216)) != a


def test_timing_cache_is_per_tensorrt_version_and_gpu(tmp_path):
    path = timing_cache_path(tmp_path, "10.3.0", "NVIDIA GeForce RTX 4090 (sm_89)")
    assert path.parent == tmp_path
    assert path.name == "timing-10.3.0-nvidia-geforce-rtx-4090-sm-89.cache"
    assert timing_cache_path(tmp_path, "10.4.0", "NVIDIA GeForce RTX 4090 (sm_89)") != path
    assert timing_cache_path(tmp_path, "10.3.0", "Orin (sm_87)") != path


class FakeTimingConfig:
    """A builder config's timing-cache calls: a build appends its timings to what was loaded."""

    def __init__(self):
        self.attached = None

    def create_timing_cache(self, data):
        if bytes(data) == b"corrupt":
            raise RuntimeError("not a timing cache")
        return types.SimpleNamespace(serialize=lambda: memoryview(bytes(data) + b"+timings"))

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False  # the file name already holds TensorRT version and GPU
        self.attached = cache
        return True

    def get_timing_cache(self):
        return self.attached


def test_timing_cache_is_loaded_into_each_build_and_written_back(tmp_path):
    backend = object.__new__(TensorRTBackend)  # only the cache file handling, no GPU
    backend.timing_cache_path = path = timing_cache_path(tmp_path, "10.3.0", "Orin (sm_87)")
    for expected in (b"+timings", b"+timings+timings"):  # a new cache, then the saved one
        config = FakeTimingConfig()
        assert backend._load_timing_cache(config) is config.attached is not None
        backend._save_timing_cache(config)
        assert path.read_bytes() == expected
    path.write_bytes(b"corrupt")  # a broken file is replaced, not fatal
    config = FakeTimingConfig()
    backend._load_timing_cache(config)
    backend._save_timing_cache(config)
    assert path.read_bytes() == b"+timings" and list(tmp_path.iterdir()) == [path]


# -- calibration frames -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_feeds(student, sim_kitti):
    """The two simulated frames as the network's inputs, one frame per feed."""
    return list(calibration_feeds(student, calibration_samples(sim_kitti, count=8), batch=1))


def shapes_for(spec, batch, h=None):
    h = spec.input_size[0] if h is None else h
    return {name: (batch, channels, h, spec.input_size[1]) for name, channels in spec.inputs}


def lidar_input(spec):
    """The input the LiDAR reaches the network through: ``sparse``, or the shipped students'
    feature maps."""
    return spec.inputs[1][0]


def test_rebatch_groups_frames_into_the_engine_batch(student, sim_feeds):
    assert len(sim_feeds) == 2
    names = [name for name, _ in student.inputs]
    pair = list(rebatch_feeds(sim_feeds, shapes_for(student, 2)))
    assert len(pair) == 1
    for name in names:
        np.testing.assert_array_equal(pair[0][name], np.concatenate([f[name] for f in sim_feeds]))
    # A last partial batch is completed with the stream's first frames (fixed-batch engines).
    three = list(rebatch_feeds(sim_feeds, shapes_for(student, 3)))
    assert len(three) == 1 and three[0][student.rgb_input].shape[0] == 3
    np.testing.assert_array_equal(three[0][lidar_input(student)][2],
                                  sim_feeds[0][lidar_input(student)][0])
    singles = list(rebatch_feeds(pair, shapes_for(student, 1)))
    assert len(singles) == 2
    np.testing.assert_array_equal(singles[1][student.rgb_input], sim_feeds[1][student.rgb_input])


def test_rebatch_rejects_feeds_that_do_not_fit(student, sim_feeds):
    h, w = student.input_size
    with pytest.raises(ValueError, match="lacks the inputs"):
        list(rebatch_feeds([{student.rgb_input: sim_feeds[0][student.rgb_input]}],
                           shapes_for(student, 1)))
    with pytest.raises(ValueError, match="the engine takes"):
        list(rebatch_feeds(sim_feeds, shapes_for(student, 1, h=h // 2)))


# -- the entropy calibrator against a stand-in for pycuda's driver ----------------------------
class FakeAllocation:
    """pycuda's DeviceAllocation as the calibrator uses it: int() is the address; free()."""

    def __init__(self, nbytes):
        self.data = bytearray(nbytes)
        self.freed = False

    def __int__(self):
        return id(self)

    def free(self):
        self.freed = True


@pytest.fixture
def fake_cuda(monkeypatch):
    """``tensorrt`` with only the calibrator base class and ``pycuda.driver`` with host memory."""
    allocations = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.0.1"
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda s: None})
    driver = types.ModuleType("pycuda.driver")
    driver.mem_alloc = lambda nbytes: allocations.append(FakeAllocation(nbytes)) or allocations[-1]
    driver.memcpy_htod = lambda allocation, array: allocation.data.__setitem__(
        slice(None), np.ascontiguousarray(array).tobytes())
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = driver
    for name, module in (("tensorrt", trt), ("pycuda", pycuda), ("pycuda.driver", driver)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(tensorrt_calibration, "_CALIBRATOR_CLASS", None)  # made with the stand-ins
    return allocations


def device_array(allocations, pointer, shape):
    allocation = next(a for a in allocations if int(a) == pointer)
    return np.frombuffer(bytes(allocation.data), np.float32).reshape(shape)


def test_calibrator_copies_each_batch_into_buffers_allocated_once(student, sim_feeds, fake_cuda,
                                                                  tmp_path):
    calibrator = tensorrt_backend.EntropyCalibrator(iter(sim_feeds), tmp_path / "c.cache")
    calibrator.bind(shapes_for(student, 1))
    assert calibrator.get_batch_size() == 1  # explicit batch: the shapes carry it
    inputs = list(reversed(student.inputs))  # TensorRT's order, not the feeds'
    names = [name for name, _ in inputs]
    h, w = student.input_size
    for feed in sim_feeds:
        pointers = calibrator.get_batch(names)
        for pointer, (name, channels) in zip(pointers, inputs):
            np.testing.assert_array_equal(device_array(fake_cuda, pointer, (1, channels, h, w)),
                                          feed[name])
    assert calibrator.get_batch(names) is None and calibrator.error is None
    # one buffer per input, reused
    assert calibrator.batches == 2 and len(fake_cuda) == len(inputs)
    calibrator.free()
    assert all(a.freed for a in fake_cuda)


def test_calibrator_reads_and_writes_its_cache(fake_cuda, tmp_path):
    cache = tmp_path / "calibration-x.cache"
    calibrator = tensorrt_backend.EntropyCalibrator([], cache)
    assert calibrator.read_calibration_cache() is None and not calibrator.cache_read
    calibrator.write_calibration_cache(memoryview(b"TRT-scales"))
    assert cache.read_bytes() == b"TRT-scales" and list(tmp_path.iterdir()) == [cache]
    cached_only = tensorrt_backend.EntropyCalibrator(None, cache)  # what the node builds with
    assert cached_only.read_calibration_cache() == b"TRT-scales" and cached_only.cache_read
    assert cached_only.get_batch(["rgb", "sparse"]) is None


def test_calibrator_stops_cleanly_on_a_bad_feed(student, sim_feeds, fake_cuda, tmp_path):
    # TensorRT cannot take a Python exception from get_batch: it gets None, the backend the error.
    calibrator = tensorrt_backend.EntropyCalibrator([{"rgb": sim_feeds[0][student.rgb_input]}],
                                                    tmp_path / "c.cache")
    assert calibrator.get_batch([student.rgb_input, lidar_input(student)]) is None
    assert isinstance(calibrator.error, ValueError) and "lacks input" in str(calibrator.error)


# -- parity measure ---------------------------------------------------------------------------
def test_parity_frames_are_seeded_and_lidar_like(mono_student, student):
    if not student.supports_mono:                      # no mono frame for a LiDAR-only model
        assert all(sparse is not None for _, sparse in parity_frames(student))
    student = mono_student
    frames = parity_frames(student)
    assert len(frames) == 3 and frames[-1][1] is None  # the student supports mono mode
    again = parity_frames(student)
    h, w = student.input_size
    for (rgb, sparse), (rgb2, sparse2) in zip(frames[:2], again[:2]):
        assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb, rgb2)
        np.testing.assert_array_equal(sparse, sparse2)
        assert 0.03 < np.mean(sparse > 0) < 0.07  # about a 64-beam LiDAR's share of the image
        low, high = student.depth_range
        assert low <= sparse[sparse > 0].min() and sparse.max() <= high
    assert not np.array_equal(parity_frames(student, seed=1)[0][0], frames[0][0])


def test_depth_parity_in_metres(mono_student):
    student = mono_student
    pytest.importorskip("onnxruntime")
    from dmd3c_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

    class Shifted:
        """The reference's depth 0.5 m deeper, and no value in one row of each frame."""

        def __init__(self, backend):
            self.backend = backend

        def infer_batch(self, rgbs, sparses):
            predictions = self.backend.infer_batch(rgbs, sparses)
            for p in predictions:
                p.depth = p.depth + np.float32(0.5)
                p.depth[0] = np.nan
            return predictions

    reference = OnnxRuntimeBackend(student, intra_op_threads=2)
    frames = parity_frames(student, count=1)
    same = depth_parity(reference, reference, frames)
    h, w = student.input_size
    assert same["frames"] == 2 and same["pixels"] == 2 * h * w
    assert same["max_abs_m"] == 0.0 and same["mean_rel"] == 0.0 and same["nan_mismatch_px"] == 0
    shifted = depth_parity(Shifted(reference), reference, frames)
    assert shifted["pixels"] == 2 * (h - 1) * w and shifted["nan_mismatch_px"] == 2 * w
    assert shifted["max_abs_m"] == pytest.approx(0.5, abs=1e-4)
    low, high = student.depth_range
    assert 0.5 / high <= shifted["mean_rel"] <= 0.5 / low
    json.dumps(shifted)  # JSON-able as it goes into --json
    # The edge split: the row without a value borders on edges; the rest of a smooth field not.
    assert shifted["edge_px"] > 0 and shifted["max_abs_edge_m"] == pytest.approx(0.5, abs=1e-4)
    assert same["max_abs_edge_m"] == 0.0 and same["max_abs_interior_m"] == 0.0


def test_depth_edges_mark_steps_and_holes():
    from dmd3c_ros.deploy.engine import depth_edges
    depth = np.full((8, 10), 10.0, np.float32)
    depth[:, 5:] = 20.0           # a step between columns 4 and 5
    depth[7, 0] = np.nan          # a hole in a corner
    edges = depth_edges(depth)
    assert edges[:, 4:6].all() and not edges[:6, :4].any() and not edges[:, 7:].any()
    assert edges[6:, :2].all()    # the hole's neighbours
    assert not depth_edges(np.full((4, 4), 5.0, np.float32)).any()


# -- builds (TensorRT, pycuda and a GPU) ------------------------------------------------------
# Tolerances, depth in metres against ONNX Runtime on the CPU: fp16 keeps about 3 significant
# digits, so a 1% mean relative error and 0.5 m at most (80 m range) are generous; int8 with a
# two-frame calibration is coarser: a 10% mean relative error.
def gpu(test):
    """Marked ``gpu`` (``pytest -m gpu``, deploy/gpu_check.sh) and skipped without one."""
    return pytest.mark.gpu(pytest.mark.skipif(not factory.tensorrt_available(),
                                              reason=NEEDS_GPU)(test))


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@gpu
def test_fp16_engine_builds_matches_onnxruntime_and_is_reused(student, engines, tmp_path):
    report = tmp_path / "engine.json"
    assert main(["engine", str(student.path), "--precision", "fp16", "--engine-cache-dir",
                 str(engines), "--json", str(report)]) == 0
    built = json.loads(report.read_text())
    assert built["source"] == "built" and built["build_seconds"] > 0
    assert built["precision"] == "fp16" and built["calibration_cache"] is None
    engine_path = engines / f"{built['key']}.engine"
    assert built["engine"] == str(engine_path) and engine_path.is_file()
    assert built["timing_cache"] and Path(built["timing_cache"]).is_file()
    parity = built["parity"]
    assert parity["nan_mismatch_px"] == 0
    assert parity["mean_rel"] < 1e-2 and parity["max_abs_m"] < 0.5
    again = build_engine(student.path, "fp16", engine_cache_dir=engines, parity=False)
    assert again["source"] == "cache" and again["key"] == built["key"]
    assert again["build_seconds"] is None and again["parity"] is None
    # The node's way in (create_backend) finds the same engine.
    backend = factory.create_backend("tensorrt", student, precision="fp16",
                                     engine_cache_dir=engines)
    assert backend.engine_source == "cache" and backend.engine_path == engine_path
    backend.close()


@gpu
def test_a_changed_key_or_a_broken_engine_is_rebuilt(student, engines):
    first = build_engine(student.path, "fp16", engine_cache_dir=engines, parity=False)
    other = build_engine(student.path, "fp16", engine_cache_dir=engines, max_batch=2,
                         parity=False)
    assert other["key"] != first["key"] and other["source"] == "built"
    assert other["max_batch"] == 2
    engine_path = engines / f"{first['key']}.engine"
    engine_path.write_bytes(b"not an engine")
    repaired = TensorRTBackend(student, precision="fp16", engine_cache_dir=engines)
    assert repaired.engine_source == "built" and repaired.key == first["key"]
    repaired.close()
    rebuilt = build_engine(student.path, "fp16", engine_cache_dir=engines, rebuild=True,
                           parity=False)
    assert rebuilt["source"] == "built" and rebuilt["key"] == first["key"]


@gpu
def test_int8_calibrates_once_then_builds_from_the_cache(student, sim_kitti, engines):
    built = build_engine(student.path, "int8", engine_cache_dir=engines, calibration=sim_kitti,
                         calibration_frames=2)
    cache = calibration_cache_path(engines, student.sha256, student.input_size)
    assert built["source"] == "built" and built["calibration_cache"] == str(cache)
    assert cache.is_file() and student.sha256[:16] in cache.name
    assert built["calibration_frames"] == 2 and built["calibration_source"] == str(sim_kitti)
    assert "calibration frames" in built["parity"]["inputs"]
    assert built["parity"]["mean_rel"] < 0.1
    # Later builds (here forced; after a TensorRT upgrade for real) need no frames.
    rebuilt = build_engine(student.path, "int8", engine_cache_dir=engines, rebuild=True,
                           parity=False)
    assert rebuilt["source"] == "built" and rebuilt["calibration_frames"] == 0
    assert rebuilt["key"] == built["key"]
    # The node: int8 with no calibrator loads the cached engine.
    backend = factory.create_backend("tensorrt", student, precision="int8",
                                     engine_cache_dir=engines)
    assert backend.engine_source == "cache" and backend.key == built["key"]
    backend.close()
