"""Drive the completion node with recorded frames and measure what comes back.

``load_kitti_frame`` reads a KITTI depth-completion sample, ``frame_messages`` turns it into the
node's three inputs (Image, CameraInfo, PointCloud2), ``StreamDriver`` publishes them at sensor
rate and pairs every ``depth`` answer with its image by header stamp, and ``StreamReport`` holds
what was measured (answered share, latency, header checks, accuracy, the node's diagnostics).
Used by ``python -m dmd3c_ros.ros.demo`` and by the node-process tests.

Large images between processes need the shipped Fast DDS profile in *this* process as well: set
it with ``graph.setup_process_env`` before the first ROS participant of the process is
created (Fast DDS reads its profile file once per process).
"""
from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from dmd3c_ros.core.io import json_safe
from dmd3c_ros.core.kitti_sample import KittiFrame, load_kitti_frame
from dmd3c_ros.core.metrics import average_metrics, depth_metrics
from dmd3c_ros.ros.adapters import (array_to_image, camera_to_camera_info, depth_image_to_metres,
                                    xyz_to_pointcloud2)
from dmd3c_ros.ros.sync import stamp_to_ns

__all__ = ["KittiFrame", "load_kitti_frame", "frame_messages", "StreamDriver", "StreamReport",
           "FrameRecord", "SentFrame", "AnswerLedger"]

IMAGE_FRAME_ID = "camera_2_optical"
LIDAR_FRAME_ID = "velodyne"
_FROM_RGB = {  # (H, W, 3) uint8 RGB -> the pixels of an input encoding
    "rgb8": lambda rgb: rgb,
    "bgr8": lambda rgb: rgb[..., ::-1],
    "rgba8": lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
    "bgra8": lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)]),
    "mono8": lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
}



# ------------------------------------------------------------------------------------ frames

class AnswerLedger:
    """Pairs depth answers with the frames sent, by header stamp (integer nanoseconds), for the
    stream feeder and the live bag player. Answers to warm-up stamps are counted apart
    (``warm_answered``); an answer whose stamp matches no frame, or a frame's second answer, is
    counted and otherwise ignored. Frames are any objects with a ``received_s`` attribute."""

    def __init__(self) -> None:
        self.warm_stamps: set[int] = set()  # kept across runs: late warm-up answers
        self.warm_answered = 0
        self.reset()

    def reset(self) -> None:
        self.answered = self.unmatched = self.duplicates = 0

    def match(self, stamp_ns: int, frames: Mapping[int, object], received_s: float):
        """The frame answered (its ``received_s`` set), or None when this is not a first answer
        to a sent frame."""
        if stamp_ns in self.warm_stamps:
            self.warm_answered += 1
            return None
        frame = frames.get(stamp_ns)
        if frame is None:
            self.unmatched += 1
            return None
        if frame.received_s is not None:
            self.duplicates += 1
            return None
        frame.received_s = received_s
        self.answered += 1
        return frame


def time_msg(nanoseconds: int) -> Time:
    if nanoseconds < 0:
        raise ValueError(f"stamp {nanoseconds * 1e-9:.9f} s is before the epoch")
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def _restamp(messages: tuple[Image, CameraInfo, PointCloud2], stamp,
             lidar_offset_s: float) -> None:
    """Set the image and camera-info stamps to ``stamp`` and the cloud's to stamp + offset."""
    ns = stamp_to_ns(stamp)
    image, info, cloud = messages
    image.header.stamp = time_msg(ns)
    info.header.stamp = time_msg(ns)
    cloud.header.stamp = time_msg(ns + int(round(lidar_offset_s * 1e9)))  # s to ns


