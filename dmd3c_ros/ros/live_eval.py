"""Live evaluation: play a rosbag2 bag through a real ROS graph and measure the completion node.

``play_and_record`` starts the completion node as its own process (``graph.NodeProcess`` on a
private, machine-local domain, its ``image``/``camera_info``/``points`` inputs remapped to the
bag's topics, ``use_sim_time`` on), and in this process a player node publishes the bag's image,
camera_info and points messages at their recorded timing (bag receive time, scaled by ``rate``)
with sensor-data QoS, plus ``/clock`` (the bag time) at least every 10 ms. It records the node's
``depth`` answers and ``/diagnostics``, pairs every answer with its image by header stamp and
returns a ``LiveResult``: end-to-end latency (wall time from publishing an image to receiving its
depth, as a consumer on the vehicle would see it), frames dropped (images not answered within
``drain_s`` after the end) and, against the bag's ground-truth depth topic, the KITTI metrics of
every answered frame (core.metrics).

Only rosbags (reading) and rclpy (publishing) are needed: messages go out as recorded, their raw
CDR deserialised with ``rclpy.serialization.deserialize_message``. /tf is not played: the node
gets its LiDAR->camera transform from the ``lidar_to_camera`` parameter.

Before any frame is timed the node is warmed up with the bag's first frame, restamped well before
the bag start (answers to these are not counted). Answers are written to a temporary folder while
the bag plays and scored after the node has stopped, so scoring takes no CPU from the node under
test and memory stays bounded (only the last ``keep`` frames are returned as arrays).
"""
from __future__ import annotations

import bisect
import math
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dmd3c_ros.core.io import json_safe
from dmd3c_ros.core.metrics import BANDS, average_metrics, frame_metrics
from dmd3c_ros.ros.adapters import depth_image_to_metres, image_to_rgb
from dmd3c_ros.ros.feeder import AnswerLedger, SentFrame, time_msg
from dmd3c_ros.ros.sync import stamp_to_ns
from dmd3c_ros.ros.graph import NodeProcess, free_domain_id, ros_process_env, setup_process_env

__all__ = ["DEFAULT_TOPICS", "LiveFrame", "LiveResult", "play_and_record"]

# Topics of the bags ``dmd3c sim --format rosbag2-mcap`` writes (front rig).
DEFAULT_TOPICS = {"image": "/camera_2/image", "camera_info": "/camera_2/camera_info",
                  "points": "/velodyne/points", "gt": "/camera_2/depth_gt"}
_PLAYED = {"image": Image, "camera_info": CameraInfo, "points": PointCloud2}
_ROS_TYPES = {"image": "sensor_msgs/msg/Image", "camera_info": "sensor_msgs/msg/CameraInfo",
              "points": "sensor_msgs/msg/PointCloud2", "gt": "sensor_msgs/msg/Image"}
CLOCK_PERIOD_S = 0.01       # /clock at least every 10 ms
WARM_UP_RATE_HZ = 5.0
DIAGNOSTICS_WAIT_S = 1.5    # the node publishes /diagnostics every second (of bag time)
WARM_UP_LEAD_NS = 60 * 10**9  # warm-up stamps lie 60 s before the bag start (never paired)
WARM_UP_STEP_NS = 10**8       # 0.1 s between warm-up stamps


@dataclass
class LiveFrame(SentFrame):
    """One played image of the bag and the scores of its answer."""

    metrics: dict[str, float] | None = None  # None: not answered, or no ground truth for it
    bands: dict[str, dict] | None = None     # metrics per distance band (core.metrics.BANDS)


