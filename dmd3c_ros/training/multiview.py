"""Multi-view training data for the surround student (issue 18): a synthetic six-camera rig and
pairs of crops that see the same place.

``build_surround_cache``: drives of the simulator's ``surround`` rig (six cameras like
nuScenes', ``image_scale`` of 1600x900, a VLP-32C), one npz per instant with every camera's image,
rendered depth, sweep (ring image), simulated teacher and calibration.

``PairSampler``: a training batch of B pairs of adjacent cameras of one instant. Crop a is
centred on a pixel of camera a that camera b also sees (found by carrying a's rendered depth
into b and keeping what b's own depth does not hide), crop b on where that pixel lands in b. Each
crop goes through ``CropSampler.process`` (LiDAR thinning and augmentation, photometric
jitter, classical input; no flip: it would break the geometry). ``K`` correspondences per pair
tie the two crops: pixel p of crop a (row, column), where its 3-D point lands in crop b (grid
coordinates for ``grid_sample``) and the line z_b = alpha x d_a(p) + beta that gives its depth
in camera b from a's depth at p (network units). The batch holds the a crops first, then the b
crops (2B crops), so every per-view loss applies as before; ``view_losses`` uses the rest.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import depth_to_points
from dmd3c_ros.core.surround import ring_index_pairs
from dmd3c_ros.training.synthetic import CropSampler, ring_image

SURROUND_CACHE_VERSION = 1
VISIBLE = 0.03     # a carried point is seen by b when b's own depth there is within 3 %
VAL_SEED = 5000    # the held-out pairs are the same for every run


def build_surround_cache(out, seeds: Sequence[int], *, frames_per_drive: int = 8,
                         rate_hz: float = 2.0, lidar: str = "vlp32", image_scale: float = 0.5,
                         teacher_seed: int = 0, split: str = "train",
                         progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Simulate the drives and write ``out/surround_<seed>_<frame>.npz`` plus ``index.json``;
    frames already there are kept (an interrupted build resumes). ``split``: "train" (the
    index's ``frames``) or "val" (its ``val``: held-out drives the trainer validates on); a
    build adds its frames to those of the other split already in the index."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {split!r}")
    from dmd3c_ros.training.sim.drive import simulate_drive
    from dmd3c_ros.training.sim.rig import make_rig
    from dmd3c_ros.training.teachers.simulated import SimulatedMonoTeacher
    out = Path(out)
    teacher = SimulatedMonoTeacher(seed=teacher_seed)
    old = _index_of_same_sensors(out, lidar, image_scale, teacher.name)
    out.mkdir(parents=True, exist_ok=True)
    rig = make_rig("surround", image_scale)
    names = [m.name for m in rig.cameras]
    calibration = {"P": np.stack([m.camera.P for m in rig.cameras]),   # the rig's, every frame
                   "lidar_to_camera": np.stack([rig.lidar_to_camera(m) for m in rig.cameras])}
    files, total, start = [], len(seeds) * frames_per_drive, time.perf_counter()
    for seed in seeds:
        wanted = [f"surround_{seed:05d}_{i:03d}.npz" for i in range(frames_per_drive)]
        files += wanted
        if all((out / name).exists() for name in wanted):
            continue
        drive = simulate_drive(seed, frames_per_drive, rig, lidar, rate_hz=rate_hz)
        for k, (frame, name) in enumerate(zip(drive, wanted)):
            arrays = dict(calibration)
            for i, (mount, cam) in enumerate(zip(rig.cameras, frame.cameras)):
                depth = np.nan_to_num(cam.depth, nan=0.0).astype(np.float32)
                sparse, ring = ring_image(frame.points, mount.camera,
                                          calibration["lidar_to_camera"][i])
                arrays.update({f"rgb{i}": cam.rgb, f"depth{i}": depth, f"sparse{i}": sparse,
                               f"ring{i}": ring, f"teacher{i}": teacher.predict(
                                   cam.rgb, depth=depth, index=(seed * 1000 + frame.index) * 8 + i
                               ).astype(np.float32)})
            np.savez(out / name, **arrays)
            if progress is not None:
                progress(len(files) - len(wanted) + k + 1, total, time.perf_counter() - start)
    index = {"version": SURROUND_CACHE_VERSION, "rig": "surround", "cameras": names,
             "image_scale": image_scale, "lidar": lidar, "teacher": teacher.name,
             "frames": old.get("frames", []), "val": old.get("val", [])}
    key = "frames" if split == "train" else "val"
    index[key] = sorted(set(index[key]) | set(files))
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return index


def _index_of_same_sensors(out: Path, lidar: str, image_scale: float, teacher: str) -> dict:
    """The folder's index ({} when new). A cache folder holds one LiDAR, image scale and
    teacher: adding drives of others to it would mix them silently (its frames are kept, not
    rebuilt), so that is refused."""
    index = json.loads((out / "index.json").read_text()) if (out / "index.json").exists() else {}
    had = index and (index.get("lidar"), float(index["image_scale"]), index.get("teacher"))
    if had and had != (lidar, float(image_scale), teacher):
        raise ValueError(f"{out} holds a surround cache of LiDAR {had[0]!r} at image scale "
                         f"{had[1]} with teacher {had[2]}; asked for {lidar!r} at {image_scale} "
                         f"with {teacher}: build it into another folder")
    return index


def load_surround_index(root) -> dict:
    path = Path(root) / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the surround cache first "
                                f"(python -m dmd3c_ros.training.multiview --out {root})")
    index = json.loads(path.read_text())
    if index.get("version") != SURROUND_CACHE_VERSION or index.get("rig") != "surround":
        raise ValueError(f"{path}: not a surround cache of version {SURROUND_CACHE_VERSION}")
    return index


def _camera(P: np.ndarray, depth: np.ndarray) -> PinholeCamera:
    h, w = depth.shape
    P = np.asarray(P, np.float64)
    return PinholeCamera(w, h, P[:, :3], P)


def correspondences(depth_a, P_a, a_from_lidar, depth_b, P_b, b_from_lidar):
    """Every pixel of a (rendered depth) that b sees: (rows, cols) in a, (u, v) float in b, and
    alpha, beta (metres) of z_b = alpha x d_a + beta, each (M,)."""
    camera_a, camera_b = _camera(P_a, depth_a), _camera(P_b, depth_b)
    rows, cols = np.nonzero(depth_a > 0)
    points = depth_to_points(depth_a, camera_a).astype(np.float64)   # row-major, as rows/cols
    b_from_a = np.asarray(b_from_lidar, np.float64) @ np.linalg.inv(a_from_lidar)
    rotation, shift = b_from_a[:3, :3], b_from_a[:3, 3]
    carried = points @ rotation.T + shift
    uv, z = camera_b.project(carried)                     # NaN behind b
    h, w = depth_b.shape
    with np.errstate(invalid="ignore"):
        ui, vi = np.rint(uv[:, 0]), np.rint(uv[:, 1])
        inside = (z > 1e-3) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    ui, vi = ui[inside].astype(np.int64), vi[inside].astype(np.int64)
    seen = np.zeros(len(z), bool)
    reference = depth_b[vi, ui]
    seen[inside] = (reference > 0) & (np.abs(reference - z[inside]) <= VISIBLE * z[inside])
    u, v = uv[:, 0], uv[:, 1]
    # A point at depth d along a's ray through p: X_a = d r + c, so z_b = d (R r)_z + (R c + t)_z.
    ray = points[seen] - _centre(P_a)                       # d r, with d = depth_a at p
    d = depth_a[rows[seen], cols[seen]].astype(np.float64)
    alpha = (ray @ rotation.T)[:, 2] / d
    beta = (_centre(P_a) @ rotation.T + shift)[2] * np.ones_like(alpha)
    return rows[seen], cols[seen], u[seen], v[seen], alpha, beta


def _within_sweep(found: tuple, sparse_a: np.ndarray, samples: int) -> tuple:
    """``correspondences``' arrays kept where the point of a lies at or below the top-most return
    of its column (all of them where fewer than ``samples`` would be left)."""
    rows, cols = found[0], found[1]
    returns = sparse_a > 0
    top = np.where(returns.any(axis=0), returns.argmax(axis=0), returns.shape[0])
    inside = rows >= top[cols]
    return tuple(x[inside] for x in found) if int(inside.sum()) >= samples else found


def _centre(P) -> np.ndarray:
    """The optical frame's point at depth 0 on every ray of ``P`` (-P3^-1 p4)."""
    P = np.asarray(P, np.float64)
    return -np.linalg.solve(P[:, :3], P[:, 3])


