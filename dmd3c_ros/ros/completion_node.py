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
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dmd3c_ros.core.calibration import transform_from_quaternion
from dmd3c_ros.core.colorize import colorize_depth
from dmd3c_ros.core.config import ConfigError
from dmd3c_ros.core.projection import depth_to_points
from dmd3c_ros.core.stats import RollingStats
from dmd3c_ros.ros.adapters import (MessageError, array_to_image, camera_info_to_camera,
                                    camera_to_camera_info, image_to_rgb, pointcloud2_to_xyz,
                                    xyz_to_pointcloud2)
from dmd3c_ros.ros.diagnostics import ERROR, OK, WARN, FaultLog, make_status
from dmd3c_ros.ros.params import declare_parameters, read_config
from dmd3c_ros.ros.slot import LatestSlot
from dmd3c_ros.ros.sync import header_stamp_ns, make_synchronizers
from dmd3c_ros.runtime.base import Backend, BackendError, MonoNotSupportedError
from dmd3c_ros.runtime.factory import create_backend
from dmd3c_ros.runtime.pipeline import CompletionPipeline
from dmd3c_ros.runtime.spec import ModelSpecError

NODE_NAME = "completion_node"


class StartupError(RuntimeError):
    """The node cannot start with its parameters (the message says which and why)."""


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
            if backend is None:
                options = {}
                if self.config.backend in ("auto", "tensorrt"):
                    # A missing engine is built here, before the first frame: say so in the log.
                    # (With auto on a machine without TensorRT, create_backend drops it.)
                    options["progress"] = self.get_logger().info
                backend = create_backend(self.config.backend, self.config.model or None,
                                         precision=self.config.precision,
                                         engine_cache_dir=self.config.engine_cache_dir or None,
                                         **options)
        except (ConfigError, ModelSpecError, BackendError) as error:
            raise StartupError(str(error)) from error
        self.backend = backend
        self.pipeline = CompletionPipeline(backend, min_depth=self.config.min_depth,
                                           max_depth=self.config.max_depth)
        self._extrinsic = self.config.extrinsic
        self._tf_buffer = None
        if self._extrinsic is None:
            self._start_tf()
        self.faults = FaultLog(self.get_logger())
        self.latency_ms = RollingStats()
        # Where the latency goes (ms per frame): queued (image received -> worker starts),
        # decode, the pipeline's stages, publish.
        self.stage_ms: dict[str, RollingStats] = {}
        self._arrivals: OrderedDict[int, float] = OrderedDict()
        self._first_image: float | None = None
        self._last_sweep: float | None = None
        self._mode = "waiting"
        self._published = 0
        self._last_stamp: int | None = None
        self._published_at_last_diag = 0
        self._last_diag = time.monotonic()
        self._lock = threading.Lock()
        self._make_publishers()

        self.slot: LatestSlot[Frame] = LatestSlot()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="completion_worker", daemon=True)
        self._worker.start()

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

    # -- set-up ------------------------------------------------------------------------------
    def _make_publishers(self) -> None:
        reliability = ReliabilityPolicy.RELIABLE if self.config.qos_reliability == "reliable" \
            else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=reliability)
        self.pub_depth = self.create_publisher(Image, "depth", qos)
        self.pub_info = self.create_publisher(CameraInfo, "depth/camera_info", qos)
        spec = getattr(self.backend, "spec", None)
        self.pub_sigma = self.create_publisher(Image, "depth/uncertainty", qos) \
            if spec is not None and spec.uncertainty_output else None
        self.pub_points = self.create_publisher(PointCloud2, "depth/points", qos) \
            if self.config.publish_points else None
        self.pub_color = self.create_publisher(Image, "depth/colorized", qos) \
            if self.config.publish_colorized else None
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _start_tf(self) -> None:
        try:
            import tf2_ros
        except ImportError as error:
            raise StartupError(
                "parameter 'lidar_to_camera' is empty and tf2_ros is not installed (pip-only ROS "
                "install), so the LiDAR->camera transform cannot come from TF: set "
                "lidar_to_camera to the 16 numbers of the row-major 4x4 transform") from error
        self._tf_buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)

    # -- callbacks: tiny, never inference ---------------------------------------------------
    def _on_image_arrival(self, image: Image) -> None:
        now = time.monotonic()
        with self._lock:
            self._first_image = self._first_image or now
            self._arrivals[header_stamp_ns(image)] = now
            while len(self._arrivals) > 100:
                self._arrivals.popitem(last=False)

    def _on_sweep_arrival(self, points: PointCloud2) -> None:
        self._last_sweep = time.monotonic()

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
    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self.slot.get(timeout=0.1)
            if frame is not None and frame.points is None:
                # Camera-only frames wait out the sync slop (plus transport) for a sweep that
                # would make them a completion frame; whatever arrives meanwhile replaces them.
                grace = self.config.sync_slop + 0.1 - (time.monotonic() - frame.received)
                if grace > 0:
                    frame = self.slot.get(timeout=grace) or frame
            if frame is not None:
                self._process(frame)

    def _lidar_to_camera(self, image: Image, points: PointCloud2) -> np.ndarray:
        if self._extrinsic is not None:
            return self._extrinsic
        from rclpy.duration import Duration
        from rclpy.time import Time
        try:
            t = self._tf_buffer.lookup_transform(image.header.frame_id, points.header.frame_id,
                                                 Time(), timeout=Duration(seconds=0.05))
        except Exception as error:  # tf2 lookup, connectivity and extrapolation errors
            raise LookupError(f"no TF transform from '{points.header.frame_id}' to "
                              f"'{image.header.frame_id}': {error}") from error
        tr, q = t.transform.translation, t.transform.rotation
        return transform_from_quaternion((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))

    def _process(self, frame: Frame) -> None:
        started = time.monotonic()
        self._stage("queued", (started - frame.received) * 1000.0)  # s to ms
        try:
            rgb = image_to_rgb(frame.image)
            camera = camera_info_to_camera(frame.info)
            points, extrinsic = None, None
            if frame.points is not None:
                points = pointcloud2_to_xyz(frame.points)
                if len(points):
                    extrinsic = self._lidar_to_camera(frame.image, frame.points)
            # The uncertainty is mapped back to the image only while someone subscribes to it.
            wanted = self.pub_sigma is not None and self.pub_sigma.get_subscription_count() > 0
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
        self._stage("decode", (decoded - started) * 1000.0)  # s to ms
        for name, ms in result.timings_ms.items():
            self._stage(name, ms)
        self._publish(frame, camera, result)

    def _stage(self, name: str, ms: float) -> None:
        if name not in self.stage_ms:
            self.stage_ms[name] = RollingStats()
        self.stage_ms[name].add(ms)

    def _publish(self, frame: Frame, camera, result) -> None:
        start = time.monotonic()
        header = frame.image.header
        stamp = header_stamp_ns(frame.image)
        if stamp == self._last_stamp:
            return  # this image was answered already (camera-only, before its sweep came)
        self._last_stamp = stamp
        self.pub_depth.publish(array_to_image(result.depth, "32FC1", header))
        self.pub_info.publish(camera_to_camera_info(camera, header))
        if self.pub_sigma is not None and result.uncertainty is not None:
            self.pub_sigma.publish(array_to_image(result.uncertainty.astype(np.float32),
                                                  "32FC1", header))
        if self.pub_points is not None:
            self.pub_points.publish(xyz_to_pointcloud2(depth_to_points(result.depth, camera),
                                                       header))
        if self.pub_color is not None:
            colored = colorize_depth(result.depth, max(self.config.min_depth, 1.0),
                                     self.config.max_depth)
            self.pub_color.publish(array_to_image(colored, "rgb8", header))
        now = time.monotonic()
        self._stage("publish", (now - start) * 1000.0)  # s to ms
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
                **{f"{name}_p50_ms": stats.percentile(50)
                   for name, stats in list(self.stage_ms.items())}}

    def _publish_diagnostics(self) -> None:
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
        self.pub_diag.publish(DiagnosticArray(header=self._diag_header(), status=[status]))

    def _diag_header(self):
        from std_msgs.msg import Header
        return Header(stamp=self.get_clock().now().to_msg())

    def destroy_node(self) -> None:
        self._stop.set()
        self.slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=2.0)
        super().destroy_node()


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = CompletionNode()
        rclpy.spin(node)
    except StartupError as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