@dataclass
class LiveResult:
    """What a live run measured. Latency is image publish -> depth received, in ms (transport both
    ways, synchronisation, inference). ``metrics`` is the mean of the per-frame metrics over the
    answered frames that had ground truth (``scored`` of them)."""

    bag: str
    rate: float
    frames: int                      # images played
    answered: int
    dropped: int                     # images not answered within drain_s after the end
    latencies_ms: list[float]
    latency_p50_ms: float
    latency_p95_ms: float
    metrics: dict[str, float] | None
    scored: int
    per_frame: list[LiveFrame]
    diagnostics: dict[str, object]   # the node's last diagnostics values (backend, mode, ...)
    bands: dict[str, dict] | None = None  # metrics per distance band, means over scored frames
    unmatched_depths: int = 0        # answers whose stamp matched no played image
    duplicate_depths: int = 0
    player_lag_ms_max: float = 0.0   # how late the player published an image, at worst
    warm_up_s: float = 0.0
    node_log: str | None = None
    samples: list[dict] = field(default_factory=list)  # last answered frames: rgb, depth, gt

    def to_results(self, name: str | None = None) -> dict:
        """The ``results[NAME]`` entry of ``dmd3c eval --json`` (NaN written as null)."""
        m = self.metrics or {}
        entry = {"frames": self.frames,
                 **{key: m.get(key, math.nan) for key in ("rmse_mm", "mae_mm", "irmse_per_km",
                                                          "imae_per_km", "abs_rel", "delta1")},
                 "latency_ms": {"p50": self.latency_p50_ms, "p95": self.latency_p95_ms},
                 "dropped": self.dropped, "answered": self.answered, "scored": self.scored}
        if self.bands:
            entry["bands"] = self.bands
        return json_safe(entry)

    def to_dict(self) -> dict:
        """Everything but the sample arrays, JSON-safe."""
        frames = [{"index": f.index, "stamp_ns": f.stamp_ns, "answered": f.received_s is not None,
                   "latency_ms": f.latency_ms, "metrics": f.metrics} for f in self.per_frame]
        return json_safe({
            "bag": self.bag, "rate": self.rate, "frames": self.frames, "answered": self.answered,
            "dropped": self.dropped, "latency_ms": {"p50": self.latency_p50_ms,
                                                    "p95": self.latency_p95_ms},
            "latencies_ms": self.latencies_ms, "metrics": self.metrics, "scored": self.scored,
            "diagnostics": self.diagnostics, "unmatched_depths": self.unmatched_depths,
            "duplicate_depths": self.duplicate_depths,
            "player_lag_ms_max": self.player_lag_ms_max, "warm_up_s": self.warm_up_s,
            "per_frame": frames})


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


