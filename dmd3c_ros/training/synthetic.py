"""Synthetic training data: a cache of simulated frames, and the crops the trainer draws from it.

One ``.npz`` per frame (uncompressed, loaded lazily), written by :func:`build_cache` from drives of
the procedural simulator (``training.sim``, front camera, KITTI-like geometry, 1242x375):

- ``rgb`` (H, W, 3) uint8; ``depth`` (H, W) float32 metres, dense ground truth, 0 = none (sky);
- ``sparse`` (H, W) float32 metres: the simulated LiDAR sweep projected with a z-buffer, 0 = none,
  and ``ring`` (H, W) uint8: the beam of each sparse pixel (255 = none), for beam-count
  augmentation (keeping every k-th ring of a 64-beam sweep gives 32, 16, 8 beams);
- ``teacher`` (H, W) float32: the simulated monocular teacher's relative inverse depth
  (:class:`~dmd3c_ros.training.teachers.SimulatedMonoTeacher`: unknown scale and shift, warp, blur,
  noise; it stands in for Depth Anything V2, whose weights cannot be fetched here);
- DMD3C stage 1: ``pseudo_depth`` (H, W) float32, the teacher's output made pseudo-metric
  (:func:`pseudo_metric_depth`), and ``pseudo_sparse`` / ``pseudo_ring``, a 64-beam sweep
  simulated from it by meshing and ray casting (:mod:`training.sim.from_depth`).

``index.json`` lists the frames with their drive seed, frame number and split. The ground truth
is never used by stage 1; the teacher map is derived from it (that is what a simulated teacher
is), which is said wherever figures are reported.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dmd3c_ros.training.images import normalise_rgb, photometric_jitter, texture_noise
from dmd3c_ros.training.lidar_augment import (BEAM_STRIDE, NO_RING, beam_footprint,  # noqa: F401
                                              keep_beams, lidar_dropout, lidar_shift,
                                              range_dropout)

CACHE_VERSION = 1


def pseudo_metric_depth(relative_inverse: np.ndarray, median_depth: float,
                        max_depth: float = 80.0) -> np.ndarray:
    """A monocular teacher's relative inverse depth -> pseudo-metric depth for stage 1.

    A relative inverse depth ``x`` is ``a / depth + b`` with unknown ``a > 0`` and ``b``. We pick
    ``b`` so that the 1st percentile of ``x`` (the far end of the scene) becomes ``1 / max_depth``
    and ``a`` so that the median becomes ``1 / median_depth``; pixels at or below the far end
    (sky) get no value (0). The result has a plausible, not a true, metric scale: stage 1 teaches
    completion geometry consistent with its own simulated sweep, not scale.
    """
    x = np.asarray(relative_inverse, np.float64)
    finite = np.isfinite(x)
    if finite.sum() < 16:
        return np.zeros(x.shape, np.float32)
    far, mid = np.percentile(x[finite], [1.0, 50.0])
    if mid - far <= 1e-9:
        return np.zeros(x.shape, np.float32)
    inv = 1.0 / max_depth + (x - far) * (1.0 / median_depth - 1.0 / max_depth) / (mid - far)
    out = np.zeros(x.shape, np.float32)
    ok = finite & (inv > 1.0 / max_depth)
    out[ok] = (1.0 / inv[ok]).astype(np.float32)
    return out


def ring_image(points: np.ndarray, camera, camera_from_lidar: np.ndarray,
               min_depth: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Sparse depth (H, W) float32 and the ring (H, W) uint8 of the point that won each pixel."""
    from dmd3c_ros.core.projection import transform_points
    h, w = camera.height, camera.width
    depth = np.zeros((h, w), np.float32)
    ring = np.full((h, w), NO_RING, np.uint8)
    if len(points) == 0:
        return depth, ring
    uv, z = camera.project(transform_points(points[:, :3], camera_from_lidar))
    with np.errstate(invalid="ignore"):
        u, v = np.rint(uv[:, 0]), np.rint(uv[:, 1])
        ok = (z >= min_depth) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z, r = u[ok].astype(np.int64), v[ok].astype(np.int64), z[ok], points[ok, 4]
    order = np.argsort(-z)  # far first: the nearest point is written last and wins
    depth[v[order], u[order]] = z[order]
    ring[v[order], u[order]] = r[order].astype(np.uint8)
    return depth, ring


