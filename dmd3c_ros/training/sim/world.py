"""Procedural driving scenes: triangle meshes with per-triangle albedo, semantic class and LiDAR
reflectivity, plus the scene's lighting.

A :class:`Scene` is a whole drive's world, generated from a seed by :func:`generate_scene`: a road
along +x (straight or gently curving) with lane markings, curbs, sidewalks, building facades with
windows, parked and moving vehicles, poles, signs, vegetation and pedestrians. ``Scene.at(t)`` gives
the :class:`World` (one static triangle mesh) at time ``t``; ``Scene.ego_pose(t)`` the pose of the
ego vehicle driving in the right lane. Frames follow :mod:`dmd3c_ros.training.sim` (world: x along
the road, y left, z up, road surface at z = 0; metres, seconds).

:class:`MeshBuilder` assembles meshes from boxes, cylinders, spheres, cones and quads; tests and
other modules use it to make small worlds of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .raycast import RayCaster

# Semantic classes (``World.materials``); 0 is reserved for "nothing hit" (sky).
SKY, ROAD, LANE_MARKING, CURB, SIDEWALK, TERRAIN, BUILDING, WINDOW, VEHICLE, POLE, SIGN, \
    VEGETATION, PEDESTRIAN = range(13)
MATERIAL_NAMES = ("sky", "road", "lane_marking", "curb", "sidewalk", "terrain", "building",
                  "window", "vehicle", "pole", "sign", "vegetation", "pedestrian")


def _frozen(value, dtype, shape_tail: tuple[int, ...], name: str) -> np.ndarray:
    array = np.array(value, dtype=dtype, copy=True)  # a copy: the caller's array stays writable
    if array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, shape_tail))}), "
                         f"got {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(eq=False)
class World:
    """One instant of a synthetic world: a triangle mesh and its lighting.

    Attributes:
        vertices: (V, 3) float32 positions in the world frame (metres).
        triangles: (T, 3) int32 vertex indices.
        colors: (T, 3) uint8 sRGB base albedo per triangle.
        materials: (T,) int16 semantic class per triangle (``ROAD``, ``VEHICLE``, ...).
        reflectivity: (T,) float32 LiDAR reflectivity in [0, 1] per triangle.
        sky_color: (3,) uint8 sRGB colour of the sky at the zenith (lighter towards the horizon).
        sun_direction: (3,) float64 unit vector towards the sun, world frame.
        sun_intensity: strength of direct sunlight (0 = overcast night, 1 = clear noon).
        ambient: strength of the sky's diffuse light.
        visibility: metres at which haze hides about two thirds of a surface's own colour.
    The arrays are read-only copies of what was passed (the cached ray caster relies on that).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray
    materials: np.ndarray
    reflectivity: np.ndarray
    sky_color: np.ndarray = field(default_factory=lambda: np.array([110, 160, 225], np.uint8))
    sun_direction: np.ndarray = field(default_factory=lambda: np.array([0.4, 0.3, 0.866]))
    sun_intensity: float = 0.9
    ambient: float = 0.35
    visibility: float = 800.0
    _caster: RayCaster | None = field(default=None, init=False, repr=False)
    _normals: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.vertices = _frozen(self.vertices, np.float32, (3,), "vertices")
        self.triangles = _frozen(self.triangles, np.int32, (3,), "triangles")
        self.colors = _frozen(self.colors, np.uint8, (3,), "colors")
        self.materials = _frozen(self.materials, np.int16, (), "materials")
        self.reflectivity = _frozen(self.reflectivity, np.float32, (), "reflectivity")
        count = len(self.triangles)
        for name in ("colors", "materials", "reflectivity"):
            if len(getattr(self, name)) != count:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows for {count} "
                                 "triangles")
        if count and (self.triangles.min() < 0 or self.triangles.max() >= len(self.vertices)):
            raise ValueError("triangle indices out of range")
        if count and (self.reflectivity.min() < 0 or self.reflectivity.max() > 1):
            raise ValueError("reflectivity must lie in [0, 1]")
        self.sky_color = np.asarray(self.sky_color, np.uint8).reshape(3)
        sun = np.asarray(self.sun_direction, np.float64).reshape(3)
        self.sun_direction = sun / np.linalg.norm(sun)
        self.sun_intensity, self.ambient = float(self.sun_intensity), float(self.ambient)
        self.visibility = float(self.visibility)

    @classmethod
    def empty(cls, **lighting) -> "World":
        """A world without triangles (every ray sees the sky)."""
        return cls(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                   np.zeros(0), **lighting)

    @property
    def triangle_count(self) -> int:
        return len(self.triangles)

    def lighting(self) -> dict:
        """The lighting fields, to build another world under the same sky."""
        return dict(sky_color=self.sky_color, sun_direction=self.sun_direction,
                    sun_intensity=self.sun_intensity, ambient=self.ambient,
                    visibility=self.visibility)

    def caster(self) -> RayCaster:
        """The ray caster of this mesh (built on first use, then cached)."""
        if self._caster is None:
            self._caster = RayCaster(self.vertices, self.triangles)
        return self._caster

    def normals(self) -> np.ndarray:
        """(T, 3) float32 unit normals of the triangles (winding order; renderers flip them)."""
        if self._normals is None:
            corners = self.vertices[self.triangles].astype(np.float64)
            normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
            length = np.linalg.norm(normal, axis=1, keepdims=True)
            self._normals = (normal / np.maximum(length, 1e-12)).astype(np.float32)
            self._normals.setflags(write=False)
        return self._normals


# ---------------------------------------------------------------------------------------------
# Mesh assembly


