"""Spinning LiDAR models and their simulation by ray casting (``raycast.RayCaster``).

Beam directions in the LiDAR frame (x forward, y left, z up): ring ``i`` points at elevation
``elevations[i]`` above the x-y plane; azimuth column ``j`` at ``pi - 2 pi j / columns`` (plus the
ring's ``azimuth_offsets``), i.e. a sweep starts behind the sensor and turns clockwise seen from
above, as Velodyne and Ouster sensors spin. Rings are numbered as the sensor's usual driver reports
them: velodyne_pointcloud sorts rings by ascending elevation (ring 0 = lowest beam), ouster-ros
numbers channels from the top, and KITTI's HDL-64 sweeps list their scan lines from the top beam
down (the first points of a sweep are at about +2 deg, the last at about -24 deg).

Vertical angles are the published ones; where a datasheet gives only a field of view and a count
(OS1-128) the beams are spread evenly over it, and the HDL-64E uses the usual published two-block
approximation (its real angles are per-unit calibration values). Sweeps are instantaneous: the
motion of the vehicle during the 100 ms revolution (rolling-shutter-like distortion) is not
modelled, and neither are multiple returns, beam divergence or per-laser range biases.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dmd3c_ros.training.sim.raycast import RayCaster

# Velodyne VLP-32C vertical angles (degrees, user manual's laser table), sorted ascending as
# velodyne_pointcloud numbers the rings; dense (1/3 deg) around the horizon.
VLP32C_ANGLES = (-25.0, -15.639, -11.31, -8.843, -7.254, -6.148, -5.333, -4.667, -4.0, -3.667,
                 -3.333, -3.0, -2.667, -2.333, -2.0, -1.667, -1.333, -1.0, -0.667, -0.333, 0.0,
                 0.333, 0.667, 1.0, 1.333, 1.667, 2.333, 3.333, 4.667, 7.0, 10.333, 15.0)
# Velodyne HDL-32E vertical angles: 32 lasers evenly from -30.67 to +10.67 deg (4/3 deg apart),
# ring 0 the lowest. nuScenes' LIDAR_TOP is one: the sample in ../shared/data has 32 rings of
# 1,084 points each at -30.6 to +10.6 deg, 1.33 deg apart.
HDL32E_ANGLES = tuple(float(a) for a in np.linspace(-30.67, 10.67, 32))
# HDL-64E S2 (approximation): upper block of 32 lasers from +2.0 to -8.33 deg (1/3 deg steps),
# lower block of 32 from -8.83 to -24.33 deg (1/2 deg steps); top beam first, as KITTI lists them.
HDL64E_ANGLES = tuple(float(a) for a in np.linspace(2.0, -8.33, 32)) + \
    tuple(float(a) for a in np.linspace(-8.83, -24.33, 32))


@dataclass(frozen=True)
class LidarModel:
    """One spinning LiDAR.

    Attributes:
        name: key in ``LIDAR_MODELS``.
        elevations: vertical beam angles in degrees, one per ring; ring index = position.
        columns: azimuth samples per revolution at 10 Hz (360 / horizontal resolution in deg).
        max_range, min_range: metres; measured ranges outside are no return.
        range_noise: standard deviation of the range error along the beam (m).
        dropout: probability that a return is lost at random (real losses also depend on the
            surface: dark, wet, specular; that is not modelled).
        intensity_noise: standard deviation of the additive intensity noise (0-1 scale).
        azimuth_offsets: per-ring azimuth offsets in degrees (sensors whose lasers sit side by
            side fire at slightly different azimuths); None = all rings fire at one azimuth.
        note: datasheet source, approximations and mounting notes.
    """

    name: str
    elevations: tuple[float, ...]
    columns: int
    max_range: float
    min_range: float = 0.9
    range_noise: float = 0.02
    dropout: float = 0.02
    intensity_noise: float = 0.02
    azimuth_offsets: tuple[float, ...] | None = None
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "elevations", tuple(float(a) for a in self.elevations))
        if not self.elevations or self.columns < 1:
            raise ValueError(f"{self.name}: needs at least one ring and one column")
        if not 0.0 <= self.min_range < self.max_range:
            raise ValueError(f"{self.name}: need 0 <= min_range < max_range, got "
                             f"{self.min_range}, {self.max_range}")
        if not 0.0 <= self.dropout < 1.0 or self.range_noise < 0 or self.intensity_noise < 0:
            raise ValueError(f"{self.name}: dropout must be in [0, 1), noise >= 0")
        if self.azimuth_offsets is not None:
            object.__setattr__(self, "azimuth_offsets",
                               tuple(float(a) for a in self.azimuth_offsets))
            if len(self.azimuth_offsets) != len(self.elevations):
                raise ValueError(f"{self.name}: one azimuth offset per ring")

    @property
    def rings(self) -> int:
        return len(self.elevations)

    @property
    def azimuth_resolution_deg(self) -> float:
        return 360.0 / self.columns

    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit beam directions in the LiDAR frame, azimuth-major (all rings of the first
        azimuth, then the next): (rings * columns, 3) float32 and the (rings * columns,) int
        ring index. Cached per model; the arrays are read-only."""
        return _beam_directions(self)


