"""The surround node as its own process, fed the real nuScenes keyframe at sensor rate.

Starts ``surround_node`` on a private, machine-local ROS graph (``graph.ros_process_env``) with
the sample's cameras and extrinsics as parameters, waits until it answers every camera, then
publishes the six images, their CameraInfo (each with the camera's own stamp offset from the
sweep, as recorded) and the LIDAR_TOP sweep at ``--rate`` sweeps per second for ``--seconds``.
It prints, per camera, the sweeps answered and the latency from publishing a sweep to receiving
that camera's depth, and the node's own figures from /diagnostics; it writes ``--out``:
``report.json`` and ``depth_mosaic.png`` (the six depth images of the last answered sweep,
colourised, in two rows). The node is always stopped (SIGINT, then SIGKILL after 5 s).

    python -m dmd3c_ros.ros.surround_demo [--data DIR] [--backend B] [--model YAML]
        [--rate HZ] [--seconds S] [--seam-blend] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from dmd3c_ros.core.colorize import colorize_depth
from dmd3c_ros.core.config import BACKENDS
from dmd3c_ros.core.io import InputFileError, write_rgb
from dmd3c_ros.core.nuscenes_sample import NuScenesSample, load_nuscenes_sample
from dmd3c_ros.core.process import prepare_process
from dmd3c_ros.paths import nuscenes_sample_dir
from dmd3c_ros.ros.adapters import (array_to_image, camera_to_camera_info, depth_image_to_metres,
                                    xyz_to_pointcloud2)
from dmd3c_ros.ros.feeder import time_msg
from dmd3c_ros.ros.graph import (NodeProcess, NodeProcessError, free_domain_id,
                                 lidar_to_camera_parameter, node_command, ros_process_env,
                                 setup_process_env)
from dmd3c_ros.ros.sync import header_stamp_ns

PROG = "python -m dmd3c_ros.ros.surround_demo"
NS = 10**9
FIRST_SWEEP_NS = 1_700_000_000 * NS  # stamps of the stream: a fixed, recent-looking epoch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=nuscenes_sample_dir(),
                        help="nuScenes sample folder (default: %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, default="classical")
    parser.add_argument("--model", help="model spec YAML (network backends; a bare name is "
                                        "looked up in models/, e.g. student_surround.yaml)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to stream")
    parser.add_argument("--rate", type=float, default=2.0, help="sweeps per second")
    parser.add_argument("--out", type=Path, default=Path("out/surround_demo"),
                        help="folder for report.json and depth_mosaic.png")
    parser.add_argument("--seam-blend", action="store_true",
                        help="run the node with seam_blend true (default: the node's false)")
    parser.add_argument("--domain-id", type=int, help="ROS domain (default: a random private one)")
    parser.add_argument("--ready-timeout", type=float, default=90.0,
                        help="seconds to wait for the node's first answer on every camera")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0:
        parser.error("--seconds and --rate must be positive")
    return args


def node_parameters(sample: NuScenesSample, backend: str, model: str | None,
                    seam_blend: bool = False) -> dict:
    parameters = {"cameras": sample.names, "backend": backend, "model": model,
                  "sync_slop": 0.06,  # nuScenes cameras: up to ~45 ms before the sweep stamp
                  "seam_blend": seam_blend}
    for camera in sample.cameras:
        parameters[f"{camera.name}.lidar_to_camera"] = lidar_to_camera_parameter(
            camera.lidar_to_camera)
    return parameters


class SurroundDriver(Node):
    """Publishes the sample's sweeps and records the depth answers per camera."""

    def __init__(self, sample: NuScenesSample, *, context) -> None:
        super().__init__("surround_demo_driver", context=context)
        self.sample = sample
        self.names = sample.names
        lidar = sample.lidar_stamp
        self.offsets = {c.name: round((c.stamp - lidar) * NS) if c.stamp and lidar else 0
                        for c in sample.cameras}  # s to ns: each camera's stamp after the sweep
        self.images = {c.name: array_to_image(c.rgb, "rgb8", Header(frame_id=c.name))
                       for c in sample.cameras}
        self.infos = {c.name: camera_to_camera_info(c.camera, Header(frame_id=c.name))
                      for c in sample.cameras}
        self.cloud = xyz_to_pointcloud2(np.ascontiguousarray(sample.points[:, :3]),
                                        Header(frame_id="LIDAR_TOP"))
        self.pubs = {n: (self.create_publisher(Image, f"{n}/image", qos_profile_sensor_data),
                         self.create_publisher(CameraInfo, f"{n}/camera_info",
                                               qos_profile_sensor_data)) for n in self.names}
        self.pub_points = self.create_publisher(PointCloud2, "points", qos_profile_sensor_data)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for name in self.names:
            self.create_subscription(Image, f"{name}/depth",
                                     lambda msg, n=name: self._on_depth(n, msg), reliable)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.sent: dict[int, float] = {}            # sweep stamp -> publish time (monotonic)
        self.answers: dict[str, dict[int, float]] = {n: {} for n in self.names}  # latency ms
        self.last_depth: dict[str, np.ndarray] = {}
        self.diagnostics = None
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self)

    def _on_depth(self, name: str, msg: Image) -> None:
        sweep = header_stamp_ns(msg) - self.offsets[name]
        if sweep in self.sent and sweep not in self.answers[name]:
            self.answers[name][sweep] = (time.monotonic() - self.sent[sweep]) * 1000.0  # ms
            self.last_depth[name] = depth_image_to_metres(msg)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("surround depth"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def send(self, sweep_ns: int) -> None:
        self.sent[sweep_ns] = time.monotonic()
        for name in self.names:
            stamp = time_msg(sweep_ns + self.offsets[name])
            self.images[name].header.stamp = stamp
            self.infos[name].header.stamp = stamp
            self.pubs[name][0].publish(self.images[name])
            self.pubs[name][1].publish(self.infos[name])
        self.cloud.header.stamp = time_msg(sweep_ns)
        self.pub_points.publish(self.cloud)

    def spin_for(self, seconds: float, check=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if check is not None:
                check()
            self._executor.spin_once(timeout_sec=0.01)

    def answered_all(self, sweep_ns: int) -> bool:
        return all(sweep_ns in self.answers[n] for n in self.names)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self.destroy_node()


def summary(driver: SurroundDriver, sweeps: list[int]) -> dict:
    cameras = {}
    for name in driver.names:
        latencies = [driver.answers[name][s] for s in sweeps if s in driver.answers[name]]
        p50, p95 = (np.percentile(latencies, [50, 95]).tolist() if latencies else (None, None))
        cameras[name] = {"answered": len(latencies), "latency_p50_ms": p50,
                         "latency_p95_ms": p95}
    complete = sum(driver.answered_all(s) for s in sweeps)
    return {"sweeps_sent": len(sweeps), "sweeps_answered_by_every_camera": complete,
            "cameras": cameras, "node_diagnostics": driver.diagnostics}


def mosaic(depths: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """The colourised depth images in two rows (half size), in ring order."""
    tiles = [cv2.resize(colorize_depth(depths[n]), None, fx=0.5, fy=0.5,
                        interpolation=cv2.INTER_AREA) for n in names if n in depths]
    if not tiles:
        raise ValueError("no depth image to show")
    while len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    half = len(tiles) // 2
    return np.vstack([np.hstack(tiles[:half]), np.hstack(tiles[half:])])


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    prepare_process()  # the feeder shares the cores with the node: no spinning BLAS here
    try:
        sample = load_nuscenes_sample(args.data)
    except (InputFileError, OSError, ValueError) as error:
        print(f"{PROG}: error: {error} (the nuScenes sample lives in ../shared/data; --data DIR)",
              file=sys.stderr)
        return 2
    domain_id = free_domain_id() if args.domain_id is None else args.domain_id
    node = NodeProcess(node_parameters(sample, args.backend, args.model, args.seam_blend),
                       ros_process_env(domain_id), command=node_command("surround_node"),
                       log_path=args.out.resolve() / "surround_node.log")
    _say(f"starting the surround node (backend {args.backend}, {len(sample.names)} cameras, "
         f"ROS domain {domain_id}, log {node.log_path})")
    setup_process_env(domain_id)  # before this process creates its first participant
    context = rclpy.Context()
    driver, code = None, 1
    node.start()
    try:
        rclpy.init(context=context, domain_id=domain_id)
        driver = SurroundDriver(sample, context=context)
        start, sweep = time.monotonic(), FIRST_SWEEP_NS
        while True:  # warm-up sweeps, one a second, until one is answered by every camera
            driver.send(sweep)
            driver.spin_for(1.0, node.check)
            if driver.answered_all(sweep):
                break
            if time.monotonic() - start > args.ready_timeout:
                raise TimeoutError(f"no sweep answered by every camera within "
                                   f"{args.ready_timeout:.0f} s")
            sweep += NS
        _say(f"node answering every camera {time.monotonic() - start:.1f} s after start; "
             f"streaming {len(sample.points)} points + {len(sample.names)} images per sweep at "
             f"{args.rate:g} Hz for {args.seconds:g} s")
        sweeps, period = [], round(NS / args.rate)
        sweep += 10 * NS
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            tick = time.monotonic()
            driver.send(sweep)
            sweeps.append(sweep)
            sweep += period
            driver.spin_for(max(0.0, 1.0 / args.rate - (time.monotonic() - tick)), node.check)
        streaming = driver.diagnostics  # the node's last report while the sensors ran
        driver.spin_for(2.0, node.check)  # the last answers
        report = summary(driver, sweeps)
        report["node_diagnostics"] = streaming
        for name, figures in report["cameras"].items():
            p50 = figures["latency_p50_ms"]
            _say(f"  {name:<16} answered {figures['answered']}/{len(sweeps)}"
                 + (f", publish -> depth received p50 {p50:.0f} ms, p95 "
                    f"{figures['latency_p95_ms']:.0f} ms" if p50 is not None else ""))
        diag = report["node_diagnostics"] or {}
        _say(f"node: backend {diag.get('backend')}, sweep latency inside the node p50 "
             f"{diag.get('latency_p50_ms')} ms, p95 {diag.get('latency_p95_ms')} ms, dropped "
             f"sweeps {diag.get('dropped_sweeps')}, stale cameras {diag.get('stale_cameras')}")
        args.out.mkdir(parents=True, exist_ok=True)
        if driver.last_depth:
            write_rgb(args.out / "depth_mosaic.png", mosaic(driver.last_depth, sample.names))
            _say(f"wrote {args.out / 'depth_mosaic.png'}")
        report.update({"data": str(args.data), "backend_requested": args.backend,
                       "model": args.model, "seam_blend": args.seam_blend,
                       "rate_hz": args.rate, "seconds": args.seconds,
                       "domain_id": domain_id})
        (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        _say(f"wrote {args.out / 'report.json'}")
        code = 0 if report["sweeps_answered_by_every_camera"] else 1
    except (NodeProcessError, TimeoutError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        if isinstance(error, TimeoutError) and node.log_tail():
            print(f"--- surround node output (tail) ---\n{node.log_tail()}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        code = 130
    finally:
        if driver is not None:
            driver.close()
        context.try_shutdown()
        _say(f"surround node stopped (exit code {node.stop(timeout_s=5.0)})")
    return code


if __name__ == "__main__":
    sys.exit(main())