@dataclass
class PairSampler:
    """Batches of crop pairs of adjacent cameras (module docstring). ``crops``: the
    ``CropSampler`` whose ``process`` (and settings) every crop goes through."""

    root: Path
    crops: CropSampler
    crop: tuple[int, int] = (224, 320)
    samples: int = 128          # K correspondences per pair
    seed: int = 0
    files: list = field(default_factory=list)
    within_sweep: bool = False  # only points at or below the top return of their column in
                                # camera a (the sweep's gaps, not the rows above the LiDAR)

    def __post_init__(self):
        self.root = Path(self.root)
        index = load_surround_index(self.root)
        self.files = self.files or list(index["frames"])
        self.pairs = ring_index_pairs(index["cameras"])
        self.pairs += [(b, a) for a, b in self.pairs]   # either camera may be "a"

    def sample(self, key: Sequence[int]) -> tuple[dict, dict, dict]:
        rng = np.random.default_rng([self.seed, 18, *[int(k) for k in key]])
        for _ in range(20):   # an instant where the pair shares (almost) nothing: draw again
            data = np.load(self.root / self.files[int(rng.integers(len(self.files)))])
            a, b = self.pairs[int(rng.integers(len(self.pairs)))]
            found = correspondences(data[f"depth{a}"], data["P"][a], data["lidar_to_camera"][a],
                                    data[f"depth{b}"], data["P"][b], data["lidar_to_camera"][b])
            if self.within_sweep:
                found = _within_sweep(found, data[f"sparse{a}"], self.samples)
            if len(found[0]) >= self.samples:
                break
        else:
            raise ValueError(f"{self.root}: no adjacent cameras with {self.samples} shared "
                             "pixels in 20 draws")
        rows, cols, u, v, alpha, beta = found
        centre = int(rng.integers(len(rows)))
        ch, cw = self.crop
        box_a = _box(rows[centre], cols[centre], data[f"depth{a}"].shape, ch, cw)
        box_b = _box(v[centre], u[centre], data[f"depth{b}"].shape, ch, cw)
        keep = ((rows >= box_a[0]) & (rows < box_a[0] + ch) & (cols >= box_a[1])
                & (cols < box_a[1] + cw) & (v >= box_b[0]) & (v <= box_b[0] + ch - 1)
                & (u >= box_b[1]) & (u <= box_b[1] + cw - 1))
        chosen = rng.choice(np.nonzero(keep)[0], self.samples,
                            replace=int(keep.sum()) < self.samples)
        views = [self._view(rng, data, i, box) for i, box in ((a, box_a), (b, box_b))]
        scale = self.crops.depth_scale
        pair = {"xview_p": np.stack([rows[chosen] - box_a[0], cols[chosen] - box_a[1]], 1),
                # grid_sample coordinates (align_corners=True): -1 .. 1 over the crop's pixels
                "xview_q": np.stack([2.0 * (u[chosen] - box_b[1]) / (cw - 1) - 1.0,
                                     2.0 * (v[chosen] - box_b[0]) / (ch - 1) - 1.0],
                                    1).astype(np.float32),
                "xview_alpha": alpha[chosen].astype(np.float32),
                "xview_beta": (beta[chosen] / scale).astype(np.float32)}
        return views[0], views[1], pair

    def _view(self, rng, data, index: int, box) -> dict:
        y, x = box
        crop = (slice(y, y + self.crop[0]), slice(x, x + self.crop[1]))
        return self.crops.process(rng, data[f"rgb{index}"][crop], data[f"depth{index}"][crop],
                                  data[f"sparse{index}"][crop], data[f"ring{index}"][crop],
                                  data[f"teacher{index}"][crop], flip=False)

    def validation_batch(self, pairs: int = 16) -> dict[str, np.ndarray] | None:
        """``pairs`` fixed pairs of the cache's held-out drives (its ``val`` split), the crops
        without photometric jitter; None when the cache has no such drives."""
        from dataclasses import replace
        held_out = load_surround_index(self.root).get("val", [])
        if not held_out:
            return None
        # As the runtime sees a sweep: no jitter, no returns held out (comparable across runs).
        sampler = PairSampler(self.root, replace(self.crops, jitter=False, holdout=0.0),
                              crop=self.crop, samples=self.samples, seed=VAL_SEED,
                              files=list(held_out))
        return sampler.batch([(0, 0, i) for i in range(pairs)])

    def batch(self, keys: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """B pairs: the per-view arrays of the B a crops, then of the B b crops; the
        correspondences (B, K, ...)."""
        items = [self.sample(k) for k in keys]
        views = [it[0] for it in items] + [it[1] for it in items]
        out = {k: np.stack([v[k] for v in views]) for k in views[0]}
        out.update({k: np.stack([it[2][k] for it in items]) for k in items[0][2]})
        return out


def surround_figures(student, batch: dict, depth_scale: float) -> dict[str, float]:
    """Validation figures of ``student`` (eval mode) on a fixed ``PairSampler`` batch of
    held-out pairs: ``surround_xview`` (mean |log| ratio of the two views at their shared
    points), ``surround_rmse_m`` (RMSE over both crops' ground truth, metres), and the same of
    the classical input (``surround_classical_*``)."""
    import torch

    from dmd3c_ros.training.view_losses import CrossViewConsistency
    was = student.training
    student.eval()
    device = next(student.parameters()).device
    tensors = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
    try:
        with torch.no_grad():
            depth = student(tensors["rgb"], tensors["sparse"], tensors["classical"])[0]
    finally:
        student.train(was)
    target = tensors["target"]
    valid = target > 0
    figures = {}
    for name, value in (("surround", depth), ("surround_classical", tensors["classical"])):
        figures[f"{name}_xview"] = float(CrossViewConsistency()(value, tensors))
        error = (value - target)[valid & (value > 0)] * depth_scale
        figures[f"{name}_rmse_m"] = float(torch.sqrt(torch.mean(error ** 2)))
    return figures


def _box(row, col, shape, ch: int, cw: int) -> tuple[int, int]:
    """The top-left corner of a ch x cw crop centred on (row, col), inside ``shape``."""
    h, w = shape
    if h < ch or w < cw:
        raise ValueError(f"crop {ch}x{cw} is larger than the {w}x{h} image")
    return (int(np.clip(round(row) - ch // 2, 0, h - ch)),
            int(np.clip(round(col) - cw // 2, 0, w - cw)))


def main(argv=None) -> int:
    import argparse
    import sys

    from dmd3c_ros.training.sim.lidar import LIDAR_MODELS
    p = argparse.ArgumentParser(description="Build the synthetic surround-rig cache (issue 18).")
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="0:12", help="drive seeds, START:STOP (default 0:12)")
    p.add_argument("--frames", type=int, default=8, help="frames per drive")
    p.add_argument("--image-scale", type=float, default=0.5)
    p.add_argument("--lidar", default="vlp32", choices=sorted(LIDAR_MODELS),
                   help="the rig's LiDAR (default vlp32; hdl32 is nuScenes')")
    p.add_argument("--split", choices=("train", "val"), default="train",
                   help="val: held-out drives the trainer validates on (e.g. --seeds 5000:5002)")
    args = p.parse_args(argv)
    start, stop = (int(v) for v in args.seeds.split(":"))

    def progress(done, total, seconds):
        print(f"  {done}/{total} instants, {seconds:.0f} s", flush=True)

    try:
        index = build_surround_cache(args.out, list(range(start, stop)),
                                     frames_per_drive=args.frames, image_scale=args.image_scale,
                                     split=args.split, lidar=args.lidar, progress=progress)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(index['frames'])} training and {len(index['val'])} validation "
          f"instants of {len(index['cameras'])} cameras")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
