"""The edge-fed residual student (``residual_geo_edges``) and the texture noise it trains with."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dmd3c_ros.training.checkpoints import widened_inputs  # noqa: E402
from dmd3c_ros.training.parity import residual_input, sample_inputs  # noqa: E402
from dmd3c_ros.training.images import (EDGE_MAX, image_edges, normalise_rgb,  # noqa: E402
                                       texture_noise)
from dmd3c_ros.training.residual import build_residual_student  # noqa: E402


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(normalise_rgb(rgb))[None]


def test_edges_are_zero_on_a_flat_image_and_mark_a_step_in_any_light():
    flat = np.full((16, 24, 3), 90, np.uint8)
    assert torch.count_nonzero(image_edges(_normalised(flat)) > 1e-3) == 0
    step = flat.copy()
    step[:, 12:] = 180
    edges = image_edges(_normalised(step))[0, 0]
    assert edges.shape == (16, 24)
    assert (edges[:, 11:13] > 0.1).all()              # the two columns beside the step
    assert (edges[:, :10] < 1e-3).all() and (edges[:, 14:] < 1e-3).all()
    # A relative contrast: the same step in half the light is nearly the same edge.
    darker = image_edges(_normalised((step // 2).astype(np.uint8)))[0, 0]
    assert torch.allclose(darker[:, 11:13], edges[:, 11:13], rtol=0.15)
    noisy = np.random.default_rng(0).integers(0, 256, (16, 24, 3)).astype(np.uint8)
    assert image_edges(_normalised(noisy)).max() <= EDGE_MAX


def test_edge_variant_starts_as_the_geometry_only_student_and_learns_from_the_image():
    geo = build_residual_student("residual_geo")
    with torch.no_grad():
        geo.out.weight.add_(0.2)                      # a correction that is not zero
    edges = build_residual_student("residual_geo_edges")
    own = edges.state_dict()
    state = {k: v for k, v in geo.state_dict().items() if own[k].shape == v.shape}
    state.update(widened_inputs(geo.state_dict(), own))   # what init_strict: false loads
    edges.load_state_dict(state)
    assert edges.uses_rgb and not geo.uses_rgb
    rgb, sparse = (torch.from_numpy(a) for a in sample_inputs((64, 128), seed=1, batch=2))
    classical = torch.from_numpy(residual_input(sparse.numpy(), 1.0))
    geo.eval(), edges.eval()
    with torch.no_grad():
        assert torch.equal(edges(rgb, sparse, classical)[0], geo(rgb, sparse, classical)[0])
    edges.train()
    edges(rgb, sparse, classical)[0].mean().backward()
    assert edges.stem[0][0].weight.grad[:, -1].abs().sum() > 0   # the edge map can count
    assert edges.head_in.weight.grad[:, -1].abs().sum() > 0


def test_texture_noise_is_a_bounded_reproducible_brightness_texture():
    rgb = np.full((120, 160, 3), 120, np.uint8)
    first = texture_noise(rgb, np.random.default_rng(3), 0.7)
    again = texture_noise(rgb, np.random.default_rng(3), 0.7)
    assert first.dtype == np.float32 and np.array_equal(first, again)
    assert first.min() >= 0.0 and first.max() <= 255.0 and first.std() > 0
    # brightness only: the three channels of a grey image stay equal
    assert np.array_equal(first[..., 0], first[..., 1])
    assert np.array_equal(texture_noise(rgb, np.random.default_rng(3), 0.0),
                          rgb.astype(np.float32))
