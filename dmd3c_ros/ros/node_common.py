"""What the completion and surround nodes share: start-up (backend, TF), the depth outputs of
one camera, per-stage timing and the diagnostics header. Plain classes; each node stays one
``Node`` subclass."""
from __future__ import annotations

import threading

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from dmd3c_ros.core.calibration import transform_from_quaternion
from dmd3c_ros.core.colorize import colorize_depth
from dmd3c_ros.core.config import ConfigError, NodeConfig
from dmd3c_ros.core.process import prepare_process
from dmd3c_ros.core.projection import depth_to_points
from dmd3c_ros.core.stats import RollingStats
from dmd3c_ros.ros.adapters import array_to_image, camera_to_camera_info, xyz_to_pointcloud2
from dmd3c_ros.runtime.base import Backend, BackendError
from dmd3c_ros.runtime.factory import create_backend
from dmd3c_ros.runtime.spec import ModelSpecError


class StartupError(RuntimeError):
    """The node cannot start with its parameters (the message says which and why)."""


def create_node_backend(config: NodeConfig, logger, **options) -> Backend:
    """The backend the parameters ask for; StartupError with the reason when it cannot be made."""
    if config.backend in ("auto", "tensorrt"):
        # A missing engine is built here, before the first frame: say so in the log.
        # (With auto on a machine without TensorRT, create_backend drops it.)
        options["progress"] = logger.info
    try:
        return create_backend(config.backend, config.model or None, precision=config.precision,
                              engine_cache_dir=config.engine_cache_dir or None, **options)
    except (ConfigError, ModelSpecError, BackendError) as error:
        raise StartupError(str(error)) from error


class TfExtrinsics:
    """LiDAR -> camera transforms looked up in TF (tf2_ros; a full ROS 2 install)."""

    def __init__(self, node: Node, parameter: str) -> None:
        try:
            import tf2_ros
        except ImportError as error:
            raise StartupError(
                f"parameter '{parameter}' is empty and tf2_ros is not installed (pip-only ROS "
                "install), so the LiDAR->camera transform cannot come from TF: set "
                f"{parameter} to the 16 numbers of the row-major 4x4 transform") from error
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node)

    def lookup(self, camera_frame: str, lidar_frame: str) -> np.ndarray:
        """(4, 4) transform taking ``lidar_frame`` points into ``camera_frame``; LookupError."""
        from rclpy.duration import Duration
        from rclpy.time import Time
        try:
            t = self.buffer.lookup_transform(camera_frame, lidar_frame, Time(),
                                             timeout=Duration(seconds=0.05))
        except Exception as error:  # tf2 lookup, connectivity and extrapolation errors
            raise LookupError(f"no TF transform from '{lidar_frame}' to '{camera_frame}': "
                              f"{error}") from error
        tr, q = t.transform.translation, t.transform.rotation
        return transform_from_quaternion((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))


def output_qos(reliability: str) -> QoSProfile:
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" \
        else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=policy)


class DepthOutputs:
    """The depth topics of one camera under ``prefix`` ("" or "<camera>/"): ``depth``,
    ``depth/camera_info``, ``depth/uncertainty`` (when the model predicts it) and, when asked
    for, ``depth/points`` and ``depth/colorized``."""

    def __init__(self, node: Node, prefix: str, config: NodeConfig, backend: Backend) -> None:
        qos = output_qos(config.qos_reliability)
        self.config = config
        self.depth = node.create_publisher(Image, prefix + "depth", qos)
        self.info = node.create_publisher(CameraInfo, prefix + "depth/camera_info", qos)
        spec = getattr(backend, "spec", None)
        self.sigma = node.create_publisher(Image, prefix + "depth/uncertainty", qos) \
            if spec is not None and spec.uncertainty_output else None
        self.points = node.create_publisher(PointCloud2, prefix + "depth/points", qos) \
            if config.publish_points else None
        self.color = node.create_publisher(Image, prefix + "depth/colorized", qos) \
            if config.publish_colorized else None

    def wants_uncertainty(self) -> bool:
        """The uncertainty is mapped back to the image only while someone subscribes to it."""
        return self.sigma is not None and self.sigma.get_subscription_count() > 0

    def publish(self, header: Header, camera, result) -> None:
        """One FrameResult (pipeline) with the input image's header."""
        self.depth.publish(array_to_image(result.depth, "32FC1", header))
        self.info.publish(camera_to_camera_info(camera, header))
        if self.sigma is not None and result.uncertainty is not None:
            self.sigma.publish(array_to_image(result.uncertainty.astype(np.float32), "32FC1",
                                              header))
        if self.points is not None:
            self.points.publish(xyz_to_pointcloud2(depth_to_points(result.depth, camera),
                                                   header))
        if self.color is not None:
            colored = colorize_depth(result.depth, max(self.config.min_depth, 1.0),
                                     self.config.max_depth)
            self.color.publish(array_to_image(colored, "rgb8", header))


class StageTimes:
    """Rolling milliseconds per named stage of a worker."""

    def __init__(self) -> None:
        self.stats: dict[str, RollingStats] = {}

    def add(self, name: str, ms: float) -> None:
        if name not in self.stats:
            self.stats[name] = RollingStats()
        self.stats[name].add(ms)

    def p50s(self) -> dict[str, float]:
        """{"<stage>_p50_ms": ms} for the diagnostics."""
        return {f"{name}_p50_ms": stats.percentile(50) for name, stats in
                list(self.stats.items())}


def stamped_now(node: Node) -> Header:
    return Header(stamp=node.get_clock().now().to_msg())


def run_node(node_class: type[Node], name: str, args=None) -> int:
    """A node's ``main``: init, spin until Ctrl-C / shutdown, clean up; 1 when it cannot
    start (the reason logged as fatal)."""
    settings = prepare_process()   # before the first frame's arrays (core.process)
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        for line in settings.values():
            node.get_logger().info(line)
        rclpy.spin(node)
    except StartupError as error:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {error}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


class Worker:
    """A node's worker thread: runs ``target(stopping)`` (a threading.Event it must watch) until
    ``stop``; ``stop`` also closes the node's slot so that a waiting ``get`` returns at once."""

    def __init__(self, target, name: str, slot) -> None:
        self.stopping = threading.Event()
        self._slot = slot
        self._thread = threading.Thread(target=target, args=(self.stopping,), name=name,
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self.stopping.set()
        self._slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