@dataclass
class CacheSpec:
    """Which drives to simulate. ``splits`` maps a split name to its drive seeds."""

    splits: dict[str, list[int]]
    frames_per_drive: int = 8
    rate_hz: float = 2.0          # frames 5 m apart at the simulator's 10 m/s
    lidar: str = "hdl64"
    teacher_seed: int = 0
    extra: dict = field(default_factory=dict)


def _drive_frames(seed: int, spec: CacheSpec, lidar: str):
    from dmd3c_ros.training.sim.drive import simulate_drive
    from dmd3c_ros.training.sim.rig import make_rig
    rig = make_rig("front")
    return rig, simulate_drive(seed, spec.frames_per_drive, rig, lidar, rate_hz=spec.rate_hz)


def build_cache(out: str | Path, spec: CacheSpec, *, stage1: bool = True,
                progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Simulate every drive of ``spec`` and write one npz per frame plus ``index.json``.

    Frames already present (same name) are kept, so an interrupted build resumes. With
    ``stage1`` the pseudo-metric teacher depth and its simulated sweep are written too.
    """
    from dmd3c_ros.training.sim.from_depth import simulate_lidar_from_depth
    from dmd3c_ros.training.sim.lidar import LIDAR_MODELS
    from dmd3c_ros.training.teachers.simulated import SimulatedMonoTeacher
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = SimulatedMonoTeacher(seed=spec.teacher_seed)
    entries, total = [], sum(len(s) for s in spec.splits.values()) * spec.frames_per_drive
    start, done = time.perf_counter(), 0
    for split, seeds in spec.splits.items():
        for seed in seeds:
            names = [f"{split}_{seed:05d}_{i:03d}.npz" for i in range(spec.frames_per_drive)]
            if all((out / n).exists() for n in names):
                entries += [{"file": n, "split": split, "seed": seed, "frame": i}
                            for i, n in enumerate(names)]
                done += len(names)
                continue
            rig, frames = _drive_frames(seed, spec, spec.lidar)
            mount = rig.cameras[0]
            lidar_to_camera = rig.lidar_to_camera(mount)
            rng = np.random.default_rng([seed, 7])
            for frame, name in zip(frames, names):
                cam = frame.cameras[0]
                depth = np.nan_to_num(cam.depth, nan=0.0).astype(np.float32)
                sparse, ring = ring_image(frame.points, mount.camera, lidar_to_camera)
                arrays = {"rgb": cam.rgb, "depth": depth, "sparse": sparse, "ring": ring}
                rel = teacher.predict(cam.rgb, depth=depth, index=seed * 1000 + frame.index)
                arrays["teacher"] = rel.astype(np.float32)
                if stage1:
                    pseudo = pseudo_metric_depth(rel, float(rng.uniform(8.0, 25.0)))
                    _, pts, pose = simulate_lidar_from_depth(
                        pseudo, mount.camera, LIDAR_MODELS["hdl64"], lidar_to_camera, rng,
                        randomise_pose=True)
                    arrays["pseudo_depth"] = pseudo
                    arrays["pseudo_sparse"], arrays["pseudo_ring"] = ring_image(
                        pts, mount.camera, pose)
                np.savez(out / name, **arrays)
                entries.append({"file": name, "split": split, "seed": seed, "frame": frame.index})
                done += 1
                if progress is not None:
                    progress(done, total, time.perf_counter() - start)
    index = {"version": CACHE_VERSION, "lidar": spec.lidar, "frames_per_drive":
             spec.frames_per_drive, "rate_hz": spec.rate_hz, "teacher": teacher.name,
             "stage1": stage1, "splits": {k: list(v) for k, v in spec.splits.items()},
             "frames": entries}
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return index


def load_index(root: str | Path) -> dict:
    path = Path(root) / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the cache first "
                                f"(python -m dmd3c_ros.training.synthetic --out {root})")
    index = json.loads(path.read_text())
    if index.get("version") != CACHE_VERSION:
        raise ValueError(f"{path}: cache version {index.get('version')}, expected {CACHE_VERSION}")
    return index


@dataclass
class CropSampler:
    """Draws training crops from a cache.

    Each sample: a random ``crop`` (h, w) from the bottom ``rows`` rows (KITTI-style: the sky
    above has no depth), a horizontal flip with p = 0.5, photometric jitter, and the LiDAR thinned
    to a beam count drawn from ``beam_probs`` ({64: p, 32: p, 16: p, 8: p, 0: p}; 0 = mono).
    ``stage``: ``"pretrain"`` reads the stage-1 arrays (pseudo-metric teacher depth as target,
    its simulated sweep as input), ``"finetune"`` the real simulated sweep and ground truth.
    Depths are divided by ``depth_scale`` (network units); 0 = no value throughout.
    Deterministic for (seed, key): the trainer passes (step, rank, slot) as the key.
    """

    root: Path
    files: Sequence[str]
    stage: str
    crop: tuple[int, int] = (192, 640)
    rows: int = 352
    beam_probs: dict = field(default_factory=lambda: {64: 0.45, 32: 0.15, 16: 0.15, 8: 0.1, 0: 0.15})
    depth_scale: float = 80.0
    seed: int = 0
    jitter: bool = True
    classical: bool = False          # add "classical": the classical completion of the input
    classical_max_depth: float = 120.0   # metres, its inversion pivot (the model's range)
    point_dropout: float = 0.0       # drop up to this share of the returns (uniform per sample)
    blob_dropout: int = 0            # and up to this many blobs of returns (dark / wet surfaces)
    range_dropout: float = 0.0       # share of samples that lose far returns (range_dropout())
    lidar_shift: int = 0             # > 0: the returns move by up to this many pixels against
                                     # the image and ground truth (lidar_shift())
    footprint: int = 0               # > 0: beam_footprint() of this radius on the returns ...
    footprint_target: bool = False   # ... and on the ground truth (LiDAR-made, as KITTI's)
    texture: float = 0.0             # > 0: texture_noise() of up to this strength on the image
    holdout: float = 0.0             # > 0: this share of the input's returns held out; with
                                     # it every sample carries "returns": the sweep's returns
                                     # the input lacks (held out, thinned beams, dropped)

    def __post_init__(self):
        if self.stage not in ("pretrain", "finetune"):
            raise ValueError(f"stage must be pretrain or finetune, got {self.stage!r}")
        if not self.files:
            raise ValueError(f"no frames for this split in {self.root}")
        self.root = Path(self.root)
        total = float(sum(self.beam_probs.values()))
        self._beams = [int(b) for b in self.beam_probs]
        self._probs = [float(p) / total for p in self.beam_probs.values()]

    def __len__(self) -> int:
        return len(self.files)

    def sample(self, key: Sequence[int]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, *[int(k) for k in key]])
        name = self.files[int(rng.integers(len(self.files)))]
        data = np.load(self.root / name)
        full_rgb = data["rgb"]  # each array is read once (pretrain never reads the ground truth)
        h, w = full_rgb.shape[:2]
        ch, cw = self.crop
        top0 = max(0, h - self.rows)
        y0 = int(rng.integers(top0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        crop = (slice(y0, y0 + ch), slice(x0, x0 + cw))
        if self.stage == "pretrain":
            target, sparse, ring = data["pseudo_depth"], data["pseudo_sparse"], data["pseudo_ring"]
        else:
            target, sparse, ring = data["depth"], data["sparse"], data["ring"]
        return self.process(rng, full_rgb[crop], target[crop], sparse[crop], ring[crop],
                            data["teacher"][crop])

    def process(self, rng: np.random.Generator, rgb, target, sparse, ring, teacher, *,
                flip: bool = True) -> dict[str, np.ndarray]:
        """One crop's arrays (metres, 0 = none) -> the training sample: the LiDAR thinned and
        augmented, the image jittered, a horizontal flip with p = 0.5 (``flip``), network
        units."""
        beams = int(rng.choice(self._beams, p=self._probs))
        sweep = sparse
        sparse = keep_beams(sparse, ring, beams)
        if beams and (self.point_dropout or self.blob_dropout):
            sparse = lidar_dropout(sparse, rng, self.point_dropout, self.blob_dropout)
        if beams and self.range_dropout and rng.random() < self.range_dropout:
            sparse = range_dropout(sparse, rgb, rng)
        returns = None
        if self.holdout:  # as the real frames' LiDAR splits score a student
            if beams:
                sparse = np.where(rng.random(sparse.shape) < self.holdout, np.float32(0.0),
                                  sparse)
            returns = np.where((sweep > 0) & (sparse <= 0), sweep, np.float32(0.0))
        if beams and self.lidar_shift:  # the input moves; the returns it lacks stay put
            sparse = lidar_shift(sparse, rng, self.lidar_shift)
        if self.footprint:
            sparse = np.where(sparse > 0, beam_footprint(sparse, self.footprint),
                              np.float32(0.0))  # returns only; float32 as the cache
            if self.footprint_target:
                target = beam_footprint(target, self.footprint)
        if self.texture:
            rgb = texture_noise(rgb, rng, self.texture)
        out = {"rgb": photometric_jitter(rgb, rng) if self.jitter else rgb.astype(np.float32),
               "sparse": sparse, "target": target, "teacher": teacher}
        if returns is not None:
            out["returns"] = returns
        if flip and rng.random() < 0.5:
            out = {k: v[:, ::-1] for k, v in out.items()}
        extra = {}
        if self.classical:
            from dmd3c_ros.core.classical import classical_units
            extra["classical"] = classical_units(
                np.ascontiguousarray(out["sparse"]), max_depth=self.classical_max_depth,
                depth_scale=self.depth_scale)[None]
        if returns is not None:
            extra["returns"] = (out["returns"] / self.depth_scale)[None].astype(np.float32)
        return {**extra, "rgb": normalise_rgb(out["rgb"]),
                "sparse": (out["sparse"] / self.depth_scale)[None].astype(np.float32),
                "target": (out["target"] / self.depth_scale)[None].astype(np.float32),
                "teacher": np.ascontiguousarray(out["teacher"][None], np.float32),
                "beams": np.int64(beams)}

    def batch(self, keys: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        items = [self.sample(k) for k in keys]
        return {k: np.stack([it[k] for it in items]) for k in items[0]}


def split_files(index: dict, split: str) -> list[str]:
    return [e["file"] for e in index["frames"] if e["split"] == split]


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(description="Build the synthetic training cache.")
    p.add_argument("--out", required=True)
    p.add_argument("--train", default="0:80", help="drive seeds A:B of the training split")
    p.add_argument("--val", default="5000:5006", help="drive seeds A:B of the validation split")
    p.add_argument("--frames-per-drive", type=int, default=8)
    p.add_argument("--no-stage1", action="store_true")
    args = p.parse_args(argv)

    def seeds(text):
        a, b = (int(v) for v in text.split(":"))
        return list(range(a, b))

    spec = CacheSpec({"train": seeds(args.train), "val": seeds(args.val)},
                     frames_per_drive=args.frames_per_drive)

    def show(done, total, seconds):
        if done % 10 == 0 or done == total:
            print(f"{done}/{total} frames, {seconds:.0f} s", flush=True)

    index = build_cache(args.out, spec, stage1=not args.no_stage1, progress=show)
    print(f"{len(index['frames'])} frames in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