def pose_matrix(x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    """(4, 4) float64 rigid transform: rotation by ``yaw`` (radians) about z, then translation."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0, x], [s, c, 0.0, y], [0.0, 0.0, 1.0, z], [0.0, 0.0, 0.0, 1.0]])


@lru_cache(maxsize=None)
def _template(kind: str, detail: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit primitives: box of side 1 centred at 0; cylinder radius 1, z in [0, 1]; cone radius 1,
    z in [0, 1]; sphere radius 1."""
    import trimesh.creation
    if kind == "box":
        mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=1.0, height=1.0, sections=detail)
        mesh.apply_translation((0.0, 0.0, 0.5))
    elif kind == "cone":
        mesh = trimesh.creation.cone(radius=1.0, height=1.0, sections=detail)
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=detail, radius=1.0)
    else:
        raise ValueError(kind)
    vertices, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int32)
    vertices.setflags(write=False)
    faces.setflags(write=False)
    return vertices, faces


def grid_triangles(rows: int, cols: int) -> np.ndarray:
    """(2 * (rows - 1) * (cols - 1), 3) triangles of a (rows, cols) vertex grid (row-major); the two
    triangles of each cell are consecutive."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b, d, e = a + 1, a + cols, a + cols + 1
    return np.stack([np.stack([a, b, e], 1), np.stack([a, e, d], 1)], 1).reshape(-1, 3).astype(
        np.int32)


class MeshBuilder:
    """Collects mesh parts (vertices, triangles, colour, class, reflectivity) into one mesh.

    Args:
        rng: random generator for colour jitter (jitter needs one).
    """

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng
        self._parts: list[tuple[np.ndarray, ...]] = []

    def add(self, vertices, triangles, color, material: int, reflectivity: float,
            jitter: float = 0.0, group: int = 1, pose: np.ndarray | None = None) -> None:
        """Add a mesh part.

        Args:
            vertices: (V, 3) positions (metres), in the frame of ``pose`` (world when None).
            triangles: (T, 3) vertex indices into ``vertices``.
            color: (3,) sRGB colour for all triangles, or (T, 3) per triangle.
            material, reflectivity: class id and LiDAR reflectivity of all triangles.
            jitter: relative standard deviation of a random brightness change per ``group`` of
                consecutive triangles (2 for quads, so that a quad stays one colour).
            pose: optional (4, 4) transform applied to ``vertices``.
        """
        vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
        triangles = np.asarray(triangles, np.int32).reshape(-1, 3)
        if pose is not None:
            vertices = vertices @ pose[:3, :3].T + pose[:3, 3]
        count = len(triangles)
        colors = np.broadcast_to(np.asarray(color, np.float64), (count, 3)).copy()
        if jitter > 0 and count:
            groups = -(-count // group)
            gain = 1.0 + jitter * self.rng.standard_normal((groups, 1))
            tint = 1.0 + 0.3 * jitter * self.rng.standard_normal((groups, 3))
            colors *= np.repeat(gain * tint, group, axis=0)[:count]
        self._parts.append((vertices, triangles, np.clip(colors, 0, 255).astype(np.uint8),
                            np.full(count, material, np.int16),
                            np.full(count, reflectivity, np.float32)))

    def add_arrays(self, arrays: tuple[np.ndarray, ...], pose: np.ndarray | None = None) -> None:
        """Add the output of another builder's :meth:`arrays`, optionally transformed."""
        vertices = arrays[0] if pose is None else arrays[0] @ pose[:3, :3].T + pose[:3, 3]
        self._parts.append((vertices,) + tuple(arrays[1:]))

    def add_box(self, size, center, color, material: int, reflectivity: float,
                pose: np.ndarray | None = None) -> None:
        """An axis-aligned box of ``size`` (dx, dy, dz) centred at ``center`` (then ``pose``)."""
        vertices, faces = _template("box", 0)
        self.add(vertices * size + np.asarray(center, np.float64), faces, color, material,
                 reflectivity, pose=pose)

    def add_cylinder(self, radius: float, z0: float, z1: float, center_xy, color, material: int,
                     reflectivity: float, sections: int = 8,
                     pose: np.ndarray | None = None) -> None:
        """A vertical cylinder from z0 to z1 around ``center_xy``."""
        vertices, faces = _template("cylinder", sections)
        vertices = vertices * (radius, radius, z1 - z0) + (center_xy[0], center_xy[1], z0)
        self.add(vertices, faces, color, material, reflectivity, pose=pose)

    def add_cone(self, radius: float, z0: float, z1: float, center_xy, color, material: int,
                 reflectivity: float, sections: int = 8, jitter: float = 0.0,
                 pose: np.ndarray | None = None) -> None:
        vertices, faces = _template("cone", sections)
        vertices = vertices * (radius, radius, z1 - z0) + (center_xy[0], center_xy[1], z0)
        self.add(vertices, faces, color, material, reflectivity, jitter=jitter, pose=pose)

    def add_sphere(self, radii, center, color, material: int, reflectivity: float,
                   detail: int = 1, bumps: float = 0.0, jitter: float = 0.0,
                   pose: np.ndarray | None = None) -> None:
        """An ellipsoid with semi-axes ``radii``; ``bumps`` displaces vertices radially at random
        (relative), for irregular shapes such as tree crowns."""
        vertices, faces = _template("sphere", detail)
        if bumps > 0:
            vertices = vertices * (1.0 + bumps * self.rng.uniform(-1, 1, (len(vertices), 1)))
        self.add(vertices * radii + np.asarray(center, np.float64), faces, color, material,
                 reflectivity, jitter=jitter, pose=pose)

    def add_quads(self, corners, color, material: int, reflectivity: float, jitter: float = 0.0,
                  pose: np.ndarray | None = None) -> None:
        """(N, 4, 3) quads given by their corners in order around the edge; ``color`` (3,) or
        (N, 3) per quad."""
        corners = np.asarray(corners, np.float64).reshape(-1, 4, 3)
        base = 4 * np.arange(len(corners), dtype=np.int32)[:, None]
        triangles = np.stack([base + (0, 1, 2), base + (0, 2, 3)], 1).reshape(-1, 3)
        color = np.asarray(color, np.float64)
        if color.ndim == 2:
            color = np.repeat(color, 2, axis=0)
        self.add(corners.reshape(-1, 3), triangles, color, material, reflectivity, jitter=jitter,
                 group=2, pose=pose)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vertices float32, triangles int32, colors uint8, materials int16, reflectivity
        float32) of everything added so far."""
        return concatenate_meshes(self._parts)

    def build(self, **lighting) -> World:
        """The :class:`World` of everything added so far, under ``lighting`` (World's fields)."""
        return World(*self.arrays(), **lighting)


def concatenate_meshes(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                       np.ndarray]:
    """Concatenate (vertices, triangles, colors, materials, reflectivity) tuples into one."""
    parts = list(parts)
    if not parts:
        return (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32),
                np.zeros((0, 3), np.uint8), np.zeros(0, np.int16), np.zeros(0, np.float32))
    offsets = np.cumsum([0] + [len(part[0]) for part in parts[:-1]])
    return (np.concatenate([p[0] for p in parts]).astype(np.float32),
            np.concatenate([p[1] + o for p, o in zip(parts, offsets)]).astype(np.int32),
            np.concatenate([p[2] for p in parts]).astype(np.uint8),
            np.concatenate([p[3] for p in parts]).astype(np.int16),
            np.concatenate([p[4] for p in parts]).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# The road


@dataclass(frozen=True)
class Road:
    """A two-way road along +x, straight or gently curving (right-hand traffic).

    Positions on the road are (s, lateral): ``s`` is the world x of the centre line point,
    ``lateral`` the signed distance from the centre line, perpendicular to it (left positive).
    Sides are -1 (right, traffic towards +x) and +1 (left, traffic towards -x); tuples indexed
    by side hold (right, left).
    """

    lane_width: float = 3.5
    lanes_per_direction: int = 1
    parking_width: tuple[float, float] = (0.0, 0.0)
    sidewalk_width: tuple[float, float] = (3.0, 3.0)
    curb_height: float = 0.15
    curve_amplitude: float = 0.0
    curve_wavelength: float = 400.0
    curve_phase: float = 0.0

    def _k(self) -> float:
        return 2.0 * np.pi / self.curve_wavelength

    def center_y(self, s):
        """World y of the centre line at ``s`` (0 at s = 0)."""
        s = np.asarray(s, np.float64)
        return self.curve_amplitude * (np.sin(self._k() * s + self.curve_phase)
                                       - np.sin(self.curve_phase))

    def heading(self, s):
        """Yaw (radians) of the centre line at ``s``."""
        s = np.asarray(s, np.float64)
        slope = self.curve_amplitude * self._k() * np.cos(self._k() * s + self.curve_phase)
        return np.arctan(slope)

    def to_world(self, s, lateral) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) of road positions (broadcasting)."""
        s, lateral = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(lateral, np.float64))
        heading = self.heading(s)
        return s - lateral * np.sin(heading), self.center_y(s) + lateral * np.cos(heading)

    def pose(self, s: float, lateral: float, z: float = 0.0, yaw: float = 0.0) -> np.ndarray:
        """(4, 4) world_from_object of an object at (s, lateral, z), turned by ``yaw`` from the
        road's direction."""
        x, y = self.to_world(s, lateral)
        return pose_matrix(float(x), float(y), z, float(self.heading(s)) + yaw)

    def edge(self, side: int) -> float:
        """Distance from the centre line to the curb on ``side`` (positive)."""
        return self.lanes_per_direction * self.lane_width + self.parking_width[side > 0]

    def lane_center(self, side: int, index: int) -> float:
        """Signed lateral offset of lane ``index`` (0 = next to the centre line) on ``side``."""
        return side * (index + 0.5) * self.lane_width

    def _grid(self, s_values, lateral, z) -> np.ndarray:
        """(len(s), len(lateral), 3) vertices over road positions at height(s) ``z``."""
        x, y = self.to_world(np.asarray(s_values)[:, None], np.asarray(lateral)[None, :])
        return np.stack([x, y, np.broadcast_to(np.asarray(z, np.float64), x.shape)], -1)


