"""A synthetic drive: the ego vehicle moves through a procedural scene and its rig records frames.

Timing: frames at ``rate_hz`` (10 Hz like KITTI's LiDAR). Every camera is rendered at the frame's
time t and the sweep is cast at t as well (the moment the spinning LiDAR faces the cameras, which is
when KITTI triggers them), so geometry agrees exactly between LiDAR and images; the *stamps* carry
realistic offsets: the sweep message is stamped 10-30 ms before the image (its own clock), and the
cameras of the surround rig are stamped 8 ms apart, as their exposures follow the LiDAR round. No
motion distortion within a sweep.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dmd3c_ros.training.sim.lidar import LIDAR_MODELS, simulate_lidar
from dmd3c_ros.training.sim.render import render_camera
from dmd3c_ros.training.sim.rig import CameraMount, Rig
from dmd3c_ros.training.sim.world import generate_scene

EGO_SPEED_MPS = 10.0   # what Scene.ego_pose drives at, about
VIEW_MARGIN_M = 120.0  # scene beyond the last frame's position, so the far view is not empty
START_TIME_S = 1_700_000_000.0  # stamps: a plausible epoch time rather than 0


@dataclass
class CameraFrame:
    mount: CameraMount
    rgb: np.ndarray      # (H, W, 3) uint8
    depth: np.ndarray    # (H, W) float32 metres along the optical axis, NaN = no surface (sky)
    stamp: float         # s


@dataclass
class SimFrame:
    index: int
    time: float                   # s since the start of the drive (scene time)
    lidar_stamp: float            # s, the sweep message's stamp
    points: np.ndarray            # (N, 5) float32 x, y, z, intensity, ring in the LiDAR frame
    cameras: list[CameraFrame]
    world_from_base: np.ndarray   # (4, 4) ego pose at ``time``


def simulate_drive(seed: int, frames: int, rig: Rig, lidar: str = "hdl64", *,
                   rate_hz: float = 10.0) -> Iterator[SimFrame]:
    """Yield ``frames`` frames of one drive; deterministic for a seed."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if lidar not in LIDAR_MODELS:
        raise ValueError(f"unknown LiDAR {lidar!r}; models: {', '.join(sorted(LIDAR_MODELS))}")
    model = LIDAR_MODELS[lidar]
    scene = generate_scene(seed, length_m=frames / rate_hz * EGO_SPEED_MPS + VIEW_MARGIN_M)
    rng = np.random.default_rng(seed)
    for index in range(frames):
        t = index / rate_hz
        world = scene.at(t)
        world_from_base = scene.ego_pose(t)
        stamp = START_TIME_S + t
        cameras = []
        for k, mount in enumerate(rig.cameras):
            rgb, depth = render_camera(world, mount.camera, world_from_base @ mount.base_from_camera,
                                       rng)
            cameras.append(CameraFrame(mount, rgb, depth, stamp + 0.008 * k))
        points = simulate_lidar(world.caster(), model, world_from_base @ rig.base_from_lidar, rng,
                                reflectivity=world.reflectivity, normals=world.normals())
        lidar_stamp = stamp - rng.uniform(0.010, 0.030)
        yield SimFrame(index, t, lidar_stamp, points, cameras, world_from_base)
