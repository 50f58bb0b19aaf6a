"""The ROS side of ``dmd3c bench`` (deploy/bench.py): the node's message steps timed in process,
and the completion node run in its own process behind a real ROS graph.

``Messages`` serialises a frame's Image, CameraInfo and PointCloud2 once and times what the node
does with such messages: decode (deserialise + convert) and encode (build + serialise its outputs).
``run_node`` streams a frame at a rate to a completion node process (``graph.NodeProcess`` on a
private, machine-local graph with the shipped Fast DDS profile) through ``feeder.StreamDriver`` and
returns the node's own latency and per-stage figures from its /diagnostics. With a soak interval
(``dmd3c bench --soak``), ``SoakRecorder`` samples the node process's memory and CPU time (Linux
/proc), its /diagnostics latency and the stream's own latency every interval, and ``soak_summary``
turns the samples into growth and drift figures.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import rclpy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dmd3c_ros.core.io import json_safe
from dmd3c_ros.ros import adapters
from dmd3c_ros.ros.feeder import KittiFrame, StreamDriver, frame_messages
from dmd3c_ros.ros.graph import (NodeProcess, free_domain_id, lidar_to_camera_parameter,
                                 ros_process_env, setup_process_env)
from dmd3c_ros.ros.soak import (NODE_WINDOW, RSS_NOT_MEASURED, SoakRecorder, diagnostic_number,
                                format_sample, interval_figures, process_cpu_s,
                                process_rss_mib, soak_summary)

NODE_MEASURED = ("p50_ms / p95_ms: inside the node, image received -> depth published (its "
                 f"/diagnostics latency_p50_ms / latency_p95_ms, over its last {NODE_WINDOW} "
                 "frames, warm-up included); subscriber_*: this process, image published -> depth "
                 "received; dropped: frames sent that got no depth")
NODE_STAGES = ("queued", "decode", "projection", "preprocess", "inference", "postprocess",
               "publish")  # the completion node's /diagnostics <stage>_p50_ms


class Messages:
    """The message stages: decode of the frame's serialized inputs, encode of the outputs."""

    def __init__(self) -> None:
        self._deserialize, self._serialize = deserialize_message, serialize_message
        self._types = (Image, CameraInfo, PointCloud2)
        self._adapters, self._kitti_frame, self._frame_messages = (adapters, KittiFrame,
                                                                   frame_messages)

    def serialize_inputs(self, frame) -> tuple[bytes, bytes, bytes]:
        """The Image (rgb8), CameraInfo and PointCloud2 of ``frame`` (rgb, points, camera,
        lidar_to_camera, name: a ``deploy.bench_frames.BenchFrame``) as the wire carries them."""
        kitti = self._kitti_frame(frame.rgb, frame.points, frame.camera, frame.lidar_to_camera,
                                  None, frame.name)
        return tuple(self._serialize(msg) for msg in self._frame_messages(kitti, 0.0))

    def decode(self, blobs):
        """(rgb (H, W, 3) uint8, camera, points (N, 3) float32, image header) of the blobs."""
        image, info, cloud = (self._deserialize(blob, kind)
                              for blob, kind in zip(blobs, self._types))
        a = self._adapters
        return (a.image_to_rgb(image), a.camera_info_to_camera(info), a.pointcloud2_to_xyz(cloud),
                image.header)

    def encode(self, depth, uncertainty, camera, header) -> tuple[int, int]:
        """Serialize the node's outputs for one frame; returns the depth message's (W, H)."""
        a = self._adapters
        depth_msg = a.array_to_image(depth, "32FC1", header)
        outputs = [depth_msg, a.camera_to_camera_info(camera, header)]
        if uncertainty is not None:
            outputs.append(a.array_to_image(uncertainty.astype(np.float32, copy=False), "32FC1",
                                            header))
        for msg in outputs:
            self._serialize(msg)
        return int(depth_msg.width), int(depth_msg.height)