def frame_messages(frame: KittiFrame, stamp, *, image_frame_id: str = IMAGE_FRAME_ID,
                   lidar_frame_id: str = LIDAR_FRAME_ID, lidar_offset_s: float = 0.0,
                   encoding: str = "rgb8") -> tuple[Image, CameraInfo, PointCloud2]:
    """The node's inputs for one frame: (Image, CameraInfo, PointCloud2).

    Image and CameraInfo share one header (``stamp``, ``image_frame_id``); the cloud (x, y, z,
    intensity float32, LiDAR frame) is stamped ``stamp + lidar_offset_s`` to exercise the node's
    synchronisation. ``stamp``: builtin_interfaces/Time, rclpy Time or float seconds.
    ``encoding``: rgb8, bgr8, rgba8, bgra8 or mono8.
    """
    if encoding not in _FROM_RGB:
        raise ValueError(f"encoding {encoding!r} is not one of {', '.join(_FROM_RGB)}")
    pixels = np.ascontiguousarray(_FROM_RGB[encoding](frame.rgb))
    image = array_to_image(pixels, encoding, Header(frame_id=image_frame_id))
    info = camera_to_camera_info(frame.camera, Header(frame_id=image_frame_id))
    points = np.asarray(frame.points)
    cloud = xyz_to_pointcloud2(points[:, :3], Header(frame_id=lidar_frame_id),
                               fields={"intensity": points[:, 3]} if points.shape[1] > 3 else None)
    messages = (image, info, cloud)
    _restamp(messages, stamp, lidar_offset_s)
    return messages


# ------------------------------------------------------------------------------------ report

@dataclass
class SentFrame:
    """One published image and when its depth answer came (time.monotonic() seconds)."""

    index: int
    stamp_ns: int
    sent_s: float
    received_s: float | None = None

    @property
    def latency_ms(self) -> float | None:
        if self.received_s is None:
            return None
        return (self.received_s - self.sent_s) * 1000.0  # s to ms


@dataclass
class FrameRecord(SentFrame):
    """One frame of the stream feeder and what its answer looked like."""

    header_equal: bool | None = None   # depth header == image header (stamp and frame_id)
    encoding: str | None = None
    size: tuple[int, int] | None = None  # (width, height) of the depth image


@dataclass
class StreamReport:
    """What a stream measured. Latency is image publish -> depth received, in milliseconds: it
    includes the transport both ways, synchronisation and inference."""

    frames_sent: int
    frames_answered: int
    answered_fraction: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_max_ms: float
    headers_equal: bool          # every answer carried its image's header
    header_mismatches: int
    unmatched_depths: int        # depth messages whose stamp matched no image sent
    duplicate_depths: int        # second and later answers to one image
    encodings: dict[str, int]
    sizes: dict[str, int]        # "WxH" -> count
    metrics: dict[str, float] | None  # averaged over the kept depths (see metrics_frames)
    diagnostics: dict[str, dict]  # status name -> {level, message, values} (the latest)
    rate_hz: float
    input_encoding: str
    lidar_offset_s: float
    frames: list[FrameRecord] = field(default_factory=list)

    def diagnostic_value(self, key: str) -> str | None:
        """The latest value of diagnostics key ``key`` (case-insensitive) in any status."""
        for status in self.diagnostics.values():
            for name, value in status["values"].items():
                if name.lower() == key.lower():
                    return value
        return None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["frames"] = [{"index": r.index, "stamp_ns": r.stamp_ns, "answered": r.received_s
                          is not None, "latency_ms": r.latency_ms, "header_equal": r.header_equal}
                         for r in self.frames]
        return json_safe(out)


# ------------------------------------------------------------------------------------ driver

