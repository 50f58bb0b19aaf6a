"""completion_node: synchronized camera + LiDAR in, dense metric depth out (DESIGN.md contract).

Subscriptions (sensor-data QoS): ``image``, ``camera_info``, ``points``, approximate-time
synchronised within ``sync_slop``. Callbacks only hand the frame to a worker thread through a
one-slot drop-oldest queue; the worker decodes, projects, infers and publishes ``depth`` (32FC1
metres, the image's header), ``depth/camera_info``, ``depth/uncertainty`` (when the model gives
it and the topic has a subscriber), optionally ``depth/points`` and ``depth/colorized``, and
``/diagnostics`` once a second (with the p50 milliseconds of each stage of the worker).
Without LiDAR for ``lidar_timeout`` seconds, a model that supports it runs camera-only (mono).
"""
from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dmd3c_ros.core.config import ConfigError
from dmd3c_ros.core.stats import RollingStats
from dmd3c_ros.ros.adapters import (MessageError, camera_info_to_camera, image_to_rgb,
                                    pointcloud2_to_xyz)
from dmd3c_ros.ros.diagnostics import ERROR, OK, WARN, FaultLog, make_status
from dmd3c_ros.ros.node_common import (DepthOutputs, StageTimes, StartupError, TfExtrinsics,
                                       Worker, create_node_backend, run_node, stamped_now)
from dmd3c_ros.ros.params import declare_parameters, read_config
from dmd3c_ros.ros.slot import LatestSlot
from dmd3c_ros.ros.sync import header_stamp_ns, make_synchronizers
from dmd3c_ros.runtime.base import Backend, MonoNotSupportedError
from dmd3c_ros.runtime.pipeline import CompletionPipeline

NODE_NAME = "completion_node"
CLOCK_JUMP_S = 1.0  # a stamp this far behind the last one published: a bag loop, not disorder
__all__ = ["CompletionNode", "StartupError", "main"]


@dataclass
class Frame:
    image: Image
    info: CameraInfo
    points: PointCloud2 | None  # None: camera-only frame (LiDAR timed out)
    received: float             # time.monotonic() when the image arrived


