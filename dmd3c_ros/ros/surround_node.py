"""surround_node: a ring of cameras + one LiDAR in, dense metric depth for every camera out, all
views of one sweep completed as one batch (DESIGN.md contract).

Per camera ``<name>`` of the ``cameras`` parameter: ``<name>/image`` and ``<name>/camera_info`` in
(sensor-data QoS, paired by stamp within ``sync_slop``), ``<name>/depth`` (32FC1 metres, the
image's header, or with ``output_stamp: sweep`` the sweep's stamp), ``<name>/depth/camera_info``,
``<name>/depth/uncertainty`` (when the model gives it and the topic has a subscriber), optionally
``<name>/depth/points`` and ``<name>/depth/colorized``; one ``points`` in; optionally
``depth/points_fused`` (every view in the sweep's frame, ``fused_cloud``) and the rig's static
TF (``publish_rig_tf``; :mod:`.rig_outputs`), adjacent views blended where they see the same
surface (``seam_blend``, off by default: it costs CPU; ``core.seam_blend``); ``/diagnostics``
once a second (one status for the node, one per camera). ``<name>.lidar_to_camera`` (16
numbers) gives each camera's extrinsic; TF is used where it is empty.

Callbacks only hand messages to a ``SweepAssembler`` (ros/surround_sync.py), which gathers around
each sweep the view of every live camera; ready sets go to the worker thread through a one-slot
drop-oldest queue. The worker decodes, projects the sweep into every view and runs them through
``CompletionPipeline.run_batch`` (one batched inference). A view where no LiDAR return lands runs
camera-only (mono) when the model can; a camera that stops sending is reported stale and the
others keep publishing; without any sweep for ``lidar_timeout`` seconds every view runs mono (or,
for a backend that needs LiDAR, nothing is published until the LiDAR returns).
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from functools import partial

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from dmd3c_ros.core.config import ConfigError, SurroundConfig
from dmd3c_ros.core.stats import RollingStats
from dmd3c_ros.ros.adapters import (MessageError, camera_info_to_camera, image_to_rgb,
                                    pointcloud2_to_xyz)
from dmd3c_ros.ros.diagnostics import ERROR, OK, WARN, FaultLog, make_status
from dmd3c_ros.ros.node_common import (DepthOutputs, StageTimes, StartupError, TfExtrinsics,
                                       Worker, create_node_backend, run_node, stamped_now)
from dmd3c_ros.ros.params import declare_parameters, read_config
from dmd3c_ros.ros.rig_outputs import FusedCloud, RigSeams, RigTf
from dmd3c_ros.ros.slot import LatestSlot
from dmd3c_ros.ros.surround_sync import SweepAssembler, SweepSet
from dmd3c_ros.ros.sync import header_stamp_ns, make_synchronizers
from dmd3c_ros.runtime.base import Backend
from dmd3c_ros.runtime.pipeline import CompletionPipeline, View

NODE_NAME = "surround_node"
POLL_PERIOD_S = 0.02  # how often waiting sweeps are checked against batch_wait


@dataclass
class ViewMessages:
    image: Image
    info: CameraInfo


@dataclass
class CameraState:
    """Per-camera counters for the diagnostics."""
    published: int = 0
    published_at_last_diag: int = 0
    mode: str = "waiting"


class SurroundNode(Node):
    """N cameras + one LiDAR -> dense depth per camera. ``backend`` injects a ready backend."""

    def __init__(self, *, backend: Backend | None = None, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        declare_parameters(self, SurroundConfig)
        try:
            self.config: SurroundConfig = read_config(self, SurroundConfig)
        except ConfigError as error:
            raise StartupError(str(error)) from error
        self.cameras = list(self.config.cameras)
        if backend is None:
            # TensorRT engines are built for a fixed largest batch: one view per camera.
            options = {"max_batch": len(self.cameras)} if self.config.backend in (
                "auto", "tensorrt") else {}
            backend = create_node_backend(self.config, self.get_logger(), **options)
        self.backend = backend
        self.pipeline = CompletionPipeline(backend, min_depth=self.config.min_depth,
                                           max_depth=self.config.max_depth)
        self._extrinsics = {c: self.config.extrinsic(c) for c in self.cameras}
        without = [c for c, e in self._extrinsics.items() if e is None]
        self._tf = TfExtrinsics(self, f"{without[0]}.lidar_to_camera") if without else None
        self.faults = FaultLog(self.get_logger())
        self.latency_ms = RollingStats()  # first message of a sweep's set -> its last depth out
        self.stages = StageTimes()
        self.state = {c: CameraState() for c in self.cameras}
        self._sets_done = 0
        self._sets_at_last_diag = 0
        self._input_stamps = {"view": None, "sweep": None}  # newest header stamps, ns
        self._pairing = (0, 0, 0)  # sets, empty sweeps, unmatched views at the last check
        self._last_diag = time.monotonic()

        self.outputs = {c: DepthOutputs(self, f"{c}/", self.config, backend)
                        for c in self.cameras}
        self.fused = FusedCloud(self, self.cameras, self.config.fused_cloud_stride,
                                self.config.qos_reliability) if self.config.fused_cloud else None
        self.rig_tf = RigTf(self, self._extrinsics) if self.config.publish_rig_tf else None
        self.seams = RigSeams(self.cameras, self.config.seam_tolerance,
                              self.get_logger()) if self.config.seam_blend else None
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.assembler = SweepAssembler(
            self.cameras, slop=self.config.sync_slop, wait=self.config.batch_wait,
            lidar_timeout=self.config.lidar_timeout, camera_timeout=self.config.camera_timeout,
            queue_size=self.config.queue_size)
        self.slot: LatestSlot[SweepSet] = LatestSlot()
        self._worker = Worker(self._work, "surround_worker", self.slot)

        topics = []
        for camera in self.cameras:
            topics += [(Image, f"{camera}/image"), (CameraInfo, f"{camera}/camera_info")]
        topics.append((PointCloud2, "points"))
        groups = [([2 * i, 2 * i + 1], self.config.queue_size, self.config.sync_slop,
                   partial(self._on_view, camera)) for i, camera in enumerate(self.cameras)]
        self.sync = make_synchronizers(self, topics, qos_profile_sensor_data, groups=groups,
                                       extra_callbacks={len(topics) - 1: self._on_sweep})
        self.create_timer(POLL_PERIOD_S, self._poll)
        self.create_timer(1.0, self._publish_diagnostics)
        sources = ", ".join(f"{c}: {'TF' if e is None else 'parameter'}"
                            for c, e in self._extrinsics.items())
        self.get_logger().info(
            f"backend {backend.name}, {len(self.cameras)} cameras ({sources}), sync slop "
            f"{self.config.sync_slop:.3f} s, batch wait {self.config.batch_wait:.3f} s "
            f"({self.sync.implementation}), outputs {self.config.qos_reliability}")

    # -- callbacks: tiny, never inference ---------------------------------------------------
    def _on_view(self, camera: str, image: Image, info: CameraInfo) -> None:
        stamp = header_stamp_ns(image)
        self._input_stamps["view"] = stamp
        self._hand_over(self.assembler.add_view(camera, stamp, ViewMessages(image, info)))

    def _on_sweep(self, points: PointCloud2) -> None:
        stamp = header_stamp_ns(points)
        self._input_stamps["sweep"] = stamp
        self._hand_over(self.assembler.add_sweep(stamp, points))

    def _poll(self) -> None:
        self._hand_over(self.assembler.poll())

    def _hand_over(self, sets: list[SweepSet]) -> None:
        for ready in sets:
            self.slot.put(ready)

    # -- worker ------------------------------------------------------------------------------
    def _work(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            ready = self.slot.get(timeout=0.1)
            if ready is not None:
                try:
                    self._process(ready)
                except Exception as error:  # a backend failure must not end the worker
                    self.faults.report("internal", ERROR, f"sweep failed: {error!r}")

    def _process(self, ready: SweepSet) -> None:
        started = time.monotonic()
        self.stages.add("queued", (started - ready.opened) * 1000.0)  # s to ms
        if ready.sweep is None and not self.pipeline.supports_mono:
            self.faults.report("no_lidar", WARN, (
                f"no LiDAR sweep for {self.assembler.lidar_age():.1f} s and backend "
                f"'{self.backend.name}' cannot complete without LiDAR: not publishing until "
                "LiDAR returns"))
            for camera in ready.views:
                self.state[camera].mode = "stopped: no LiDAR"
            return
        points = None
        if ready.sweep is not None:
            try:
                points = pointcloud2_to_xyz(ready.sweep)
            except MessageError as error:
                self.faults.report("bad_input", ERROR, f"sweep skipped: {error}")
                return
        names, views, cameras = [], [], []
        for name, messages in ready.views.items():
            try:
                view, camera = self._view(name, messages, points, ready.sweep)
            except MessageError as error:
                self.faults.report(f"bad_input_{name}", ERROR, f"{name}: view skipped: {error}")
                continue
            except (ValueError, LookupError) as error:
                self.faults.report(f"bad_frame_{name}", ERROR, f"{name}: view skipped: {error}")
                continue
            names.append(name)
            views.append(view)
            cameras.append(camera)
        if not views:
            return
        wanted = any(self.outputs[name].wants_uncertainty() for name in names)
        decoded = time.monotonic()
        self.stages.add("decode", (decoded - started) * 1000.0)  # s to ms
        try:
            batch = self.pipeline.run_batch(views, uncertainty=wanted,
                                            seams=self.seams.blender(names, views)
                                            if self.seams is not None else None)
        except ValueError as error:
            self.faults.report("bad_frame", ERROR, f"sweep skipped: {error}")
            return
        for stage, ms in batch.timings_ms.items():
            self.stages.add(stage, ms)
        start = time.monotonic()
        fused = []
        for name, view, camera, result in zip(names, views, cameras, batch.results):
            if result is None:
                self.state[name].mode = "stopped: no LiDAR"
                self.faults.report(f"no_lidar_{name}", WARN, (
                    f"{name}: no LiDAR return lands in the image and backend "
                    f"'{self.backend.name}' cannot complete without LiDAR: not published"))
                continue
            self.outputs[name].publish(self._header(ready, name), camera, result)
            self.state[name].published += 1
            self.state[name].mode = result.mode
            if view.lidar_to_camera is not None:
                fused.append((name, camera, view.lidar_to_camera, result.depth))
        if ready.sweep is not None:
            self._rig_outputs(ready, fused)
        now = time.monotonic()
        self.stages.add("publish", (now - start) * 1000.0)  # s to ms
        self.latency_ms.add((now - ready.opened) * 1000.0)  # s to ms
        self._sets_done += 1

    def _header(self, ready: SweepSet, name: str) -> Header:
        """The header of a view's outputs: its image's, or with ``output_stamp: sweep`` the
        sweep's stamp (a set without a sweep keeps the image's)."""
        image = ready.views[name].image.header
        if self.config.output_stamp == "sweep" and ready.sweep is not None:
            return Header(stamp=ready.sweep.header.stamp, frame_id=image.frame_id)
        return image

    def _rig_outputs(self, ready: SweepSet, fused: list) -> None:
        """The fused cloud of the views just published and the rig's static TF."""
        sweep = ready.sweep.header
        if self.rig_tf is not None:
            self.rig_tf.update(sweep.frame_id, {name: messages.image.header.frame_id
                                                for name, messages in ready.views.items()},
                               sweep.stamp)
        if self.fused is not None and fused:
            self.fused.publish(Header(stamp=sweep.stamp, frame_id=sweep.frame_id), fused)

    def _view(self, name: str, messages: ViewMessages, points, sweep) -> tuple[View, object]:
        rgb = image_to_rgb(messages.image)
        camera = camera_info_to_camera(messages.info)
        extrinsic = None
        if points is not None and len(points):
            extrinsic = self._extrinsics[name]
            if extrinsic is None:
                extrinsic = self._tf.lookup(messages.image.header.frame_id,
                                            sweep.header.frame_id)
        return View(rgb, camera, points, extrinsic), camera

    # -- diagnostics -------------------------------------------------------------------------
    def status_values(self) -> dict[str, object]:
        now = time.monotonic()
        elapsed = max(now - self._last_diag, 1e-6)
        rate = (self._sets_done - self._sets_at_last_diag) / elapsed
        self._sets_at_last_diag = self._sets_done
        latency = self.latency_ms.summary()
        stats = self.assembler.stats
        age = self.assembler.lidar_age()
        return {"backend": self.backend.name, "cameras": len(self.cameras), "rate_hz": rate,
                "latency_p50_ms": latency["p50"], "latency_p95_ms": latency["p95"],
                "sweeps_in": stats.sets, "sweeps_done": self._sets_done,
                "dropped_sweeps": self.slot.dropped,
                "incomplete_sweeps": stats.incomplete_sets,
                "camera_only_sweeps": stats.camera_only_sets,
                "sweeps_without_views": stats.empty_sweeps,
                "unmatched_views": sum(stats.unmatched.values()),
                "stamp_resets": stats.resets,
                "lidar_age_s": age if self.assembler.lidar_live() or age else "no sweep yet",
                "stale_cameras": ",".join(self.assembler.stale()) or "none",
                "faults": self.faults.total(), "synchronizer": self.sync.implementation,
                **self.stages.p50s()}

    def camera_statuses(self, elapsed: float) -> list:
        statuses = []
        stale = self.assembler.stale()
        for name in self.cameras:
            state = self.state[name]
            rate = (state.published - state.published_at_last_diag) / max(elapsed, 1e-6)
            state.published_at_last_diag = state.published
            values = {"mode": state.mode, "rate_hz": rate, "published": state.published,
                      "unmatched_views": self.assembler.stats.unmatched[name]}
            if name in stale:
                age = stale[name]
                level, message = WARN, ("no image yet" if age is None
                                        else f"no image for {age:.1f} s")
            elif state.mode.startswith("stopped"):
                level, message = WARN, state.mode
            elif state.published == 0:
                level, message = WARN, "waiting for image, camera_info and points"
            else:
                level, message = OK, f"{state.mode} at {rate:.1f} Hz"
            statuses.append(make_status(f"{self.get_name()}: {name}", self.backend.name, level,
                                        message, values))
        return statuses

    def check_pairing(self) -> None:
        """Sweeps and views that keep arriving without ever forming a set: their stamps are
        further apart than sync_slop (unsynchronised clocks)."""
        stats = self.assembler.stats
        now = (stats.sets, stats.empty_sweeps, sum(stats.unmatched.values()))
        sets, empty, unmatched = (a - b for a, b in zip(now, self._pairing))
        self._pairing = now
        view_ns, sweep_ns = self._input_stamps["view"], self._input_stamps["sweep"]
        if sets == 0 and empty > 0 and unmatched > 0 and None not in (view_ns, sweep_ns):
            apart = abs(view_ns - sweep_ns) / 1e9  # ns to s
            self.faults.report("unpaired", ERROR, (
                f"sweeps and images arrive but never pair: their stamps are {apart:.3f} s "
                f"apart, more than sync_slop {self.config.sync_slop:.3f} s (are the sensor "
                "clocks synchronised?)"))

    def _publish_diagnostics(self) -> None:
        self.check_pairing()
        elapsed = time.monotonic() - self._last_diag
        values = self.status_values()
        cameras = self.camera_statuses(elapsed)
        self._last_diag = time.monotonic()
        faults = self.faults.active()
        stale = self.assembler.stale()
        if faults:
            level, message = faults[0].level, faults[0].message
        elif self._sets_done == 0:
            level, message = WARN, "waiting for camera views and LiDAR sweeps"
        elif stale:
            level, message = WARN, f"stale cameras: {', '.join(stale)}; the others publish"
        else:
            level, message = OK, (f"{len(self.cameras)} cameras at {values['rate_hz']:.1f} "
                                  "sweeps/s")
        status = make_status(f"{self.get_name()}: surround depth", self.backend.name, level,
                             message, values)
        self.pub_diag.publish(DiagnosticArray(header=stamped_now(self),
                                              status=[status] + cameras))

    def destroy_node(self) -> None:
        self._worker.stop()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(SurroundNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