class StreamDriver(Node):
    """Publishes one frame over and over at ``rate_hz`` (stamped with the current clock) and
    records the node's answers.

    Inputs go out with sensor-data QoS (best effort, keep last 5), as a camera and LiDAR driver
    would. ``depth`` and ``/diagnostics`` are read best effort (keep last 10): a best-effort reader
    matches both reliable and best-effort writers, so the driver works whatever the node's
    ``qos_reliability`` is, and it never holds the node back with acknowledgements. Between
    processes this needs the shipped Fast DDS profile (module docstring).

    Spins with its own SingleThreadedExecutor in the calling thread (or ``executor``, to which
    other nodes of this process may be added, e.g. a stand-in node in a test). Call ``close``
    when done.
    """

    def __init__(self, frame: KittiFrame, *, rate_hz: float = 10.0, encoding: str = "rgb8",
                 lidar_offset_s: float = 0.0, image_frame_id: str = IMAGE_FRAME_ID,
                 lidar_frame_id: str = LIDAR_FRAME_ID, keep_first: int = 1, keep_last: int = 3,
                 topics: Mapping[str, str] | None = None, context=None,
                 executor: Executor | None = None, node_name: str = "dmd3c_stream_driver"):
        super().__init__(node_name, context=context)
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.frame, self.rate_hz, self.encoding = frame, float(rate_hz), encoding
        self.lidar_offset_s = float(lidar_offset_s)
        self.topics = {"image": "image", "camera_info": "camera_info", "points": "points",
                       "depth": "depth", "diagnostics": "/diagnostics", **(topics or {})}
        self._messages = frame_messages(  # templates, restamped at every publish
            frame, self.get_clock().now(), image_frame_id=image_frame_id,
            lidar_frame_id=lidar_frame_id, lidar_offset_s=lidar_offset_s, encoding=encoding)
        sensor = qos_profile_sensor_data
        self._pub_image = self.create_publisher(Image, self.topics["image"], sensor)
        self._pub_info = self.create_publisher(CameraInfo, self.topics["camera_info"], sensor)
        self._pub_points = self.create_publisher(PointCloud2, self.topics["points"], sensor)
        reader = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                            reliability=ReliabilityPolicy.BEST_EFFORT)
        self.create_subscription(Image, self.topics["depth"], self._on_depth, reader)
        self.create_subscription(DiagnosticArray, self.topics["diagnostics"],
                                 self._on_diagnostics, reader)
        self._own_executor = executor is None
        self._executor = executor or SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self)
        self._keep_first, self._kept_last = keep_first, deque(maxlen=keep_last)
        self._kept_first: list[tuple[int, Image]] = []
        self._diagnostics: dict[str, dict] = {}
        self._ledger = AnswerLedger()
        self._reset()

    # ------------------------------------------------------------------ state and callbacks

    def _reset(self) -> None:
        self._records: dict[int, FrameRecord] = {}  # stamp_ns -> record
        self._ledger.reset()
        self._encodings, self._sizes = Counter(), Counter()
        self._kept_first.clear()
        self._kept_last.clear()

    def _publish(self, warm_up: bool = False) -> None:
        now = self.get_clock().now()
        stamp_ns = now.nanoseconds
        _restamp(self._messages, now, self.lidar_offset_s)
        image, info, cloud = self._messages
        self._pub_points.publish(cloud)
        self._pub_info.publish(info)
        sent = time.monotonic()
        self._pub_image.publish(image)
        if warm_up:
            self._ledger.warm_stamps.add(stamp_ns)
        else:
            self._records[stamp_ns] = FrameRecord(len(self._records), stamp_ns, sent)

    def _on_depth(self, msg: Image) -> None:
        received = time.monotonic()
        record = self._ledger.match(stamp_to_ns(msg.header.stamp), self._records, received)
        if record is None:
            return
        record.header_equal = msg.header.frame_id == self._messages[0].header.frame_id
        record.encoding, record.size = msg.encoding, (int(msg.width), int(msg.height))
        self._encodings[msg.encoding] += 1
        self._sizes[f"{msg.width}x{msg.height}"] += 1
        if len(self._kept_first) < self._keep_first:
            self._kept_first.append((record.index, msg))
        else:
            self._kept_last.append((record.index, msg))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            level = status.level
            level = int.from_bytes(level, "little") if isinstance(level, bytes) else int(level)
            self._diagnostics[status.name] = {
                "level": level, "message": status.message, "hardware_id": status.hardware_id,
                "values": {kv.key: kv.value for kv in status.values}}

    # ------------------------------------------------------------------------- spinning

    def _spin_until(self, done: Callable[[], bool], timeout_s: float,
                    check: Callable[[], None] | None = None,
                    progress: Callable[[], None] | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() >= deadline:
                return False
            if check is not None:
                check()
            if progress is not None:
                progress()
            self._executor.spin_once(timeout_sec=0.02)
        return True

    def node_visible(self) -> bool:
        """The node's ``depth`` publisher and its three input subscriptions are in the graph."""
        return (self.count_publishers(self.topics["depth"]) > 0
                and all(self.count_subscribers(self.topics[name]) > 0
                        for name in ("image", "camera_info", "points")))

    def wait_until_ready(self, timeout_s: float = 60.0, *, check: Callable[[], None] | None = None,
                         warm_up: bool = True) -> float:
        """Wait until the node is in the graph and, with ``warm_up``, has answered a frame
        (warm-up frames at ``rate_hz`` are not counted in the report). ``check`` is called while
        waiting (e.g. NodeProcess.check, raising when the node died). Returns the seconds waited;
        TimeoutError after ``timeout_s``."""
        start = time.monotonic()
        if not self._spin_until(self.node_visible, timeout_s, check):
            raise TimeoutError(f"no node with a {self.topics['depth']!r} publisher and "
                               f"{self.topics['image']!r}/{self.topics['camera_info']!r}/"
                               f"{self.topics['points']!r} subscriptions appeared within "
                               f"{timeout_s:.0f} s")
        if warm_up:
            self._ledger.warm_answered = 0
            timer = self.create_timer(1.0 / self.rate_hz, lambda: self._publish(warm_up=True))
            try:
                left = timeout_s - (time.monotonic() - start)
                answered = lambda: self._ledger.warm_answered > 0  # noqa: E731
                if not self._spin_until(answered, max(left, 0.0), check):
                    raise TimeoutError(f"the node is in the graph but answered no frame on "
                                       f"{self.topics['depth']!r} within {timeout_s:.0f} s")
            finally:
                self.destroy_timer(timer)
        return time.monotonic() - start

    def run(self, *, frames: int | None = None, seconds: float | None = None,
            drain_s: float = 2.0, check: Callable[[], None] | None = None,
            progress: Callable[[int, int, float], None] | None = None,
            progress_every_s: float = 1.0) -> "StreamReport":
        """Publish ``frames`` frames (or ``seconds`` x ``rate_hz``) from a timer, then wait up to
        ``drain_s`` for the last answers, and return the report. ``progress(sent, answered,
        elapsed_s)`` is called about every ``progress_every_s`` seconds."""
        if (frames is None) == (seconds is None):
            raise ValueError("give either frames or seconds")
        total = int(frames if frames is not None else round(seconds * self.rate_hz))
        self._reset()
        start = time.monotonic()
        next_progress = [start + progress_every_s]

        def tick() -> None:
            if len(self._records) < total:
                self._publish()

        def report_progress() -> None:
            now = time.monotonic()
            if progress is not None and now >= next_progress[0]:
                next_progress[0] = now + progress_every_s
                progress(len(self._records), self._ledger.answered, now - start)

        timer = self.create_timer(1.0 / self.rate_hz, tick)
        try:
            self._spin_until(lambda: len(self._records) >= total, total / self.rate_hz + 60.0,
                             check, report_progress)
            self.destroy_timer(timer)
            timer = None
            self._spin_until(lambda: self._ledger.answered >= total, drain_s, check,
                             report_progress)
        finally:
            if timer is not None:
                self.destroy_timer(timer)
        if progress is not None:
            progress(len(self._records), self._ledger.answered, time.monotonic() - start)
        return self.report()

    # --------------------------------------------------------------------------- results

    def kept_depths(self) -> list[tuple[int, np.ndarray]]:
        """(frame index, (H, W) float32 metres) of the first and last few answers, in order."""
        return [(index, depth_image_to_metres(msg))
                for index, msg in self._kept_first + list(self._kept_last)]

    def report(self) -> StreamReport:
        records = sorted(self._records.values(), key=lambda r: r.index)
        latencies = [r.latency_ms for r in records if r.received_s is not None]
        answered = len(latencies)
        p50, p95, worst = (np.percentile(latencies, [50, 95, 100]).tolist() if latencies
                           else (math.nan,) * 3)
        metrics = None
        gt = self.frame.ground_truth
        if gt is not None:
            scored = [depth_metrics(depth, gt) for _, depth in self.kept_depths()
                      if depth.shape == gt.shape]
            metrics = average_metrics(scored) if scored else None
        mismatches = sum(r.header_equal is False for r in records)
        return StreamReport(
            frames_sent=len(records), frames_answered=answered,
            answered_fraction=answered / len(records) if records else 0.0,
            latency_p50_ms=p50, latency_p95_ms=p95, latency_max_ms=worst,
            headers_equal=answered > 0 and mismatches == 0, header_mismatches=mismatches,
            unmatched_depths=self._ledger.unmatched, duplicate_depths=self._ledger.duplicates,
            encodings=dict(self._encodings),
            sizes=dict(self._sizes), metrics=metrics, diagnostics=dict(self._diagnostics),
            rate_hz=self.rate_hz, input_encoding=self.encoding,
            lidar_offset_s=self.lidar_offset_s, frames=records)

    def close(self) -> None:
        """Leave the executor (shut it down when it is the driver's own) and destroy the node."""
        self._executor.remove_node(self)
        if self._own_executor:
            self._executor.shutdown(timeout_sec=1.0)
        self.destroy_node()