class _Player(Node):
    """Publishes the node's inputs and /clock; records ``depth`` answers and ``/diagnostics``."""

    def __init__(self, topics: Mapping[str, str], depth_dir: Path, keep: int, context):
        super().__init__("dmd3c_live_player", context=context)
        self.topics = topics
        self.pubs = {key: self.create_publisher(kind, topics[key], qos_profile_sensor_data)
                     for key, kind in _PLAYED.items()}
        clock_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                               reliability=ReliabilityPolicy.BEST_EFFORT)  # as rclcpp's ClockQoS
        self.pub_clock = self.create_publisher(Clock, "/clock", clock_qos)
        reader = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20,
                            reliability=ReliabilityPolicy.BEST_EFFORT)  # matches either writer
        self.create_subscription(Image, "depth", self._on_depth, reader)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reader)
        self.executor_ = SingleThreadedExecutor(context=context)
        self.executor_.add_node(self)
        self.depth_dir = depth_dir
        self.frames: dict[int, LiveFrame] = {}   # image stamp ns -> frame
        self.ledger = AnswerLedger()
        self.kept: deque[int] = deque(maxlen=keep)  # stamps of the last answers
        self.diagnostics: dict[str, object] = {}
        self.diagnostics_seen = 0
        self.recording = True  # False: depth answers are no longer counted
        self.clock_ns = 0
        self._last_clock = 0.0

    # -- callbacks ---------------------------------------------------------------------------
    def _on_depth(self, msg: Image) -> None:
        if not self.recording:
            return
        received = time.monotonic()
        stamp = stamp_to_ns(msg.header.stamp)
        if self.ledger.match(stamp, self.frames, received) is None:
            return
        np.save(self.depth_dir / f"{stamp}.npy", depth_image_to_metres(msg))
        self.kept.append(stamp)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: _number(kv.value) for kv in status.values}
            if "backend" in values:  # the completion node's status
                level = status.level
                level = int.from_bytes(level, "little") if isinstance(level, bytes) else level
                self.diagnostics = {"name": status.name, "level": int(level),
                                    "message": status.message, **values}
                self.diagnostics_seen += 1

    # -- publishing --------------------------------------------------------------------------
    def publish_clock(self, ns: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_clock >= CLOCK_PERIOD_S:
            self.clock_ns = max(self.clock_ns, ns)  # never backwards
            self.pub_clock.publish(Clock(clock=time_msg(self.clock_ns)))
            self._last_clock = now

    def spin_until(self, deadline: float, clock: Callable[[], int], check: Callable[[], None],
                   done: Callable[[], bool] = lambda: False) -> bool:
        """Spin (publishing /clock from ``clock()``) until ``done()`` or ``deadline``."""
        while not done():
            now = time.monotonic()
            if now >= deadline:
                return False
            check()
            self.publish_clock(clock())
            self.executor_.spin_once(timeout_sec=min(CLOCK_PERIOD_S, deadline - now))
        return True

    def node_visible(self) -> bool:
        return (self.count_publishers("depth") > 0
                and all(self.count_subscribers(self.topics[k]) > 0 for k in _PLAYED))

    def close(self) -> None:
        self.executor_.remove_node(self)
        self.executor_.shutdown(timeout_sec=1.0)
        self.destroy_node()


def _connections(reader, topics: Mapping[str, str]) -> dict[str, object]:
    found = {}
    for key, topic in topics.items():
        if topic is None:
            continue
        matches = [c for c in reader.connections if c.topic == topic]
        if not matches:
            available = ", ".join(sorted({c.topic for c in reader.connections}))
            raise ValueError(f"topic {topic!r} ({key}) is not in the bag; topics: {available}")
        if matches[0].msgtype != _ROS_TYPES[key]:
            raise ValueError(f"topic {topic!r} ({key}) holds {matches[0].msgtype}, "
                             f"not {_ROS_TYPES[key]}")
        found[key] = matches
    return found


def _first_frame(reader, conns) -> dict[str, object]:
    """The first image, camera_info and points messages of the bag (for the warm-up)."""
    first: dict[str, object] = {}
    keys = {c.id: key for key in _PLAYED for c in conns[key]}
    for conn, _, raw in reader.messages(connections=[c for k in _PLAYED for c in conns[k]]):
        key = keys[conn.id]
        if key not in first:
            first[key] = deserialize_message(bytes(raw), _PLAYED[key])
        if len(first) == len(_PLAYED):
            return first
    raise ValueError(f"the bag has no complete frame: found only {sorted(first)}")


def _warm_up(player: _Player, first: dict, start_ns: int, timeout_s: float,
             check: Callable[[], None]) -> None:
    """Wait until the node is in the graph, then feed it the first frame (restamped before the
    bag start) until it has answered once, so that the played frames meet a warm, matched node."""
    deadline = time.monotonic() + timeout_s
    base = start_ns - WARM_UP_LEAD_NS
    if not player.spin_until(deadline, lambda: base, check, player.node_visible):
        raise TimeoutError(f"the completion node did not show its 'depth' publisher and "
                           f"subscriptions to {', '.join(player.topics[k] for k in _PLAYED)} "
                           f"within {timeout_s:.0f} s")
    k = 0
    while player.ledger.warm_answered == 0:
        stamp = base + k * WARM_UP_STEP_NS
        for key in ("points", "image", "camera_info"):
            first[key].header.stamp = time_msg(stamp)
        player.ledger.warm_stamps.add(stamp)
        player.publish_clock(stamp, force=True)
        for key in ("points", "image", "camera_info"):
            player.pubs[key].publish(first[key])
        k += 1
        step_end = min(time.monotonic() + 1.0 / WARM_UP_RATE_HZ, deadline)
        player.spin_until(step_end, lambda: stamp, check, lambda: player.ledger.warm_answered > 0)
        if time.monotonic() >= deadline and player.ledger.warm_answered == 0:
            raise TimeoutError(f"the completion node is in the graph but answered none of {k} "
                               f"warm-up frames within {timeout_s:.0f} s")
    settle = time.monotonic() + 0.5  # late warm-up answers arrive and are ignored
    player.spin_until(settle, lambda: player.clock_ns, check)


def _score(reader, conns, player: _Player, slop_ns: int, keep: set[int]) -> tuple[int, list]:
    """Second pass over the bag: metrics of every answered frame against the nearest
    ground-truth message within ``slop_ns``; returns (frames scored, samples of ``keep``)."""
    answered = sorted(s for s, f in player.frames.items() if f.received_s is not None)
    scored, samples = 0, {}
    for conn, _, raw in reader.messages(connections=conns["gt"]):
        msg = deserialize_message(bytes(raw), Image)
        gt_ns = stamp_to_ns(msg.header.stamp)
        i = bisect.bisect_left(answered, gt_ns)
        near = [s for s in answered[max(i - 1, 0):i + 1] if abs(s - gt_ns) <= slop_ns]
        if not near:
            continue
        stamp = min(near, key=lambda s: abs(s - gt_ns))
        frame = player.frames[stamp]
        if frame.metrics is not None:
            continue
        path = player.depth_dir / f"{stamp}.npy"
        depth, gt = np.load(path), depth_image_to_metres(msg)
        path.unlink()
        if depth.shape != gt.shape:
            continue  # a model that resizes its output: not scored here
        frame.metrics, frame.bands = frame_metrics(depth, gt)
        scored += 1
        if stamp in keep:
            samples[stamp] = {"index": frame.index, "stamp_ns": stamp, "depth": depth, "gt": gt}
    if samples:  # the camera images of the kept frames
        for conn, _, raw in reader.messages(connections=conns["image"]):
            msg = deserialize_message(bytes(raw), Image)
            stamp = stamp_to_ns(msg.header.stamp)
            if stamp in samples:
                samples[stamp]["rgb"] = image_to_rgb(msg)
    return scored, [samples[s] for s in sorted(samples)]


def play_and_record(bag: str | Path, *, topics: Mapping[str, str] | None = None,
                    node_parameters: Mapping[str, object], rate: float = 1.0,
                    domain_id: int | None = None, ready_timeout: float = 90.0,
                    drain_s: float = 1.0, gt_slop_s: float = 0.05, keep: int = 3,
                    log_path: str | Path | None = None,
                    progress: Callable[[int, int, int], None] | None = None) -> LiveResult:
    """Play ``bag`` once through the completion node (its own process) and measure it.

    Args:
        bag: rosbag2 folder (mcap or sqlite3), read with rosbags.
        topics: the bag's topics: ``image`` (sensor_msgs/Image), ``camera_info``, ``points``
            (PointCloud2) and, optionally, ``gt`` (sensor_msgs/Image depth, 32FC1 metres or 16UC1
            mm; None or absent: no metrics). Missing keys default to DEFAULT_TOPICS' (pass
            ``gt=None`` to switch ground truth off).
        node_parameters: the completion node's parameters (backend, model, lidar_to_camera as
            16 floats, ...); ``use_sim_time`` defaults to True.
        rate: playback speed factor (2.0 plays twice as fast as recorded).
        domain_id: ROS domain of the private graph (default: a free one).
        ready_timeout: seconds for the node to start and answer a warm-up frame.
        drain_s: seconds after the last message for the last answers; later ones are dropped.
        gt_slop_s: ground truth pairs with an answered image within this many seconds.
        keep: the last ``keep`` scored frames are returned with rgb, depth and gt arrays.
        log_path: the node's output (default: a temporary file; see LiveResult.node_log).
        progress: ``progress(images played, images in the bag, answered)``, about once a second.
    Raises:
        ValueError: a topic is missing or has another type; TimeoutError: the node did not come
        up; graph.NodeProcessError: the node died (the text holds its log tail).
    """
    from rosbags.highlevel import AnyReader  # only the evaluation needs rosbags

    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    topics = {**DEFAULT_TOPICS, **(topics or {})}
    parameters = {"use_sim_time": True, **node_parameters}
    domain_id = free_domain_id() if domain_id is None else domain_id
    setup_process_env()  # LOCALHOST discovery and the Fast DDS profile (large images)
    bag = Path(bag)
    with AnyReader([bag]) as reader, tempfile.TemporaryDirectory(prefix="dmd3c_live_") as tmp:
        conns = _connections(reader, topics)
        played = [c for k in _PLAYED for c in conns[k]]
        key_of = {c.id: k for k in _PLAYED for c in conns[k]}
        total = sum(c.msgcount for c in conns["image"])
        first = _first_frame(reader, conns)
        start_ns = min(reader.start_time, *(
            stamp_to_ns(m.header.stamp) for m in first.values()))

        process = NodeProcess(parameters, ros_process_env(domain_id), log_path=log_path)
        for key in _PLAYED:  # the node's relative inputs -> the bag's topics
            process.command += ["-r", f"{key}:={topics[key]}"]
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain_id)
        player = None
        try:
            player = _Player(topics, Path(tmp), keep, context)
            process.start()
            warm_start = time.monotonic()
            _warm_up(player, first, start_ns, ready_timeout, process.check)
            warm_up_s = time.monotonic() - warm_start
            player.ledger.warm_answered = 0

            t0, t_first, lag_max = time.monotonic(), None, 0.0
            next_progress = t0 + 1.0

            def bag_now() -> int:  # the bag time that corresponds to now
                return start_ns + int((time.monotonic() - t0) * rate * 1e9)

            for conn, log_ns, raw in reader.messages(connections=played):
                key = key_of[conn.id]
                msg = deserialize_message(bytes(raw), _PLAYED[key])
                if t_first is None:
                    t_first = log_ns
                    t0 = time.monotonic() - (log_ns - start_ns) / rate / 1e9
                due = t0 + (log_ns - start_ns) / rate / 1e9
                player.spin_until(due, bag_now, process.check)
                player.publish_clock(log_ns, force=True)
                sent = time.monotonic()
                player.pubs[key].publish(msg)
                if key == "image":
                    lag_max = max(lag_max, (sent - due) * 1000.0)  # s to ms
                    stamp = stamp_to_ns(msg.header.stamp)
                    player.frames.setdefault(stamp, LiveFrame(len(player.frames), stamp, sent))
                if progress is not None and sent >= next_progress:
                    next_progress = sent + 1.0
                    progress(len(player.frames), total, player.ledger.answered)
            end = time.monotonic() + drain_s
            player.spin_until(end, bag_now, process.check,
                              lambda: player.ledger.answered >= len(player.frames))
            # Later answers are dropped frames; wait (bag time running on) for the node's
            # diagnostics to cover the end of the bag.
            player.recording, seen = False, player.diagnostics_seen
            player.spin_until(time.monotonic() + DIAGNOSTICS_WAIT_S / min(rate, 1.0), bag_now,
                              process.check, lambda: player.diagnostics_seen > seen)
            if progress is not None:
                progress(len(player.frames), total, player.ledger.answered)
        finally:
            process.stop(timeout_s=5.0)
            if player is not None:
                player.close()
            context.try_shutdown()

        scored, samples = (0, [])
        if "gt" in conns:
            scored, samples = _score(reader, conns, player, int(round(gt_slop_s * 1e9)),
                                     set(player.kept))

    frames = sorted(player.frames.values(), key=lambda f: f.index)
    latencies = [f.latency_ms for f in frames if f.received_s is not None]
    p50, p95 = (np.percentile(latencies, [50, 95]).tolist() if latencies else (math.nan,) * 2)
    rows = [f.metrics for f in frames if f.metrics is not None]
    metrics = average_metrics(rows) if rows else None
    bands = {label: average_metrics(f.bands[label] for f in frames if f.bands is not None)
             for label, _, _ in BANDS} if rows else None
    return LiveResult(
        bag=str(bag), rate=rate, frames=len(frames), answered=len(latencies),
        dropped=len(frames) - len(latencies), latencies_ms=latencies, latency_p50_ms=p50,
        latency_p95_ms=p95, metrics=metrics, bands=bands, scored=scored, per_frame=frames,
        diagnostics=dict(player.diagnostics), unmatched_depths=player.ledger.unmatched,
        duplicate_depths=player.ledger.duplicates, player_lag_ms_max=max(lag_max, 0.0),
        warm_up_s=warm_up_s, node_log=str(process.log_path) if process.log_path else None,
        samples=samples)