@lru_cache(maxsize=32)
def _beam_directions(model: LidarModel) -> tuple[np.ndarray, np.ndarray]:
    azimuth = np.linspace(np.pi, -np.pi, model.columns, endpoint=False)[:, None]  # clockwise
    if model.azimuth_offsets is not None:
        azimuth = azimuth + np.radians(np.asarray(model.azimuth_offsets))[None, :]
    azimuth = np.broadcast_to(azimuth, (model.columns, model.rings))
    elevation = np.broadcast_to(np.radians(np.asarray(model.elevations)), azimuth.shape)
    d = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                  np.sin(elevation)], -1).reshape(-1, 3).astype(np.float32)
    ring = np.tile(np.arange(model.rings), model.columns)
    d.setflags(write=False)
    ring.setflags(write=False)
    return d, ring


LIDAR_MODELS: dict[str, LidarModel] = {
    "hdl64": LidarModel(
        "hdl64", HDL64E_ANGLES, 2000, 120.0, min_range=0.9, range_noise=0.02, dropout=0.02,
        note="Velodyne HDL-64E S2 as on KITTI's car (about 1.73 m above the road, 0.27 m behind "
             "and 0.08 m above the cameras). Datasheet: 26.8 deg vertical field, 120 m, < 2 cm "
             "accuracy, 1.3 M points/s, i.e. about 2000 points per laser and revolution at 10 Hz "
             "(0.18 deg; KITTI's sweeps hold about 120k points). The datasheet's 0.09 deg "
             "azimuth resolution (4000 columns) would give twice the point rate."),
    "vlp32": LidarModel(
        "vlp32", VLP32C_ANGLES, 1800, 200.0, min_range=0.5, range_noise=0.015, dropout=0.01,
        note="Velodyne VLP-32C: -25 to +15 deg, 0.2 deg azimuth at 10 Hz, 200 m, +-3 cm "
             "accuracy (noise std taken as half of it). The per-laser azimuth offsets of the "
             "real unit are not modelled."),
    "hdl32": LidarModel(
        "hdl32", HDL32E_ANGLES, 1084, 100.0, min_range=1.0, range_noise=0.02, dropout=0.02,
        note="Velodyne HDL-32E as nuScenes runs it (LIDAR_TOP, 20 Hz: 1,084 points per laser "
             "and revolution, 0.33 deg). Datasheet: 41.3 deg vertical field, 80-100 m, < 2 cm "
             "accuracy."),
    "vlp16": LidarModel(
        "vlp16", tuple(float(a) for a in range(-15, 16, 2)), 1800, 100.0, min_range=0.5,
        range_noise=0.015, dropout=0.01,
        note="Velodyne VLP-16: -15 to +15 deg every 2 deg, 0.2 deg azimuth at 10 Hz, 100 m, "
             "+-3 cm accuracy (noise std taken as half of it)."),
    "os128": LidarModel(
        "os128", tuple(float(a) for a in np.linspace(22.5, -22.5, 128)), 1024, 120.0,
        min_range=0.5, range_noise=0.03, dropout=0.01,
        note="Ouster OS1-128 in its 1024x10 mode (1024 columns at 10 Hz; 2048x10 also exists): "
             "128 beams spread evenly over the published 45 deg (+-22.5 deg) vertical field, "
             "channel 0 at the top, 120 m (approximation; depends on the revision), noise std "
             "about 3 cm."),
}


