"""The picture of a surround rig's seams (``dmd3c eval --nuscenes``): where two ring neighbours
see the same place, how far their depths disagree.

One tile per camera in ring order, side by side: the camera image dimmed, and on every pixel that
``core.surround.seam_map`` compares with a neighbour (both neighbours: the larger of the two),
the relative disagreement |d_a - d_b| / mean in colour, from 0 % (blue) to ``max_pct`` or more
(red), on OpenCV's TURBO map. A disagreeing seam shows as a red band at a tile's edge.
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np


TILE_WIDTH = 400      # pixels per camera tile
MAX_PCT = 20.0        # the colour scale's top, per cent


def tile(rgb: np.ndarray, pct: np.ndarray | None, label: str, *, width: int = TILE_WIDTH,
         max_pct: float = MAX_PCT) -> np.ndarray:
    """One camera's tile (RGB uint8, ``width`` wide)."""
    image = (rgb.astype(np.float32) * 0.35).astype(np.uint8)
    if pct is not None:
        seen = np.isfinite(pct)
        scaled = (np.clip(np.nan_to_num(pct, nan=0.0) / max_pct, 0, 1) * 255).astype(np.uint8)
        colored = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
        # Thicken the compared pixels so that they survive the downscale.
        factor = max(1, int(round(rgb.shape[1] / width)))
        kernel = np.ones((factor, factor), np.uint8)
        grown = cv2.dilate(seen.astype(np.uint8), kernel) > 0
        colored = cv2.dilate(colored, kernel)
        image[grown] = colored[grown]
    height = int(round(rgb.shape[0] * width / rgb.shape[1]))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
    cv2.putText(small, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    return small


def seam_picture(images: dict, seams: dict, names) -> np.ndarray:
    """The tiles of every camera of ``names`` (ring order) side by side, RGB uint8; ``seams``:
    camera -> (H, W) per cent against its neighbours (``evaluation.surround.consistency``)."""
    tiles = [tile(images[n], seams.get(n), n) for n in names]
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    return np.concatenate(tiles, axis=1)


def write_seam_picture(out_dir, label: str, images: dict, seams: dict, names) -> Path:
    """``out_dir/seams_<label>.png`` (label made file-name safe); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"seams_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}.png"
    picture = seam_picture(images, seams, names)
    if not cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


__all__ = ["MAX_PCT", "seam_picture", "tile", "write_seam_picture"]
