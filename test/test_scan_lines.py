"""evaluation.scan_lines: the rings of an ordered sweep and the gaps along them."""
from __future__ import annotations

import numpy as np
import pytest

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.evaluation.scan_lines import ring_gaps, scan_rings

K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 25.0], [0.0, 0.0, 1.0]])
CAMERA = PinholeCamera(100, 50, K, np.hstack([K, np.zeros((3, 1))]))


def _sweep(rings: int, per_ring: int = 90) -> np.ndarray:
    """Rings one after the other, each in azimuth order from -180 to +180 degrees."""
    azimuth = np.linspace(-np.pi, np.pi, per_ring, endpoint=False)
    return np.concatenate([np.c_[np.cos(azimuth), np.sin(azimuth), np.full(per_ring, 0.01 * r)]
                           for r in range(rings)])


def test_rings_come_from_the_azimuth_wrapping_round():
    ring = scan_rings(_sweep(32))
    assert ring is not None and list(np.bincount(ring)) == [90] * 32
    # not stored ring by ring: too many or too few wraps
    shuffled = _sweep(32)[np.random.default_rng(0).permutation(32 * 90)]
    assert scan_rings(shuffled) is None
    assert scan_rings(_sweep(4)) is None and scan_rings(_sweep(1)[:1]) is None


def _point(u: float, depth: float, v: float = 25.0) -> list[float]:
    """The camera-frame point at pixel (u, v) and that depth (no LiDAR transform)."""
    return [(u - 50.0) * depth / 100.0, (v - 25.0) * depth / 100.0, depth]


def test_gaps_between_agreeing_returns_are_interpolated():
    points = np.array([_point(10, 10.0), _point(13, 10.3), _point(20, 10.3), _point(23, 20.0),
                       _point(24, 20.0)])
    gaps = ring_gaps(points, np.zeros(5, np.int64), CAMERA, np.eye(4))
    # 10 -> 13: pixels 11 and 12 at a third and two thirds of the way
    assert gaps[25, 11] == pytest.approx(10.1) and gaps[25, 12] == pytest.approx(10.2)
    # 13 -> 20 is 7 px apart (more than MAX_GAP_PX), 20 -> 23 disagree, 23 -> 24 have no gap
    assert np.count_nonzero(gaps) == 2
    # another ring's return between them: no gap across rings
    assert not np.any(ring_gaps(points, np.array([0, 1, 1, 1, 1]), CAMERA, np.eye(4))[25, 11:13])
    # the input's own returns keep their pixels
    occupied = np.zeros((50, 100), np.float32)
    occupied[25, 12] = 9.0
    gaps = ring_gaps(points, np.zeros(5, np.int64), CAMERA, np.eye(4), occupied=occupied)
    assert gaps[25, 12] == 0.0 and gaps[25, 11] == pytest.approx(10.1)


def test_where_two_gaps_cross_the_nearer_depth_wins():
    points = np.array([_point(10, 30.0), _point(14, 30.0), _point(12, 5.0, 23),
                       _point(12, 5.0, 27)])
    gaps = ring_gaps(points, np.array([0, 0, 1, 1]), CAMERA, np.eye(4))
    assert gaps[25, 12] == pytest.approx(5.0) and gaps[25, 11] == pytest.approx(30.0)
    assert gaps[24, 12] == pytest.approx(5.0)