# ---------------------------------------------------------------------------------------------
# Objects (local frames: x forward / along the road, y left, z up, ground at z = 0)

CAR_COLORS = np.array([(235, 235, 232), (190, 192, 196), (120, 122, 128), (30, 30, 34),
                       (28, 42, 92), (150, 22, 26), (32, 72, 48), (200, 186, 152),
                       (70, 110, 170), (220, 120, 30)], np.float64)
BUILDING_COLORS = np.array([(215, 200, 170), (230, 226, 212), (182, 172, 160), (150, 82, 62),
                            (205, 165, 95), (172, 192, 170), (162, 176, 196), (140, 140, 138),
                            (226, 192, 172), (120, 96, 80)], np.float64)
ROOF_COLORS = np.array([(140, 62, 46), (92, 52, 42), (72, 72, 78), (110, 90, 70)], np.float64)
GLASS = np.array((38, 44, 54), np.float64)


def _choice(rng: np.random.Generator, palette: np.ndarray, spread: float = 0.06) -> np.ndarray:
    return palette[rng.integers(len(palette))] * (1.0 + spread * rng.standard_normal(3))


def _wheels(b: MeshBuilder, xs, half_track: float, radius: float, width: float) -> None:
    vertices, faces = _template("cylinder", 10)
    # The unit cylinder's axis (z) becomes the axle (y); its circle lies in the x-z plane.
    local = np.stack([vertices[:, 0] * radius, (vertices[:, 2] - 0.5) * width,
                      vertices[:, 1] * radius + radius], 1)
    for x in xs:
        for y in (-half_track, half_track):
            b.add(local + (x, y, 0.0), faces, (24, 24, 24), VEHICLE, 0.08)


