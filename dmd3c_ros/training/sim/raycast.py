"""Ray casting against a triangle mesh with Intel Embree (through embreex): the one ray caster of
the package (camera rendering, LiDAR simulation, LiDAR from depth). No hand-written ray caster."""
from __future__ import annotations

import numpy as np


class RayCaster:
    """A static triangle mesh, ready for ray queries.

    Args:
        vertices: (V, 3) float vertex positions (metres).
        triangles: (T, 3) int vertex indices.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray) -> None:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        triangles = np.ascontiguousarray(triangles, dtype=np.int32)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or triangles.ndim != 2 \
                or triangles.shape[1] != 3:
            raise ValueError(f"vertices must be (V, 3) and triangles (T, 3), got "
                             f"{vertices.shape} and {triangles.shape}")
        if len(triangles) and (triangles.min() < 0 or triangles.max() >= len(vertices)):
            raise ValueError("triangle indices out of range")
        self.triangle_count = len(triangles)
        self._scene = rtcore_scene.EmbreeScene()
        if len(triangles):
            TriangleMesh(self._scene, vertices, triangles)

    def cast(self, origins: np.ndarray, directions: np.ndarray, max_distance: float = np.inf,
             *, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """First hit of each ray.

        Args:
            origins: (N, 3) or (3,) ray origins (metres).
            directions: (N, 3) ray directions, normalised here (distances are then metres)
                unless ``normalized`` says they already are unit vectors (saves time).
            max_distance: hits farther than this count as misses.
        Returns:
            distance: (N,) float32 metres along the ray, inf where nothing is hit.
            triangle: (N,) int64 index of the triangle hit, -1 where nothing is hit.
        """
        directions = np.ascontiguousarray(directions, dtype=np.float32).reshape(-1, 3)
        if not normalized:
            norms = np.sqrt(np.einsum("ij,ij->i", directions, directions))
            if np.any(norms == 0):
                raise ValueError("ray directions must be non-zero")
            directions = directions / norms[:, None]
        origins = np.ascontiguousarray(
            np.broadcast_to(np.asarray(origins, dtype=np.float32), directions.shape))
        count = len(directions)
        distance = np.full(count, np.inf, np.float32)
        triangle = np.full(count, -1, np.int64)
        if count == 0 or self.triangle_count == 0:
            return distance, triangle
        result = self._scene.run(origins, directions, output=1)
        hit = result["geomID"] >= 0
        distance[hit] = result["tfar"][hit]
        triangle[hit] = result["primID"][hit]
        far = distance > max_distance
        distance[far], triangle[far] = np.inf, -1
        return distance, triangle