def triangle_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(T, 3) float32 unit normals of a mesh's triangles (zero for degenerate triangles)."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(triangles)]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0).astype(np.float32)


def simulate_lidar(caster: RayCaster, model: LidarModel, world_from_lidar: np.ndarray,
                   rng: np.random.Generator, *, reflectivity: np.ndarray | None = None,
                   normals: np.ndarray | None = None) -> np.ndarray:
    """One sweep of ``model`` mounted at ``world_from_lidar``.

    One ray per (ring, azimuth) from the LiDAR origin; the true range gets Gaussian noise along
    the ray, returns are lost at random with ``model.dropout``, and measured ranges outside
    [min_range, max_range] are no return; misses are dropped.

    Args:
        caster: the scene (world frame, metres).
        world_from_lidar: (4, 4) pose of the LiDAR frame in the world frame.
        rng: the source of noise, dropout and intensity noise.
        reflectivity: (T,) per-triangle reflectivity in [0, 1] (default 0.5 everywhere).
        normals: (T, 3) unit triangle normals in the world frame (``triangle_normals``), for the
            incidence-angle falloff of the intensity (default: no falloff).
    Returns:
        (N, 5) float32 x, y, z (metres, LiDAR frame), intensity (0-1), ring (as float), in
        azimuth-major order (for each azimuth column, its rings in ring order).
        Intensity = reflectivity x (0.3 + 0.7 |cos incidence|) x (1 - 0.5 range / max_range) plus
        noise, clipped to [0, 1]: a softened Lambertian term and a linear range falloff (real
        sensors partly compensate range; this is a plausible shape, not a calibrated one).
    """
    world_from_lidar = np.asarray(world_from_lidar, dtype=np.float64)
    if world_from_lidar.shape != (4, 4):
        raise ValueError(f"world_from_lidar must be (4, 4), got {world_from_lidar.shape}")
    directions, ring = model.directions()
    R, t = world_from_lidar[:3, :3], world_from_lidar[:3, 3]
    world_dirs = directions @ R.T.astype(np.float32)
    # Cast a little beyond max_range so that noise can bring a far hit back in range.
    distance, triangle = caster.cast(t, world_dirs, model.max_range + 5.0 * model.range_noise,
                                     normalized=True)
    hit = np.flatnonzero(np.isfinite(distance))
    distance, triangle = distance[hit], triangle[hit]
    measured = distance + rng.normal(0.0, model.range_noise, len(hit)).astype(np.float32)
    keep = (measured >= model.min_range) & (measured <= model.max_range)
    keep &= rng.random(len(hit)) >= model.dropout
    hit, distance, measured, triangle = hit[keep], distance[keep], measured[keep], triangle[keep]
    points = directions[hit] * measured[:, None]
    albedo = np.full(len(hit), 0.5, np.float32) if reflectivity is None \
        else np.asarray(reflectivity, np.float32)[triangle]
    cosine = np.ones(len(hit), np.float32) if normals is None \
        else np.abs(np.einsum("ij,ij->i", np.asarray(normals, np.float32)[triangle],
                              world_dirs[hit]))
    intensity = albedo * (0.3 + 0.7 * cosine) * (1.0 - 0.5 * distance / model.max_range)
    intensity = np.clip(intensity + rng.normal(0.0, model.intensity_noise, len(hit)), 0.0, 1.0)
    return np.column_stack([points, intensity, ring[hit]]).astype(np.float32)