def make_vehicle(rng: np.random.Generator, kind: str = "car") -> tuple[tuple, float]:
    """A box-like vehicle (``car``, ``van`` or ``truck``) in its local frame (origin on the ground
    at the centre of its footprint). Returns (mesh arrays, length in metres)."""
    b = MeshBuilder(rng)
    color = _choice(rng, CAR_COLORS)
    refl = float(rng.uniform(0.25, 0.6))
    if kind == "car":
        length, width = rng.uniform(3.8, 4.8), rng.uniform(1.7, 1.9)
        top = 0.28 + rng.uniform(0.62, 0.78)
        b.add_box((length, width, top - 0.28), (0, 0, (top + 0.28) / 2), color, VEHICLE, refl)
        cabin, cabin_h = length * rng.uniform(0.45, 0.55), rng.uniform(0.42, 0.52)
        cx = -length * rng.uniform(0.02, 0.1)
        b.add_box((cabin, width - 0.12, cabin_h), (cx, 0, top + cabin_h / 2), GLASS, VEHICLE, 0.05)
        b.add_box((cabin - 0.25, width - 0.16, 0.05), (cx - 0.05, 0, top + cabin_h + 0.02), color,
                  VEHICLE, refl)
        _wheels(b, (length / 2 - 0.8, -length / 2 + 0.75), width / 2 - 0.12, 0.31, 0.22)
        light_z = top - 0.15
    elif kind == "van":
        length, width = rng.uniform(4.8, 5.6), rng.uniform(1.9, 2.05)
        top = rng.uniform(2.0, 2.4)
        b.add_box((length - 1.0, width, top - 0.32), (-0.5, 0, (top + 0.32) / 2), color, VEHICLE,
                  refl)
        b.add_box((1.0, width, 0.8), (length / 2 - 0.5, 0, 0.72), color, VEHICLE, refl)
        b.add_box((0.7, width + 0.02, top - 1.4), (length / 2 - 1.3, 0, (top + 1.0) / 2), GLASS,
                  VEHICLE, 0.05)
        _wheels(b, (length / 2 - 0.9, -length / 2 + 0.9), width / 2 - 0.14, 0.34, 0.24)
        light_z = 0.95
    elif kind == "truck":
        length, width = rng.uniform(7.0, 10.0), rng.uniform(2.4, 2.5)
        cab_top, cargo_top = rng.uniform(2.8, 3.2), rng.uniform(3.4, 3.9)
        b.add_box((2.2, width, cab_top - 0.5), (length / 2 - 1.1, 0, (cab_top + 0.5) / 2), color,
                  VEHICLE, refl)
        b.add_box((0.9, width + 0.02, 0.8), (length / 2 - 0.43, 0, cab_top - 0.7), GLASS, VEHICLE,
                  0.05)
        cargo = _choice(rng, CAR_COLORS[:3])
        b.add_box((length - 2.5, width, cargo_top - 1.05), (-1.25, 0, (cargo_top + 1.05) / 2),
                  cargo, VEHICLE, float(rng.uniform(0.3, 0.7)))
        b.add_box((length - 1.0, width - 0.6, 0.5), (-0.5, 0, 0.8), (40, 40, 42), VEHICLE, 0.2)
        _wheels(b, (length / 2 - 1.2, -length / 2 + 2.2, -length / 2 + 1.1), width / 2 - 0.3, 0.5,
                0.35)
        light_z = 0.9
    else:
        raise ValueError(f"unknown vehicle kind {kind!r}")
    for y in (-width / 2 + 0.25, width / 2 - 0.25):  # rear lights (retro-reflective), headlights
        b.add_box((0.05, 0.3, 0.12), (-length / 2 - 0.02, y, light_z), (170, 20, 20), VEHICLE, 0.9)
        b.add_box((0.05, 0.3, 0.12), (length / 2 + 0.02, y, light_z), (250, 245, 220), VEHICLE, 0.7)
    return b.arrays(), float(length)


def make_pedestrian(rng: np.random.Generator) -> tuple:
    """A standing person (boxes and a sphere) in its local frame, facing +x."""
    b = MeshBuilder(rng)
    h = rng.uniform(1.55, 1.92)
    legs = _choice(rng, np.array([(40, 50, 80), (30, 30, 32), (150, 130, 100), (70, 70, 75)]))
    top = rng.uniform(20, 230, 3)
    skin = _choice(rng, np.array([(235, 200, 170), (200, 150, 110), (140, 95, 65), (90, 60, 45)]))
    for y in (-0.09, 0.09):
        b.add_box((0.2, 0.14, 0.47 * h), (0, y, 0.235 * h), legs, PEDESTRIAN, 0.3)
    b.add_box((0.26, 0.42, 0.3 * h), (0, 0, 0.62 * h), top, PEDESTRIAN, 0.35)
    for y in (-0.27, 0.27):
        b.add_box((0.12, 0.1, 0.3 * h), (0.02, y, 0.6 * h), top, PEDESTRIAN, 0.35)
    b.add_sphere((0.065 * h,) * 3, (0, 0, 0.865 * h), skin, PEDESTRIAN, 0.3)
    return b.arrays()


def _tree(b: MeshBuilder, rng: np.random.Generator, pose: np.ndarray, clear: float,
          max_radius: float, conifer: bool = True) -> None:
    """A tree whose crown starts ``clear`` metres above the ground and reaches at most
    ``max_radius`` sideways (street trees keep their crowns above the traffic)."""
    green = np.array((rng.uniform(40, 95), rng.uniform(85, 135), rng.uniform(30, 60)))
    b.add_cylinder(rng.uniform(0.1, 0.2), 0.0, clear + 1.0, (0, 0), (88, 70, 52), VEGETATION,
                   0.35, pose=pose)
    if conifer and rng.random() < 0.3:
        b.add_cone(min(max_radius, rng.uniform(1.0, 2.0)), clear, clear + rng.uniform(4, 9),
                   (0, 0), green * 0.8, VEGETATION, 0.45, sections=10, jitter=0.1, pose=pose)
        return
    r = min(max_radius, rng.uniform(1.3, 2.8)) / 1.12  # 1.12: the largest bump
    radii = (r, r * rng.uniform(0.8, 1.0), r * rng.uniform(0.8, 1.3))
    b.add_sphere(radii, (0, 0, clear + 1.12 * radii[2]), green, VEGETATION, 0.45, detail=2,
                 bumps=0.12, jitter=0.12, pose=pose)


