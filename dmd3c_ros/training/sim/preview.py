"""Pictures of generated frames for people: camera image, LiDAR overlay, ground truth.

    python -m dmd3c_ros.training.sim.preview --seed 0 --time 2.0 --out docs/images/sim_seed0.png
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from dmd3c_ros.core.colorize import colorize_depth
from dmd3c_ros.core.io import write_rgb
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.training.sim.drive import simulate_drive
from dmd3c_ros.training.sim.rig import make_rig


def preview(seed: int, frame_index: int = 20, lidar: str = "hdl64") -> np.ndarray:
    """(3H, W, 3) uint8: the image, the sweep drawn over it (colour = depth), the ground truth."""
    rig = make_rig("front")
    frame = None
    for frame in simulate_drive(seed, frame_index + 1, rig, lidar):
        pass
    cam = frame.cameras[0]
    sparse = project_to_depth(frame.points, cam.mount.camera, rig.lidar_to_camera(cam.mount))
    dots = cv2.dilate(sparse, np.ones((2, 2), np.uint8))
    overlay = (cam.rgb * 0.45).astype(np.uint8)
    colored = colorize_depth(dots, 3.0, 80.0)
    overlay[dots > 0] = colored[dots > 0]
    return np.vstack([cam.rgb, overlay, colorize_depth(cam.depth, 3.0, 80.0)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmd3c_ros.training.sim.preview",
                                     description=preview.__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame", type=int, default=20, help="frame of the drive (10 Hz)")
    parser.add_argument("--lidar", default="hdl64")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    write_rgb(args.out, preview(args.seed, args.frame, args.lidar))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
