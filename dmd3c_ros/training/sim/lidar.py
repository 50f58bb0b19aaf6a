"""Spinning LiDAR models and their simulation by ray casting.

Vertical beam angles are the manufacturers' published ones where they are regular; the HDL-64E's
two blocks are the usual published approximation (upper block of 32 lasers from +2.0 to -8.33
degrees, lower block of 32 from -8.83 to -24.33 degrees, evenly spaced within a block). Sweeps are
instantaneous (no motion distortion within the 100 ms revolution).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dmd3c_ros.training.sim.raycast import RayCaster

VLP32C_ANGLES = (-25.0, -15.639, -11.31, -8.843, -7.254, -6.148, -5.333, -4.667, -4.0, -3.667,
                 -3.333, -3.0, -2.667, -2.333, -2.0, -1.667, -1.333, -1.0, -0.667, -0.333, 0.0,
                 0.333, 0.667, 1.0, 1.333, 1.667, 2.333, 3.333, 4.667, 7.0, 10.333, 15.0)


@dataclass(frozen=True)
class LidarModel:
    """One spinning LiDAR. Angles in degrees, ranges in metres; ring i fires at ``elevations[i]``."""

    name: str
    elevations: tuple[float, ...]
    columns: int                    # azimuth samples per revolution (at 10 Hz)
    max_range: float
    min_range: float = 0.9
    range_noise: float = 0.02       # std of the range error (m)
    dropout: float = 0.02           # share of returns lost at random
    note: str = ""
    _directions: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def rings(self) -> int:
        return len(self.elevations)

    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """(rings * columns, 3) float32 unit beam directions in the LiDAR frame (azimuth-major:
        all rings of the first azimuth, then the next) and the (rings * columns,) ring index."""
        if not self._directions:
            azimuth = np.linspace(np.pi, -np.pi, self.columns, endpoint=False)  # clockwise spin
            elevation = np.radians(np.asarray(self.elevations))
            a, e = np.meshgrid(azimuth, elevation, indexing="ij")
            d = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1)
            self._directions["d"] = d.reshape(-1, 3).astype(np.float32)
            self._directions["ring"] = np.tile(np.arange(self.rings), self.columns)
        return self._directions["d"], self._directions["ring"]


LIDAR_MODELS = {
    "hdl64": LidarModel("hdl64", tuple(np.linspace(2.0, -8.33, 32)) +
                        tuple(np.linspace(-8.83, -24.33, 32)), 2000, 120.0,
                        note="Velodyne HDL-64E S2 as on KITTI's car: about 1.3 M points/s, so "
                             "about 2000 per laser and revolution at 10 Hz (0.18 deg; KITTI's "
                             "sweeps hold about 120k points)"),
    "vlp32": LidarModel("vlp32", VLP32C_ANGLES, 1800, 200.0,
                        note="Velodyne VLP-32C; 0.2 deg azimuth at 10 Hz"),
    "vlp16": LidarModel("vlp16", tuple(float(a) for a in range(-15, 16, 2)), 1800, 100.0,
                        range_noise=0.03, note="Velodyne VLP-16; 0.2 deg azimuth at 10 Hz"),
    "os128": LidarModel("os128", tuple(np.linspace(22.5, -22.5, 128)), 1024, 120.0,
                        range_noise=0.03, min_range=0.5,
                        note="Ouster OS1-128 (45 deg uniform vertical field), 1024 columns"),
}


def simulate_lidar(caster: RayCaster, model: LidarModel, world_from_lidar: np.ndarray,
                   rng: np.random.Generator, *, reflectivity: np.ndarray | None = None,
                   normals: np.ndarray | None = None) -> np.ndarray:
    """One sweep of ``model`` mounted at ``world_from_lidar`` (4, 4).

    Args:
        caster: the world's ray caster.
        reflectivity: (T,) per-triangle reflectivity in [0, 1] (default 0.5 everywhere).
        normals: (T, 3) unit triangle normals in the world frame, for the incidence falloff of
            the intensity (default: no falloff).
    Returns:
        (N, 5) float32 x, y, z (metres, LiDAR frame), intensity (0-1), ring, azimuth-major.
    """
    directions, ring = model.directions()
    R, t = world_from_lidar[:3, :3], world_from_lidar[:3, 3]
    world_dirs = directions @ R.T.astype(np.float32)
    distance, triangle = caster.cast(t, world_dirs, max_distance=model.max_range, normalized=True)
    keep = np.isfinite(distance) & (distance >= model.min_range)
    keep &= rng.random(len(distance)) >= model.dropout
    distance, triangle, directions, ring = distance[keep], triangle[keep], directions[keep], \
        ring[keep]
    noisy = distance + rng.normal(0.0, model.range_noise, len(distance)).astype(np.float32)
    points = directions * noisy[:, None]
    albedo = np.full(len(triangle), 0.5, np.float32) if reflectivity is None \
        else np.asarray(reflectivity, np.float32)[triangle]
    cosine = np.ones(len(triangle), np.float32) if normals is None \
        else np.abs(np.einsum("ij,ij->i", np.asarray(normals, np.float32)[triangle],
                              world_dirs[keep]))
    intensity = albedo * (0.3 + 0.7 * cosine) * (1.0 - 0.5 * distance / model.max_range)
    intensity = np.clip(intensity + rng.normal(0.0, 0.02, len(intensity)), 0.0, 1.0)
    return np.column_stack([points, intensity, ring]).astype(np.float32)