def _bush(b: MeshBuilder, rng: np.random.Generator, pose: np.ndarray) -> None:
    radii = rng.uniform((0.5, 0.4, 0.4), (1.4, 1.0, 0.9))
    green = np.array((rng.uniform(40, 90), rng.uniform(80, 125), rng.uniform(25, 55)))
    b.add_sphere(radii, (0, 0, 0.6 * radii[2]), green, VEGETATION, 0.45, bumps=0.15, jitter=0.12,
                 pose=pose)


def _window_quads(xs, z0: float, z1: float, width: float, y: float) -> np.ndarray:
    xs = np.asarray(xs, np.float64)[:, None]
    x0, x1 = xs - width / 2, xs + width / 2
    corners = [np.concatenate([a, np.full_like(a, y), np.full_like(a, z)], 1)
               for a, z in ((x0, z0), (x1, z0), (x1, z1), (x0, z1))]
    return np.stack(corners, 1)


def _building(b: MeshBuilder, rng: np.random.Generator, width: float, height: float,
              depth: float, pose: np.ndarray, gable: bool, shops: bool) -> None:
    """A building whose facade is the plane y = 0 of ``pose``'s frame, facing +y (the road)."""
    color = _choice(rng, BUILDING_COLORS, 0.08)
    b.add_box((width, depth, height + 0.5), (0, -depth / 2, height / 2 - 0.25), color, BUILDING,
              float(rng.uniform(0.3, 0.55)), pose=pose)
    if gable:
        rise = rng.uniform(1.5, 3.5)
        w, d, h = width / 2 + 0.3, depth + 0.6, height
        v = [(-w, 0.3, h), (w, 0.3, h), (w, -d + 0.3, h), (-w, -d + 0.3, h),
             (-w, -d / 2 + 0.3, h + rise), (w, -d / 2 + 0.3, h + rise)]
        t = [(0, 1, 5), (0, 5, 4), (3, 4, 5), (3, 5, 2), (0, 4, 3), (1, 2, 5)]
        b.add(v, t, _choice(rng, ROOF_COLORS), BUILDING, 0.3, pose=pose)
    floor_h = rng.uniform(2.9, 3.4)
    spacing = rng.uniform(2.3, 3.6)
    win_w, win_h = rng.uniform(0.8, min(1.7, spacing - 0.5)), rng.uniform(1.2, 1.8)
    columns = int((width - 1.0) // spacing)
    if columns < 1:
        return
    xs = (np.arange(columns) - (columns - 1) / 2) * spacing
    quads = [_window_quads(xs, k * floor_h + 0.9, k * floor_h + 0.9 + win_h, win_w, 0.03)
             for k in range(1, int((height - 0.6) // floor_h))
             if k * floor_h + 0.9 + win_h < height - 0.4]
    if shops:
        quads.append(_window_quads(xs, 0.4, 2.7, spacing * 0.82, 0.03))
    else:
        door = int(rng.integers(columns))
        quads.append(_window_quads(np.delete(xs, door), 1.0, 1.0 + win_h, win_w, 0.03))
        b.add_quads(_window_quads(xs[door:door + 1], 0.0, 2.2, 1.1, 0.03),
                    _choice(rng, np.array([(80, 55, 40), (50, 50, 55), (120, 40, 30)])),
                    BUILDING, 0.3, pose=pose)
    quads = np.concatenate(quads)
    glass = GLASS * rng.uniform(0.8, 1.3, (len(quads), 1))
    bright = rng.random(len(quads)) < 0.12  # windows reflecting the sky
    glass[bright] = rng.uniform(120, 175, (int(bright.sum()), 1)) * (0.9, 0.97, 1.05)
    b.add_quads(quads, glass, WINDOW, 0.05, pose=pose)
    if rng.random() < 0.5:  # frames: a lighter quad just behind each window
        frames = quads.copy()
        frames[:, :, 1] = 0.015
        frames[:, [0, 3], 0] -= 0.1
        frames[:, [1, 2], 0] += 0.1
        frames[:, [0, 1], 2] -= 0.1
        frames[:, [2, 3], 2] += 0.1
        b.add_quads(frames, (225, 222, 215), BUILDING, 0.5, pose=pose)


# ---------------------------------------------------------------------------------------------
# Scenes

_BEHIND_M, _AHEAD_M = 100.0, 160.0  # the static world reaches this far beyond the drive


@dataclass(frozen=True)
class Mover:
    """An object moving along the road at constant speed: its mesh in its local frame (x forward),
    its road position (s0 at t = 0, lateral, z) and signed speed along s (m/s; < 0 drives
    towards -x, facing it)."""

    arrays: tuple
    s0: float
    lateral: float
    speed: float
    z: float = 0.0
    kind: str = "car"

    def pose(self, road: Road, time_s: float) -> np.ndarray:
        return road.pose(self.s0 + self.speed * time_s, self.lateral, self.z,
                         0.0 if self.speed >= 0 else np.pi)


@dataclass(eq=False)
class Scene:
    """A whole drive's world: the static mesh, the movers and the ego vehicle's motion.

    Attributes:
        seed, length_m: what it was generated from (the ego drives ``length_m`` metres).
        road: the road geometry.
        static: the static part as a :class:`World` (carries the scene's lighting).
        movers: moving vehicles and walking pedestrians.
        ego_speed: m/s along the road; ego_lateral: the ego lane's lateral offset; ego_start_s.
    """

    seed: int
    length_m: float
    road: Road
    static: World
    movers: tuple[Mover, ...]
    ego_speed: float = 10.0
    ego_lateral: float = -1.75
    ego_start_s: float = 0.0

    @property
    def duration_s(self) -> float:
        """Seconds the ego needs to drive ``length_m``."""
        return self.length_m / self.ego_speed

    def mover_poses(self, time_s: float) -> np.ndarray:
        """(N, 4, 4) float64 world_from_object of the movers at ``time_s``."""
        return np.array([m.pose(self.road, time_s) for m in self.movers]).reshape(-1, 4, 4)

    def at(self, time_s: float) -> World:
        """The world at ``time_s`` seconds: the static part plus the movers where they are then."""
        static = self.static
        parts = [(static.vertices, static.triangles, static.colors, static.materials,
                  static.reflectivity)]
        for mover, pose in zip(self.movers, self.mover_poses(time_s)):
            vertices = mover.arrays[0] @ pose[:3, :3].T.astype(np.float32) + pose[:3, 3]
            parts.append((vertices,) + tuple(mover.arrays[1:]))
        return World(*concatenate_meshes(parts), **static.lighting())

    def ego_pose(self, time_s: float) -> np.ndarray:
        """(4, 4) float64 world_from_base of the ego vehicle (base_link on the ground, x forward,
        in the middle of the right lane) driving at ``ego_speed`` from ``ego_start_s``."""
        return self.road.pose(self.ego_start_s + self.ego_speed * time_s, self.ego_lateral)


class _Slots:
    """Road positions already taken along one line (to keep poles, trees and signs apart)."""

    def __init__(self) -> None:
        self.taken: list[float] = []

    def distance(self, s: float) -> float:
        return min((abs(s - other) for other in self.taken), default=np.inf)

    def take(self, s: float, clearance: float) -> bool:
        if any(abs(s - other) < clearance for other in self.taken):
            return False
        self.taken.append(s)
        return True


def _random_road(rng: np.random.Generator, curved: bool | None) -> Road:
    curved = rng.random() < 0.5 if curved is None else curved
    lanes = 1 if rng.random() < 0.65 else 2
    parking = tuple(float(rng.choice([0.0, rng.uniform(2.1, 2.5)], p=[0.4, 0.6]))
                    for _ in range(2))
    return Road(lane_width=float(rng.uniform(3.0, 3.6)), lanes_per_direction=lanes,
                parking_width=parking, sidewalk_width=tuple(rng.uniform(2.0, 4.5, 2).tolist()),
                curb_height=float(rng.uniform(0.1, 0.18)),
                curve_amplitude=float(rng.uniform(3.0, 10.0) * rng.choice([-1, 1])) if curved
                else 0.0,
                curve_wavelength=float(rng.uniform(300.0, 600.0)),
                curve_phase=float(rng.uniform(0, 2 * np.pi)))


def _random_lighting(rng: np.random.Generator) -> dict:
    elevation, azimuth = rng.uniform(0.25, 1.1), rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                    np.sin(elevation)])
    if rng.random() < 0.3:  # overcast
        sky = rng.uniform(165, 205) + rng.uniform(-5, 10, 3) * (0, 0.5, 1)
        return dict(sky_color=sky, sun_direction=sun, sun_intensity=rng.uniform(0.15, 0.35),
                    ambient=rng.uniform(0.6, 0.8), visibility=rng.uniform(300, 700))
    sky = rng.uniform((60, 115, 195), (120, 170, 245))
    return dict(sky_color=sky, sun_direction=sun, sun_intensity=rng.uniform(0.75, 1.05),
                ambient=rng.uniform(0.25, 0.4), visibility=rng.uniform(800, 2500))


def _line(b: MeshBuilder, road: Road, lateral: float, s0: float, s1: float, width: float,
          color, dash: tuple[float, float] | None = None) -> None:
    """A lane marking along the road, 1 cm above the asphalt (solid, or dashed (on, off))."""
    z = 0.01
    if dash is None:
        s = np.arange(s0, s1 + 2.0, 2.0)
        v = road._grid(s, (lateral - width / 2, lateral + width / 2), z).reshape(-1, 3)
        b.add(v, grid_triangles(len(s), 2), color, LANE_MARKING, 0.8)
        return
    starts = np.arange(s0, s1, dash[0] + dash[1])
    corners = np.stack([road._grid(starts + ds, [lateral + dl], z)[:, 0]
                        for ds, dl in ((0, -width / 2), (dash[0], -width / 2),
                                       (dash[0], width / 2), (0, width / 2))], 1)
    b.add_quads(corners, color, LANE_MARKING, 0.8, jitter=0.05)


def _add_road(b: MeshBuilder, road: Road, x0: float, x1: float, rng: np.random.Generator) -> None:
    s = np.arange(x0, x1 + 2.0, 2.0)
    right, left = road.edge(-1), road.edge(1)
    lateral = np.linspace(-right, left, int(np.ceil((right + left) / 0.9)) + 1)
    asphalt = rng.uniform(62, 100) * (1.0 + rng.uniform(-0.04, 0.04, 3))
    b.add(road._grid(s, lateral, 0.0).reshape(-1, 3), grid_triangles(len(s), len(lateral)),
          asphalt, ROAD, float(rng.uniform(0.08, 0.2)), jitter=0.035, group=2)
    for _ in range(rng.poisson((x1 - x0) / 25)):  # repaired patches, a little darker
        sc, lc = rng.uniform(x0, x1), rng.uniform(-right + 1, left - 1)
        ds, dl = rng.uniform(0.8, 4.0) / 2, rng.uniform(0.5, 2.0) / 2
        corners = np.stack([road._grid([sc + a], [lc + c], 0.004)[0, 0]
                            for a, c in ((-ds, -dl), (ds, -dl), (ds, dl), (-ds, dl))])
        b.add_quads(corners[None], asphalt * rng.uniform(0.7, 0.9), ROAD, 0.1)
    white = np.full(3, rng.uniform(185, 240))
    n, w = road.lanes_per_direction, road.lane_width
    if n == 1:
        _line(b, road, 0.0, x0, x1, 0.12, white, dash=(3.0, rng.uniform(5.0, 9.0)))
    else:
        for lateral in (-0.1, 0.1):
            _line(b, road, lateral, x0, x1, 0.12, white)
        for side in (-1, 1):
            _line(b, road, side * w, x0, x1, 0.12, white, dash=(3.0, 6.0))
    for side in (-1, 1):
        edge = n * w + (0.1 if road.parking_width[side > 0] else -0.3)
        _line(b, road, side * edge, x0, x1, 0.15, white)
    for sc in rng.uniform(x0 + 20, x1 - 20, rng.integers(0, 3)):  # zebra crossings
        lat = np.arange(-n * w + 0.5, n * w - 0.4, 1.0)
        corners = np.stack([road._grid([sc + a], lat + c, 0.01)[0]
                            for a, c in ((-2, 0), (2, 0), (2, 0.5), (-2, 0.5))], 1)
        b.add_quads(corners, white, LANE_MARKING, 0.8, jitter=0.05)


def _add_roadside(b: MeshBuilder, road: Road, side: int, x0: float, x1: float, style: str,
                  rng: np.random.Generator) -> None:
    """Curb, sidewalk, terrain, buildings and street furniture on one side of the road."""
    edge, walk = road.edge(side), road.sidewalk_width[side > 0]
    h = road.curb_height
    s = np.arange(x0, x1 + 2.0, 2.0)
    curb = rng.uniform(150, 200)
    face = np.concatenate([road._grid(s, [side * edge], z)[:, 0] for z in (0.0, h)])
    b.add(face, grid_triangles(2, len(s)), np.full(3, curb), CURB, 0.4)
    b.add(road._grid(s, side * np.array([edge, edge + 0.25]), h).reshape(-1, 3),
          grid_triangles(len(s), 2), np.full(3, curb * 1.05), CURB, 0.4)
    paving = _choice(rng, np.array([(165, 165, 160), (185, 175, 160), (150, 100, 85),
                                    (130, 132, 135)]), 0.05)
    s1m = np.arange(x0, x1 + 1.0, 1.0)
    lateral = side * np.linspace(edge + 0.25, edge + walk, max(2, int(walk / 0.8) + 1))
    b.add(road._grid(s1m, lateral, h).reshape(-1, 3), grid_triangles(len(s1m), len(lateral)),
          paving, SIDEWALK, 0.3, jitter=0.06, group=2)
    grass = rng.random() < 0.6
    terrain = np.array((rng.uniform(60, 95), rng.uniform(95, 130), rng.uniform(40, 60))) if grass \
        else rng.uniform(110, 150) * np.array((1.0, 0.92, 0.8))
    s4m = np.arange(x0, x1 + 4.0, 4.0)
    lateral = side * (edge + walk + np.array([0.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0]))
    b.add(road._grid(s4m, lateral, h).reshape(-1, 3), grid_triangles(len(s4m), len(lateral)),
          terrain, TERRAIN, 0.35, jitter=0.08, group=2)

    front = edge + walk  # where private ground begins
    yaw = 0.0 if side < 0 else np.pi  # object frames with +y towards the road
    urban = style == "urban" or (style == "mixed" and rng.random() < 0.5)
    setback = rng.uniform(0.0, 1.0) if urban else rng.uniform(2.5, 8.0)
    for row in range(2 if urban and rng.random() < 0.7 else 1):
        sc = x0 + rng.uniform(0, 6)
        while sc < x1:
            width = rng.uniform(10, 30) if urban else rng.uniform(8, 14)
            if rng.random() < (0.25 if urban else 0.55):  # a gap, maybe with a hedge or bushes
                gap = rng.uniform(3, 12)
                if row == 0 and gap > 5.0 and rng.random() < 0.4:
                    _tree(b, rng, road.pose(sc + gap / 2, side * (front + setback
                                                                   + rng.uniform(2.5, 5.0)), h),
                          rng.uniform(1.2, 2.5), min(gap / 2 - 0.5, 2.3))
                elif row == 0 and rng.random() < 0.5:
                    b.add_box((gap * 0.9, 0.8, rng.uniform(0.8, 1.6)), (0, 0.4, 0.5),
                              (55, 95, 45), VEGETATION, 0.45,
                              pose=road.pose(sc + gap / 2, side * (front + setback), h, yaw))
                sc += gap
                continue
            back = row * rng.uniform(25, 40)
            height = rng.uniform(9, 26) if urban else rng.uniform(4.5, 8.0)
            pose = road.pose(sc + width / 2, side * (front + setback + back
                                                      + rng.uniform(0, 1.5)), h, yaw)
            _building(b, rng, width, height, rng.uniform(8, 16), pose,
                      gable=not urban and rng.random() < 0.8, shops=urban and rng.random() < 0.6)
            if not urban and row == 0 and setback > 2.0:
                for _ in range(rng.integers(0, 3)):
                    _bush(b, rng, road.pose(sc + rng.uniform(0, width),
                                            side * (front + rng.uniform(0.8, setback - 0.5)), h))
            sc += width + (0.0 if urban else rng.uniform(0.5, 3.0))

    slots = _Slots()
    lamp_gap = rng.uniform(25, 40)
    for sl in np.arange(x0 + rng.uniform(0, lamp_gap), x1, lamp_gap):  # street lamps
        slots.take(sl, 0.0)
        pose = road.pose(sl, side * (edge + 0.5), h, yaw)
        top = rng.uniform(6.0, 8.0)
        b.add_cylinder(0.08, 0.0, top, (0, 0), (95, 100, 98), POLE, 0.5, pose=pose)
        b.add_box((0.1, 1.6, 0.1), (0, 0.8, top - 0.05), (95, 100, 98), POLE, 0.5, pose=pose)
        b.add_box((0.3, 0.55, 0.14), (0, 1.55, top - 0.14), (200, 200, 190), POLE, 0.6, pose=pose)
    if walk >= 2.4 and rng.random() < 0.55:  # trees along the curb
        gap = rng.uniform(8, 15)
        for st in np.arange(x0 + rng.uniform(0, gap), x1, gap):
            room = slots.distance(st) - 0.4
            if rng.random() < 0.85 and room > 1.2 and slots.take(st, 0.0):
                _tree(b, rng, road.pose(st, side * (edge + 0.9), h), rng.uniform(4.3, 5.0),
                      room, conifer=False)
    for _ in range(rng.poisson((x1 - x0) / 45)):  # traffic signs
        ss = rng.uniform(x0, x1)
        if not slots.take(ss, 2.0):
            continue
        pose = road.pose(ss, side * (edge + 0.35), h, rng.uniform(-0.1, 0.1))
        top = rng.uniform(2.0, 2.6)
        b.add_cylinder(0.035, 0.0, top + 0.3, (0, 0), (150, 150, 150), POLE, 0.5, pose=pose)
        color = _choice(rng, np.array([(200, 30, 30), (30, 70, 170), (235, 235, 235),
                                       (240, 200, 40)]), 0.03)
        if rng.random() < 0.5:
            b.add_box((0.04, 0.6, 0.6), (0.05, 0, top), color, SIGN, 0.95, pose=pose)
        else:
            vertices, faces = _template("cylinder", 16)
            disc = np.stack([(vertices[:, 2] - 0.5) * 0.04 + 0.05, vertices[:, 0] * 0.32,
                             vertices[:, 1] * 0.32 + top], 1)
            b.add(disc, faces, color, SIGN, 0.95, pose=pose)
    for _ in range(rng.poisson((x1 - x0) / 20)):  # people standing on the sidewalk
        pose = road.pose(rng.uniform(x0, x1), side * (edge + rng.uniform(1.45, walk - 0.4)), h,
                         rng.uniform(-np.pi, np.pi))
        b.add_arrays(make_pedestrian(rng), pose)

    width = road.parking_width[side > 0]
    if width > 0:  # parked cars along the curb, facing the traffic of this side
        sp = x0 + rng.uniform(0, 10)
        while sp < x1:
            if rng.random() < 0.35:
                sp += rng.uniform(5, 25)
                continue
            arrays, length = make_vehicle(rng, "car" if rng.random() < 0.85 else "van")
            lateral = side * (edge - width / 2 + rng.uniform(-0.05, 0.05))
            b.add_arrays(arrays, road.pose(sp + length / 2, lateral, 0.0,
                                           yaw + rng.uniform(-0.04, 0.04)))
            sp += length + rng.uniform(0.6, 3.0)


def _traffic(road: Road, rng: np.random.Generator, x0: float, x1: float, duration: float,
             ego_speed: float, ego_start: float, density: float) -> list[Mover]:
    """Vehicles in every lane, one constant speed per lane (so that none runs into another); the
    ego lane only holds vehicles ahead of the ego that are faster than it."""
    movers = []
    n = road.lanes_per_direction
    for side in (-1, 1):
        for index in range(n):
            ego_lane = side < 0 and index == n - 1
            speed = rng.uniform(ego_speed + 0.5, ego_speed + 3.0) if ego_lane \
                else rng.uniform(7.0, 14.0)
            if side < 0:
                lo, hi = (ego_start + 12.0 if ego_lane else x0 - speed * duration), x1
            else:
                lo, hi = x0, x1 + speed * duration
            s = lo + rng.uniform(0, 20)
            while s < hi:
                kind = rng.choice(["car", "van", "truck"], p=[0.75, 0.17, 0.08])
                arrays, length = make_vehicle(rng, str(kind))
                movers.append(Mover(arrays, float(s + length / 2),
                                    road.lane_center(side, index) + rng.uniform(-0.2, 0.2),
                                    -side * speed, 0.0, str(kind)))
                s += length + rng.uniform(6.0, 45.0) / density
    return movers


def _walkers(road: Road, rng: np.random.Generator, x0: float, x1: float) -> list[Mover]:
    """People walking along the sidewalks: one line per direction where the sidewalk is wide
    enough for two, else one line one way (so that walkers do not walk through each other)."""
    movers = []
    for side in (-1, 1):
        edge, walk = road.edge(side), road.sidewalk_width[side > 0]
        lines = [(walk - 0.45, 1.0), (walk - 1.15, -1.0)] if walk >= 2.6 \
            else [(walk - 0.45, float(rng.choice([-1.0, 1.0])))]
        for offset, direction in lines:
            speed = direction * rng.uniform(0.9, 1.6)
            s = x0 + rng.uniform(0, 30)
            while s < x1:
                movers.append(Mover(make_pedestrian(rng), float(s), side * (edge + offset), speed,
                                    road.curb_height, "pedestrian"))
                s += rng.uniform(2.0, 80.0)
    return movers


def generate_scene(seed: int, length_m: float = 200.0, *, ego_speed: float = 10.0,
                   curved: bool | None = None, traffic: float | None = None,
                   style: str | None = None) -> Scene:
    """A random street scene for a drive of ``length_m`` metres; everything follows from ``seed``.

    Args:
        seed: random seed (same seed, same scene).
        length_m: how far the ego drives (the world reaches 100 m behind and 160 m beyond).
        ego_speed: m/s.
        curved: force a straight (False) or gently curving (True) road; None: random.
        traffic: density of moving vehicles (about 0.2 sparse to 1.5 dense); None: random.
        style: ``urban``, ``suburban`` or ``mixed`` buildings; None: random.
    """
    rng = np.random.default_rng(seed)
    road = _random_road(rng, curved)
    lighting = _random_lighting(rng)
    style = str(rng.choice(["urban", "suburban", "mixed"])) if style is None else style
    if style not in ("urban", "suburban", "mixed"):
        raise ValueError(f"style must be urban, suburban or mixed, got {style!r}")
    density = float(rng.uniform(0.3, 1.2)) if traffic is None else float(traffic)
    x0, x1 = -_BEHIND_M, length_m + _AHEAD_M
    builder = MeshBuilder(rng)
    _add_road(builder, road, x0, x1, rng)
    for side in (-1, 1):
        _add_roadside(builder, road, side, x0, x1, style, rng)
    ego_lateral = road.lane_center(-1, road.lanes_per_direction - 1)
    duration = length_m / ego_speed + 5.0
    movers = _traffic(road, rng, x0, x1, duration, ego_speed, 0.0, max(density, 1e-3)) \
        + _walkers(road, rng, x0, x1)
    return Scene(int(seed), float(length_m), road, builder.build(**lighting), tuple(movers),
                 float(ego_speed), float(ego_lateral), 0.0)
