"""Calibration frames for INT8 (ONNX Runtime static quantisation, TensorRT entropy calibration).

A source is a KITTI-format folder (frame folders ``<frame>/image_02.png`` or the official
depth-completion layout, as ``dmd3c eval --kitti``) or a rosbag2 folder (``metadata.yaml``
inside; topics as ``dmd3c eval --bag``). :func:`calibration_samples` picks ``count`` frames
spread evenly over the source; :func:`calibration_feeds` turns them into the network's input
tensors exactly as the runtime prepares them (:class:`~dmd3c_ros.runtime.network.NetworkIO`),
so the calibrated ranges are those seen in deployment. Frames without LiDAR calibrate mono mode.

Calibrate on frames like the ones the engine will see (your own recordings); never on the
data an accuracy figure is measured on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dmd3c_ros.runtime.network import NetworkIO
from dmd3c_ros.runtime.spec import ModelSpec


class CalibrationError(ValueError):
    """The calibration source cannot give the frames asked for (the message says why)."""


@dataclass(frozen=True)
class CalibrationSample:
    """One frame: (H, W, 3) uint8 RGB and (H, W) float32 sparse metres (0 = no value)."""

    name: str
    rgb: np.ndarray
    sparse: np.ndarray


def evenly_spaced(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them when count >= total)."""
    if total <= 0 or count <= 0:
        return []
    if count >= total:
        return list(range(total))
    return sorted({int(round(i * (total - 1) / (count - 1))) for i in range(count)}) \
        if count > 1 else [total // 2]


def calibration_samples(source, *, count: int = 32, image_topic: str | None = None,
                        camera_info_topic: str | None = None, points_topic: str | None = None,
                        lidar_to_camera=None, slop: float = 0.05) -> list[CalibrationSample]:
    """Up to ``count`` frames spread evenly over a KITTI-format folder or a rosbag2 folder.

    Raises:
        CalibrationError: no such folder, an unreadable layout, a bag without ``image_topic``,
            or no frame at all.
    """
    from dmd3c_ros.evaluation.offline import detect_kind, open_bag, open_kitti
    path = Path(source)
    if not path.is_dir():
        raise CalibrationError(f"calibration source {path} is not a folder (a KITTI-format "
                               "folder or a rosbag2 folder)")
    if count < 1:
        raise CalibrationError(f"calibration needs at least one frame, asked for {count}")
    try:
        if detect_kind(path) == "bag":
            if not image_topic:
                raise CalibrationError(f"{path} is a rosbag2: name its --image-topic (and "
                                       "--points-topic for the LiDAR)")
            loaders = open_bag(path, image_topics=[image_topic],
                               camera_info_topics=[camera_info_topic] if camera_info_topic
                               else None, points_topic=points_topic, slop=slop,
                               lidar_to_camera=lidar_to_camera)
        else:
            loaders = open_kitti(path, points=False)
    except CalibrationError:
        raise
    except Exception as error:  # layout, bag and message errors of the loaders
        raise CalibrationError(f"cannot read calibration frames from {path}: {error}") from error
    items = [(loader, index) for _, loader in loaders for index in range(len(loader))]
    if not items:
        raise CalibrationError(f"{path} holds no frame to calibrate on")
    samples = []
    for i in evenly_spaced(len(items), count):
        loader, index = items[i]
        sample = loader[index]
        sparse = sample["sparse"]
        if sparse is None:
            sparse = np.zeros(sample["rgb"].shape[:2], np.float32)
        samples.append(CalibrationSample(sample["name"], sample["rgb"], sparse))
    return samples


def calibration_feeds(spec: ModelSpec, samples: list[CalibrationSample], *, batch: int = 1
                      ) -> Iterator[dict[str, np.ndarray]]:
    """{input name: (batch, C, h, w) float32} per ``batch`` samples, as the runtime feeds the
    network; a last partial batch is completed with the first samples (fixed-batch engines)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not samples:
        return
    io = NetworkIO(spec)
    for start in range(0, len(samples), batch):
        chunk = list(samples[start:start + batch])
        chunk += samples[:batch - len(chunk)]
        feeds, _ = io.prepare([s.rgb for s in chunk], [s.sparse for s in chunk])
        yield feeds


__all__ = ["CalibrationError", "CalibrationSample", "calibration_feeds", "calibration_samples",
           "evenly_spaced"]
