"""Camera images and exact ground-truth depth of a :class:`~dmd3c_ros.training.sim.world.World`,
by ray casting one ray per pixel (through the pixel centre) with the package's ray caster.

Shading: sRGB albedo to linear, times (ambient sky light + direct sun with a hard shadow ray), a
world-anchored procedural texture (so that stereo views and consecutive frames see the same
texture), haze towards the horizon colour with distance, gamma, mild per-pixel noise and an
optional small blur. Sky pixels get a vertical gradient from the horizon to ``world.sky_color``.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from ...core.camera import PinholeCamera
from . import world as w

_GAMMA = 2.2
# Texture strength per material (relative brightness change), indexed by class id.
_TEXTURE = np.full(len(w.MATERIAL_NAMES), 0.03, np.float32)
_TEXTURE[[w.ROAD, w.SIDEWALK, w.TERRAIN, w.VEGETATION, w.BUILDING, w.CURB]] = \
    (0.22, 0.14, 0.3, 0.3, 0.08, 0.1)
_SRGB_TO_LINEAR = ((np.arange(256) / 255.0) ** _GAMMA).astype(np.float32)
_LINEAR_TO_SRGB = np.round(255.0 * np.linspace(0.0, 1.0, 4096) ** (1.0 / _GAMMA)).astype(np.uint8)

_ray_cache: dict = {}
_WORKERS = max(1, min(4, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _cast(caster, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``caster.cast`` split over a few threads (Embree and numpy release the GIL: about twice
    as fast on two cores)."""
    global _pool
    count = len(directions)
    if _WORKERS == 1 or count < 20000:
        return caster.cast(origins, directions)
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="sim-cast")
    origins = np.broadcast_to(origins, directions.shape)
    bounds = np.linspace(0, count, 2 * _WORKERS + 1).astype(int)
    chunks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    results = list(_pool.map(lambda c: caster.cast(origins[c], directions[c]), chunks))
    return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]))