class CompletionNode(Node):
    """One camera + one LiDAR -> dense depth. ``backend`` injects a ready backend (tests)."""

    def __init__(self, *, backend: Backend | None = None, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        declare_parameters(self)
        try:
            self.config = read_config(self)
        except ConfigError as error:
            raise StartupError(str(error)) from error
        if backend is None:
            backend = create_node_backend(self.config, self.get_logger())
        self.backend = backend
        self.pipeline = CompletionPipeline(backend, min_depth=self.config.min_depth,
                                           max_depth=self.config.max_depth)
        self._extrinsic = self.config.extrinsic
        self._tf = TfExtrinsics(self, "lidar_to_camera") if self._extrinsic is None else None
        self.faults = FaultLog(self.get_logger())
        self.latency_ms = RollingStats()
        # Where the latency goes (ms per frame): queued (image received -> worker starts),
        # decode, the pipeline's stages, publish.
        self.stages = StageTimes()
        self._arrivals: OrderedDict[int, float] = OrderedDict()
        self._first_image: float | None = None
        self._last_image: float | None = None
        self._last_sweep: float | None = None
        self._input_stamps = {"image": None, "points": None}  # newest header stamps, ns
        self._last_paired: float | None = None
        self._mode = "waiting"
        self._published = 0
        self._last_stamp: int | None = None
        self._published_at_last_diag = 0
        self._last_diag = time.monotonic()
        self._lock = threading.Lock()
        self.outputs = DepthOutputs(self, "", self.config, backend)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self.slot: LatestSlot[Frame] = LatestSlot()
        self._worker = Worker(self._work, "completion_worker", self.slot)

        self.sync = make_synchronizers(
            self, [(Image, "image"), (CameraInfo, "camera_info"), (PointCloud2, "points")],
            qos_profile_sensor_data,
            groups=[([0, 1, 2], self.config.queue_size, self.config.sync_slop, self._on_frame),
                    ([0, 1], self.config.queue_size, self.config.sync_slop, self._on_camera)],
            extra_callbacks={0: self._on_image_arrival, 2: self._on_sweep_arrival})
        self.create_timer(1.0, self._publish_diagnostics)
        source = "TF" if self._extrinsic is None else "parameter lidar_to_camera"
        self.get_logger().info(
            f"backend {backend.name}, LiDAR->camera from {source}, sync slop "
            f"{self.config.sync_slop:.3f} s ({self.sync.implementation}), outputs "
            f"{self.config.qos_reliability}")

    # -- callbacks: tiny, never inference ---------------------------------------------------
    def _on_image_arrival(self, image: Image) -> None:
        now = time.monotonic()
        stamp = header_stamp_ns(image)
        with self._lock:
            self._first_image = self._first_image or now
            self._last_image = now
            self._input_stamps["image"] = stamp
            self._arrivals[stamp] = now
            while len(self._arrivals) > 100:
                self._arrivals.popitem(last=False)

    def _on_sweep_arrival(self, points: PointCloud2) -> None:
        self._last_sweep = time.monotonic()
        self._input_stamps["points"] = header_stamp_ns(points)

    def _arrival(self, image: Image) -> float:
        with self._lock:
            return self._arrivals.pop(header_stamp_ns(image), time.monotonic())

    def lidar_age(self) -> float:
        """Seconds since the last sweep arrived (since the first image when none has; 0 before
        any image, so that a node started before its sensors does not cry "no LiDAR")."""
        since = self._last_sweep or self._first_image
        return 0.0 if since is None else time.monotonic() - since

    def _on_frame(self, image: Image, info: CameraInfo, points: PointCloud2) -> None:
        stamp = header_stamp_ns(image)
        self._last_paired = time.monotonic()
        # A camera-only frame of this very image (queued while its sweep was on the way) is
        # superseded, not dropped.
        self.slot.put(Frame(image, info, points, self._arrival(image)),
                      superseded=lambda old: (old.points is None
                                              and header_stamp_ns(old.image) == stamp))

    def _on_camera(self, image: Image, info: CameraInfo) -> None:
        if self.lidar_age() <= self.config.lidar_timeout:
            return  # the three-way synchronizer serves this image
        if not self.pipeline.supports_mono:
            self._mode = "stopped: no LiDAR"
            self.faults.report("no_lidar", WARN, (
                f"no LiDAR sweep for {self.lidar_age():.1f} s and backend '{self.backend.name}' "
                "cannot complete without LiDAR: not publishing until LiDAR returns"))
            return
        self.slot.put(Frame(image, info, None, self._arrival(image)))

    # -- worker ------------------------------------------------------------------------------
    def _work(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            frame = self.slot.get(timeout=0.1)
            if frame is not None and frame.points is None:
                # Camera-only frames wait out the sync slop (plus transport) for a sweep that
                # would make them a completion frame; whatever arrives meanwhile replaces them.
                grace = self.config.sync_slop + 0.1 - (time.monotonic() - frame.received)
                if grace > 0:
                    frame = self.slot.get(timeout=grace) or frame
            if frame is not None:
                try:
                    self._process(frame)
                except Exception as error:  # e.g. publishing: the worker must keep running
                    self.faults.report("internal", ERROR, f"frame failed: {error!r}")

    def _lidar_to_camera(self, image: Image, points: PointCloud2) -> np.ndarray:
        if self._extrinsic is not None:
            return self._extrinsic
        return self._tf.lookup(image.header.frame_id, points.header.frame_id)

    def _process(self, frame: Frame) -> None:
        started = time.monotonic()
        self.stages.add("queued", (started - frame.received) * 1000.0)  # s to ms
        try:
            rgb = image_to_rgb(frame.image)
            camera = camera_info_to_camera(frame.info)
            points, extrinsic = None, None
            if frame.points is not None:
                points = pointcloud2_to_xyz(frame.points)
                if len(points):
                    extrinsic = self._lidar_to_camera(frame.image, frame.points)
            wanted = self.outputs.wants_uncertainty()
            decoded = time.monotonic()
            result = self.pipeline.run(rgb, camera, points, extrinsic, uncertainty=wanted)
        except MessageError as error:
            self.faults.report("bad_input", ERROR, f"frame skipped: {error}")
            return
        except MonoNotSupportedError as error:
            self._mode = "stopped: no LiDAR"
            self.faults.report("no_lidar", WARN, f"frame skipped: {error}")
            return
        except (ValueError, LookupError) as error:
            self.faults.report("bad_frame", ERROR, f"frame skipped: {error}")
            return
        except Exception as error:  # a backend failure must not end the worker
            self.faults.report("internal", ERROR, f"frame failed: {error!r}")
            return
        self.stages.add("decode", (decoded - started) * 1000.0)  # s to ms
        for name, ms in result.timings_ms.items():
            self.stages.add(name, ms)
        self._publish(frame, camera, result)

    def _publish(self, frame: Frame, camera, result) -> None:
        start = time.monotonic()
        header = frame.image.header
        stamp = header_stamp_ns(frame.image)
        if stamp == self._last_stamp:
            return  # this image was answered already (camera-only, before its sweep came)
        if self._last_stamp is not None and stamp < self._last_stamp:
            back = (self._last_stamp - stamp) / 1e9  # ns to s
            if back <= CLOCK_JUMP_S:
                self.faults.report("out_of_order", WARN, (
                    f"frame stamped {back:.3f} s before the last one published: skipped (depth "
                    "is published in stamp order)"))
                return
            self.faults.report("clock_jump", WARN, (
                f"stamps jumped back by {back:.1f} s (a bag loop or a clock reset): publishing "
                "from the new stamps"))
        self._last_stamp = stamp
        self.outputs.publish(header, camera, result)
        now = time.monotonic()
        self.stages.add("publish", (now - start) * 1000.0)  # s to ms
        self.latency_ms.add((now - frame.received) * 1000.0)  # s to ms
        self._mode = result.mode
        self._published += 1

    # -- diagnostics -------------------------------------------------------------------------
    def status_values(self) -> dict[str, object]:
        now = time.monotonic()
        elapsed = max(now - self._last_diag, 1e-6)
        rate = (self._published - self._published_at_last_diag) / elapsed
        self._last_diag, self._published_at_last_diag = now, self._published
        latency = self.latency_ms.summary()
        return {"backend": self.backend.name, "mode": self._mode, "rate_hz": rate,
                "latency_p50_ms": latency["p50"], "latency_p95_ms": latency["p95"],
                "frames_in": self.slot.put_count, "frames_published": self._published,
                "dropped_frames": self.slot.dropped,
                "lidar_age_s": self.lidar_age() if self._last_sweep else "no sweep yet",
                "faults": self.faults.total(),
                "synchronizer": getattr(self.sync, "implementation", ""),
                **self.stages.p50s()}

    def check_inputs(self) -> None:
        """Faults that show only over time: the camera stopped; images and sweeps that arrive
        but never pair (stamps further apart than sync_slop)."""
        now = time.monotonic()
        if self._last_image is not None and now - self._last_image > self.config.camera_timeout:
            self.faults.report("no_image", WARN, (
                f"no image for {now - self._last_image:.1f} s (camera stopped?): nothing to "
                "publish until images return"))
        image_ns, points_ns = self._input_stamps["image"], self._input_stamps["points"]
        recent = (self._last_image is not None and self._last_sweep is not None
                  and now - self._last_image < 1.0 and now - self._last_sweep < 1.0)
        unpaired_for = now - (self._last_paired or self._first_image or now)
        if recent and image_ns is not None and points_ns is not None and unpaired_for > 2.0:
            apart = abs(image_ns - points_ns) / 1e9  # ns to s
            if apart > self.config.sync_slop:
                self.faults.report("unpaired", ERROR, (
                    f"image and points stamps are {apart:.3f} s apart, more than sync_slop "
                    f"{self.config.sync_slop:.3f} s: no frame pairs for {unpaired_for:.1f} s "
                    "(are the sensor clocks synchronised?)"))

    def _publish_diagnostics(self) -> None:
        self.check_inputs()
        values = self.status_values()
        faults = self.faults.active()
        if faults:
            level, message = faults[0].level, faults[0].message
        elif self._mode == "waiting":
            level, message = WARN, "waiting for synchronized image, camera_info and points"
        else:
            level, message = OK, f"{values['mode']} at {values['rate_hz']:.1f} Hz"
        status = make_status(f"{self.get_name()}: depth completion", self.backend.name, level,
                             message, values)
        self.pub_diag.publish(DiagnosticArray(header=stamped_now(self), status=[status]))

    def destroy_node(self) -> None:
        self._worker.stop()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(CompletionNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
