"""``dmd3c sim``: simulate a drive and write it in one of the output formats, with progress."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from dmd3c_ros.training.sim.drive import simulate_drive
from dmd3c_ros.training.sim.rig import make_rig

FORMATS = ("kitti", "kitti-sample", "rosbag2-mcap", "rosbag2-sqlite3")


def run_sim(out: str | Path, *, frames: int = 10, seed: int = 0, fmt: str = "kitti",
            lidar: str = "hdl64", rig: str = "front", image_scale: float = 1.0,
            progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Simulate ``frames`` frames and write them to ``out``; returns what was done and how fast.

    For the rosbag2 formats ``out`` is the bag folder itself (``metadata.yaml`` directly inside).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    sensors = make_rig(rig, image_scale)
    if fmt.startswith("rosbag2"):
        from dmd3c_ros.training.sim.bag_writer import BagWriter
        writer = BagWriter(out, sensors, fmt)
    else:
        from dmd3c_ros.training.sim.kitti_writer import KittiWriter
        writer = KittiWriter(out, sensors, seed, fmt)
    start = time.perf_counter()
    try:
        for frame in simulate_drive(seed, frames, sensors, lidar):
            writer.write(frame)
            if progress is not None:
                progress(frame.index + 1, frames, time.perf_counter() - start)
    finally:
        writer.close()
    seconds = time.perf_counter() - start
    return {"out": str(out), "format": fmt, "frames": frames, "seed": seed, "lidar": lidar,
            "rig": rig, "image_scale": image_scale, "cameras": [m.name for m in sensors.cameras],
            "seconds": seconds, "frames_per_second": frames / seconds}