def pixel_rays(camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays of a camera's pixel centres in the frame that ``camera.P`` projects from.

    With P = K [I | t], the optical centre is c = -K^-1 P[:, 3] and pixel (u, v) sees the points
    c + lambda * K^-1 [u, v, 1]; lambda is then the depth w of ``PinholeCamera.project``.

    Returns:
        origin: (3,) float64 optical centre (metres).
        directions: (H * W, 3) float32 unit directions, row-major over (v, u).
        depth_per_metre: (H * W,) float32 depth w per metre along the ray.
    """
    key = (camera.P.tobytes(), camera.width, camera.height)
    if key not in _ray_cache:
        K_inv = np.linalg.inv(camera.P[:, :3])
        u, v = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
        pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1)
        directions = pixels @ K_inv.T
        norms = np.linalg.norm(directions, axis=1)
        if len(_ray_cache) > 8:
            _ray_cache.clear()
        rays = (-K_inv @ camera.P[:, 3], (directions / norms[:, None]).astype(np.float32),
                (1.0 / norms).astype(np.float32))
        for array in rays:
            array.setflags(write=False)
        _ray_cache[key] = rays
    return _ray_cache[key]


def cast_pixels(world: w.World, camera: PinholeCamera,
                world_from_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]:
    """Cast one ray per pixel.

    Args:
        world_from_camera: (4, 4) pose of the frame ``camera.P`` projects from (the camera's
            rectified optical frame; for a right stereo camera with P[0, 3] != 0, the left one's).
    Returns:
        depth: (H, W) float32 metres along this camera's optical axis, NaN where nothing is hit.
        triangle: (H * W,) int64 triangle hit, -1 for sky.
        distance: (H * W,) float32 metres along the ray, inf for sky.
        directions: (H * W, 3) float32 unit ray directions in the world frame.
    """
    pose = np.asarray(world_from_camera, np.float64)
    origin, directions, depth_per_metre = pixel_rays(camera)
    world_origin = pose[:3, :3] @ origin + pose[:3, 3]
    directions = directions @ pose[:3, :3].T.astype(np.float32)
    distance, triangle = _cast(world.caster(), world_origin, directions)
    depth = distance * depth_per_metre
    depth[triangle < 0] = np.nan
    return depth.reshape(camera.height, camera.width), triangle, distance, directions


def render_depth_only(world: w.World, camera: PinholeCamera,
                      world_from_camera: np.ndarray) -> np.ndarray:
    """(H, W) float32 ground-truth depth (metres along the optical axis, NaN for sky)."""
    return cast_pixels(world, camera, world_from_camera)[0]


def render_labels(world: w.World, camera: PinholeCamera,
                  world_from_camera: np.ndarray) -> np.ndarray:
    """(H, W) int16 semantic class per pixel (``SKY`` = 0 where nothing is hit)."""
    triangle = cast_pixels(world, camera, world_from_camera)[1]
    labels = np.zeros(len(triangle), np.int16)
    hit = triangle >= 0
    labels[hit] = world.materials[triangle[hit]]
    return labels.reshape(camera.height, camera.width)


def _hash01(points: np.ndarray, cells_per_metre: float, salt: int) -> np.ndarray:
    """(N,) float32 pseudo-random values in [0, 1), constant over cubic cells of the world
    (integer hashing of the cell index). Cells are offset by half a cell so that the flat
    surfaces the generator puts at round heights (the road at z = 0) do not lie on a cell
    boundary; truncation merges the two cells around each zero plane, which is harmless."""
    q = (points * np.float32(cells_per_metre) + np.float32(0.5)).astype(np.int32)
    h = q[:, 0] * np.int32(73856093)
    h += q[:, 1] * np.int32(19349663)
    h += q[:, 2] * np.int32(83492791) + np.int32(salt)
    h = h.view(np.uint32)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFFFF)).astype(np.float32) * np.float32(1.0 / 65536.0)


def _texture(points: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """(N,) brightness factor: grain at 3 cm cells plus blotches at 40 cm cells, anchored to the
    world so that every view of a surface sees the same texture."""
    noise = 0.6 * _hash01(points, 33.0, 0) + 0.4 * _hash01(points, 2.5, 977)
    return 1.0 + strength * (2.0 * noise - 1.0)


def _sky(world: w.World, directions: np.ndarray) -> np.ndarray:
    """(N, 3) linear sky radiance: horizon (pale) to zenith (``sky_color``) by elevation."""
    zenith = _SRGB_TO_LINEAR[world.sky_color]
    horizon = 0.55 * zenith + 0.45 * np.float32(0.9)
    up = np.clip(directions[:, 2], 0.0, 1.0) ** 0.5
    return horizon + up[:, None] * (zenith - horizon)


def render_camera(world: w.World, camera: PinholeCamera, world_from_camera: np.ndarray,
                  rng: np.random.Generator | None = None, shadows: bool = True,
                  noise: float = 1.5, blur_sigma: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image and its exact depth.

    Args:
        world: the scene.
        camera: the (rectified) camera; one ray per pixel centre.
        world_from_camera: (4, 4) pose of the frame ``camera.P`` projects from (see
            :func:`cast_pixels`).
        rng: generator for the per-pixel noise; None uses a fixed seed (deterministic output).
        shadows: cast a shadow ray towards the sun from every sunlit hit.
        noise: standard deviation of the per-pixel noise in 8-bit levels (0 = none).
        blur_sigma: Gaussian blur of the image in pixels (0 = none); depth is never blurred.
    Returns:
        rgb: (H, W, 3) uint8.
        depth: (H, W) float32 metres along this camera's optical axis (z of its optical frame),
            NaN where the ray hits nothing (sky).
    """
    depth, triangle, distance, directions = cast_pixels(world, camera, world_from_camera)
    pose = np.asarray(world_from_camera, np.float64)
    origin = (pose[:3, :3] @ pixel_rays(camera)[0] + pose[:3, 3]).astype(np.float32)
    sky = triangle < 0
    if world.triangle_count == 0:
        radiance = _sky(world, directions)
    else:
        # Shade every pixel as if it hit something (sky pixels use triangle 0 at distance 0) and
        # paint the sky over them at the end: cheaper than gathering the hits.
        tri = np.maximum(triangle, 0)
        distance = np.where(sky, np.float32(0.0), distance)
        normals = world.normals()[tri]
        away = np.einsum("ij,ij->i", normals, directions) > 0
        normals *= np.where(away, np.float32(-1.0), np.float32(1.0))[:, None]  # face the camera
        points = directions * distance[:, None]
        points += origin
        sun = world.sun_direction.astype(np.float32)
        direct = normals @ sun
        np.maximum(direct, 0.0, out=direct)
        direct[sky] = 0.0
        if world.sun_direction[2] <= 0:  # the sun below the horizon
            direct[:] = 0.0
        elif shadows and world.sun_intensity > 0:
            lit = np.flatnonzero(direct > 0)
            # Start the shadow ray a little off the surface (float32 positions, grazing rays).
            offset = np.float32(0.01) + np.float32(2e-4) * distance[lit, None]
            blocked = _cast(world.caster(), points[lit] + normals[lit] * offset,
                            np.broadcast_to(sun, (len(lit), 3)))[1] >= 0
            direct[lit[blocked]] = 0.0
        material = np.clip(world.materials, 0, len(_TEXTURE) - 1)[tri]
        # Sky light (surfaces facing up see more of the sky) plus sunlight.
        light = world.ambient * (np.float32(0.8) + np.float32(0.2) * normals[:, 2])
        light += np.float32(world.sun_intensity) * direct
        light *= _texture(points, _TEXTURE[material])
        # Haze: blend towards the horizon colour with distance.
        clear = np.exp(-distance / np.float32(max(world.visibility, 1e-3)))
        horizon = _sky(world, np.zeros((1, 3), np.float32))[0]
        radiance = _SRGB_TO_LINEAR[world.colors[tri]]
        radiance *= (light * clear)[:, None]
        radiance *= np.array([1.0, 0.97, 0.92], np.float32)  # slightly warm light
        radiance += (1.0 - clear)[:, None] * horizon
        radiance[sky] = _sky(world, directions[sky])
    index = (np.clip(radiance, 0.0, 1.0) * 4095.0 + 0.5).astype(np.int32)
    rgb = _LINEAR_TO_SRGB[index].reshape(camera.height, camera.width, 3)
    if blur_sigma > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), blur_sigma)
    if noise > 0:  # sensor noise, in brightness
        rng = np.random.default_rng(0) if rng is None else rng
        grain = rng.standard_normal((camera.height, camera.width, 1), dtype=np.float32)
        grain *= np.float32(noise)
        rgb = np.clip(rgb + grain, 0, 255).astype(np.uint8)
    return rgb, depth