def run_node(frame, *, backend: str = "onnxruntime", model: str | None = None,
             rate_hz: float = 10.0, seconds: float = 10.0, domain_id: int | None = None,
             ready_timeout_s: float = 90.0, log_path=None, soak_interval_s: float | None = None,
             parameters: dict | None = None, say: Callable[[str], None] = print) -> dict:
    """Stream ``frame`` to the completion node in its own process and return the node block.

    With ``soak_interval_s`` the run is a soak: a ``SoakRecorder`` sample every that many
    seconds (a progress line each), and the block gets a ``soak`` entry (``soak_summary``).

    ``parameters``: more node parameters (e.g. ``precision``, ``engine_cache_dir``).

    Raises:
        NodeProcessError: the node died; TimeoutError: it never answered.
    """
    domain_id = free_domain_id() if domain_id is None else int(domain_id)
    parameters = {"backend": backend, "model": model,
                  "lidar_to_camera": lidar_to_camera_parameter(frame.lidar_to_camera),
                  **(parameters or {})}
    node = NodeProcess(parameters, ros_process_env(domain_id), log_path=log_path)
    setup_process_env()  # this process: LOCALHOST discovery, the Fast DDS profile (domain below)
    context = rclpy.Context()
    driver = None
    say(f"node: starting the completion node (backend {backend}, ROS domain {domain_id})")
    node.start()
    try:
        rclpy.init(context=context, domain_id=domain_id)
        kitti = KittiFrame(frame.rgb, frame.points, frame.camera, frame.lidar_to_camera, None,
                           frame.name)
        driver = StreamDriver(kitti, context=context, rate_hz=rate_hz)
        ready_s = driver.wait_until_ready(ready_timeout_s, check=node.check)
        say(f"node: answering after {ready_s:.1f} s; streaming {frame.size[0]}x{frame.size[1]} "
            f"at {rate_hz:g} Hz for {seconds:g} s")
        if soak_interval_s is None:
            soak = None
            driver.run(seconds=seconds, check=node.check,
                       progress=lambda sent, answered, elapsed: say(
                           f"  node {elapsed:4.1f} s: {sent} frames sent, {answered} answered"))
        else:
            soak = SoakRecorder(driver, node.process.pid, seconds=seconds,
                                interval_s=soak_interval_s, rate_hz=rate_hz, say=say)
            if process_rss_mib(node.process.pid) is None:
                say(f"node: memory {RSS_NOT_MEASURED}")
            say(f"node: soak, a sample every {soak_interval_s:g} s")
            soak.start()
            driver.run(seconds=seconds, check=node.check, progress=soak.progress,
                       progress_every_s=0.02)  # sample times within a spin or two
        settle = time.monotonic() + 1.5  # the node publishes /diagnostics at 1 Hz: a fresh one
        while time.monotonic() < settle:
            node.check()
            driver.executor.spin_once(timeout_sec=0.05)
        if soak is not None:
            soak.sample()  # the rest of the run, with the node still up
        report = driver.report()
    finally:
        if driver is not None:
            driver.close()
        context.try_shutdown()
        code = node.stop(timeout_s=5.0)
        say(f"node: stopped by SIGINT (exit code {code}"
            + (f", {node.exit_seconds:.2f} s after the signal)" if node.exit_seconds else ")"))
    block = {
        "backend": report.diagnostic_value("backend") or backend,
        "p50_ms": diagnostic_number(report, "latency_p50_ms"),
        "p95_ms": diagnostic_number(report, "latency_p95_ms"),
        "dropped": report.frames_sent - report.frames_answered,
        "frames": report.frames_sent,
        "measured": NODE_MEASURED,
        "frames_sent": report.frames_sent, "frames_answered": report.frames_answered,
        "answered_fraction": report.answered_fraction,
        "subscriber_p50_ms": report.latency_p50_ms, "subscriber_p95_ms": report.latency_p95_ms,
        "subscriber_max_ms": report.latency_max_ms,
        "node_dropped_frames": diagnostic_number(report, "dropped_frames"),
        "node_frames_in": diagnostic_number(report, "frames_in"),
        "node_frames_published": diagnostic_number(report, "frames_published"),
        # Where the node's own latency goes: its /diagnostics <stage>_p50_ms values.
        "node_stages_p50_ms": {name: diagnostic_number(report, f"{name}_p50_ms")
                               for name in NODE_STAGES
                               if diagnostic_number(report, f"{name}_p50_ms") is not None},
        "mode": report.diagnostic_value("mode"), "headers_equal": report.headers_equal,
        "sizes": report.sizes, "model": model, "rate_hz": rate_hz, "seconds": seconds,
        "resolution": f"{frame.size[0]}x{frame.size[1]}", "ready_s": ready_s,
        "domain_id": domain_id, "log": str(node.log_path),
        "exit_code": code, "exit_s": node.exit_seconds}
    if soak is not None:
        block["soak"] = soak.summary(report)
    return json_safe(block)


__all__ = ["Messages", "NODE_MEASURED", "NODE_STAGES", "NODE_WINDOW", "SoakRecorder",
           "format_sample", "interval_figures", "process_cpu_s", "process_rss_mib", "run_node",
           "soak_summary"]
