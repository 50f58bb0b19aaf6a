"""The residual student with an image student above the LiDAR (training/above_lidar.py): the
coverage mask on known layouts, the residual answer kept bit for bit wherever the LiDAR covers
the pixel, the image student's answer above it, and one exported graph with parity."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from dmd3c_ros.runtime.factory import create_backend  # noqa: E402
from dmd3c_ros.runtime.spec import load_spec  # noqa: E402
from dmd3c_ros.training.above_lidar import (AboveConfig, AboveLidarStudent,  # noqa: E402
                                            build_above_student, compose_weights, coverage)
from dmd3c_ros.training.export import export_student  # noqa: E402
from dmd3c_ros.training.parity import residual_input  # noqa: E402

SIZE = (128, 128)


def _perturbed(seed=0):
    """A composite whose residual correction is no longer zero (as after training)."""
    model = build_above_student("residual_geo_above")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.residual.out.weight.add_(0.2 * torch.randn(model.residual.out.weight.shape,
                                                         generator=generator))
    return model.eval()


def _lidar_inputs(top_row=80, seed=0):
    """rgb, sparse (returns only from ``top_row`` down, like a LiDAR's field of view), classical
    (the runtime's pre-step), all (1, C, 128, 128) network units."""
    rng = np.random.default_rng(seed)
    rgb = rng.normal(size=(1, 3, *SIZE)).astype(np.float32)
    sparse = np.where(rng.random(SIZE) < 0.08, rng.uniform(0.05, 0.6, SIZE), 0.0)
    sparse[:top_row] = 0.0
    sparse = sparse[None, None].astype(np.float32)
    return (torch.from_numpy(rgb), torch.from_numpy(sparse),
            torch.from_numpy(residual_input(sparse, 1.0)))


def test_coverage_of_known_layouts():
    sparse = torch.zeros(1, 1, 40, 50)
    sparse[0, 0, 20, 10] = 0.3                       # one return at row 20, column 10
    covered = coverage(sparse, width=5, margin=3)[0, 0]
    # Its own and 2 columns each side, from 3 rows above it to the bottom.
    assert covered[17:, 8:13].all() and not covered[:17].any()
    assert not covered[:, :8].any() and not covered[:, 13:].any()
    assert covered.sum() == 5 * (40 - 17)
    assert not coverage(torch.zeros(1, 1, 40, 50), 5, 3).any()   # no LiDAR, nothing covered


def test_residual_answer_is_kept_wherever_the_lidar_covers():
    model = _perturbed()
    rgb, sparse, classical = _lidar_inputs(top_row=80)
    with torch.no_grad():
        depth, sigma = model(rgb, sparse, classical)
        near, near_sigma = model.residual(rgb, sparse, classical)
    covered = coverage(sparse, model.config.width, model.config.margin).bool()
    rows = model.image_rows(SIZE[0])
    assert rows == 64                                 # half of 128, a multiple of 32
    # Covered, or below the image student's rows: the residual student's answer, bit for bit.
    keep = covered.clone()
    keep[:, :, rows - 16:] = True
    assert torch.equal(depth[keep], near[keep]) and torch.equal(sigma[keep], near_sigma[keep])
    # Above the LiDAR (rows 0-47 here): the image student's answer, in the residual's units.
    above = ~keep & (classical > 0)
    assert above.sum() > 0.3 * 48 * 128
    cfg = model.config
    ratio = cfg.image_scale / cfg.residual_scale
    with torch.no_grad():
        far, _ = model.image(rgb[:, :, :rows], sparse[:, :, :rows] / ratio)
    far = far.clamp(cfg.image_min / cfg.image_scale, 1.0) * ratio
    top_above = above[:, :, :rows]
    torch.testing.assert_close(depth[:, :, :rows][top_above], far[top_above])
    assert not torch.equal(depth[above], near[above])
    assert (depth[classical == 0] == 0).all()         # no classical value, no depth


def test_composed_weights_load_both_students():
    model = build_above_student("residual_geo_above")
    state = compose_weights(model.residual.state_dict(), model.image.state_dict())
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state, strict=True)


def test_config_is_checked():
    with pytest.raises(ValueError, match="odd"):
        AboveLidarStudent(AboveConfig(name="x", width=4))
    with pytest.raises(ValueError, match="share"):
        AboveLidarStudent(AboveConfig(name="x", rows=0.0))
    with pytest.raises(ValueError, match="unknown composite"):
        build_above_student("nope")


def test_export_is_one_graph_with_parity_and_runs_in_the_runtime(tmp_path):
    from safetensors.torch import save_file
    model = _perturbed(1)
    residual_path, image_path = tmp_path / "residual.safetensors", tmp_path / "image.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in model.residual.state_dict().items()},
              str(residual_path), metadata={"variant": "residual_geo"})
    save_file({k: v.contiguous() for k, v in model.image.state_dict().items()},
              str(image_path), metadata={"variant": "tiny_v4"})
    result = export_student(residual_path, tmp_path / "out", "composite",
                            variant="residual_geo_above", image_weights=image_path,
                            input_size=SIZE, depth_scale=120.0, depth_range=(0.5, 120.0))
    assert result["parity"]["max_rel_err"] <= 1e-3
    import onnx
    ops = {node.op_type for node in onnx.load(result["onnx"]).graph.node}
    assert "CumSum" in ops                             # the coverage mask is in the graph
    spec = load_spec(result["spec"])
    assert spec.classical_input and not spec.supports_mono and spec.depth_scale == 120.0
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    sparse = np.where(rng.random(SIZE) < 0.06, rng.uniform(2, 60, SIZE), 0).astype(np.float32)
    sparse[:70] = 0.0
    a = create_backend("onnxruntime", spec).infer(rgb, sparse).depth
    b = create_backend("torch", spec).infer(rgb, sparse).depth
    finite = np.isfinite(a)
    assert finite.mean() > 0.9 and np.array_equal(finite, np.isfinite(b))
    np.testing.assert_allclose(a[finite], b[finite], rtol=1e-4)
    with pytest.raises(ValueError, match="composite variant"):
        export_student(residual_path, tmp_path / "bad", "bad", variant="residual_geo",
                       image_weights=image_path, input_size=SIZE, depth_scale=120.0,
                       depth_range=(0.5, 120.0))
