"""`make demo`: the completion node as its own process, fed a real KITTI frame at sensor rate.

Starts ``completion_node`` on a private, machine-local ROS graph (``graph.ros_process_env``), waits
until it answers, publishes the sample's image, CameraInfo and Velodyne sweep at ``--rate`` Hz for
``--seconds``, prints what came back (frames answered, latency, accuracy against the ground truth,
the node's backend and mode) and writes ``--out``: ``depth.png`` (KITTI uint16),
``depth_colorized.png`` and ``report.json`` (``StreamReport.to_dict``). The node is always stopped
(SIGINT, then SIGKILL after 5 s).

    python -m dmd3c_ros.ros.demo [--data DIR] [--backend B] [--model YAML] [--seconds S] [--out DIR]
    python -m dmd3c_ros.ros.demo --no-node   # stream to a node you started yourself
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import rclpy

from dmd3c_ros.core.camera import CalibrationError
from dmd3c_ros.core.colorize import colorize_depth
from dmd3c_ros.core.config import BACKENDS
from dmd3c_ros.core.io import InputFileError, write_kitti_depth, write_rgb
from dmd3c_ros.core.process import prepare_process
from dmd3c_ros.paths import kitti_sample_dir
from dmd3c_ros.ros.feeder import StreamDriver, StreamReport, load_kitti_frame
from dmd3c_ros.ros.graph import (NodeProcess, NodeProcessError, free_domain_id,
                                 lidar_to_camera_parameter, ros_args, ros_process_env,
                                 setup_process_env)

PROG = "python -m dmd3c_ros.ros.demo"
DEFAULT_DATA = kitti_sample_dir()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="KITTI depth-completion sample folder (default: %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, default="classical")
    parser.add_argument("--model", help="model spec YAML (network backends)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to stream")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second")
    parser.add_argument("--encoding", default="rgb8",
                        choices=("rgb8", "bgr8", "rgba8", "bgra8", "mono8"))
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="folder for depth.png, depth_colorized.png, report.json")
    parser.add_argument("--domain-id", type=int, help="ROS domain (default: a random private one)")
    parser.add_argument("--no-node", action="store_true",
                        help="start no node: stream to a completion node already running in "
                             "this shell's ROS graph (ROS_DOMAIN_ID, or --domain-id)")
    parser.add_argument("--ready-timeout", type=float, default=60.0,
                        help="seconds to wait for the node's first answer")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0:
        parser.error("--seconds and --rate must be positive")
    return args


class RunningNode:
    """Stands for a node this command did not start (--no-node): nothing to check or stop."""

    def start(self):
        return self

    def check(self) -> None:
        pass

    def log_tail(self) -> str:
        return ""

    def stop(self, timeout_s: float = 0.0):
        return None


def _say(text: str) -> None:
    print(text, flush=True)


def print_summary(report: StreamReport) -> None:
    _say(f"frames sent {report.frames_sent}, answered {report.frames_answered} "
         f"({100.0 * report.answered_fraction:.0f}%)")
    _say(f"latency publish -> depth received: p50 {report.latency_p50_ms:.1f} ms, "
         f"p95 {report.latency_p95_ms:.1f} ms, max {report.latency_max_ms:.1f} ms")
    _say(f"depth headers equal to their image headers: {report.headers_equal}; "
         f"encodings {report.encodings}; sizes {report.sizes}")
    if report.metrics is not None:
        m = report.metrics
        _say(f"vs ground truth ({m['frames']} depth images): RMSE {m['rmse_mm']:.1f} mm, "
             f"MAE {m['mae_mm']:.1f} mm, iRMSE {m['irmse_per_km']:.2f} 1/km, "
             f"delta1 {m['delta1']:.4f}")
    _say(f"node reports backend {report.diagnostic_value('backend')}, "
         f"mode {report.diagnostic_value('mode')}, "
         f"image received -> depth published p50 {report.diagnostic_value('latency_p50_ms')} ms, "
         f"p95 {report.diagnostic_value('latency_p95_ms')} ms (inside the node), "
         f"dropped {report.diagnostic_value('dropped_frames')}")


def write_outputs(out: Path, driver: StreamDriver, report: StreamReport, extra: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    kept = driver.kept_depths()
    if kept:
        index, depth = kept[-1]
        write_kitti_depth(out / "depth.png", depth)
        write_rgb(out / "depth_colorized.png", colorize_depth(depth))
        _say(f"wrote {out / 'depth.png'} and {out / 'depth_colorized.png'} (frame {index})")
    data = {**report.to_dict(), **extra}
    (out / "report.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    _say(f"wrote {out / 'report.json'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    prepare_process()  # the feeder shares the cores with the node: no spinning BLAS here
    try:
        frame = load_kitti_frame(args.data)
    except (InputFileError, CalibrationError) as error:
        print(f"{PROG}: error: {error} (the KITTI sample lives in ../shared/data; --data DIR)",
              file=sys.stderr)
        return 2
    parameters = {"backend": args.backend, "model": args.model,
                  "lidar_to_camera": lidar_to_camera_parameter(frame.lidar_to_camera)}
    if args.no_node:
        domain_id = int(os.environ.get("ROS_DOMAIN_ID", "0")) if args.domain_id is None \
            else args.domain_id
        node = RunningNode()
        _say(f"streaming to a completion node already running in ROS domain {domain_id}; "
             f"it needs {' '.join(ros_args(parameters))}")
    else:
        domain_id = free_domain_id() if args.domain_id is None else args.domain_id
        node = NodeProcess(parameters, ros_process_env(domain_id),
                           log_path=args.out.resolve() / "completion_node.log")
        _say(f"starting the completion node (backend {args.backend}, ROS domain {domain_id}, "
             f"log {node.log_path})")
    setup_process_env(domain_id)  # before this process creates its first participant
    context = rclpy.Context()
    driver = None
    started = time.monotonic()
    node.start()
    try:
        rclpy.init(context=context, domain_id=domain_id)
        driver = StreamDriver(frame, context=context, rate_hz=args.rate, encoding=args.encoding)
        driver.wait_until_ready(args.ready_timeout, check=node.check)
        waited = time.monotonic() - started
        _say(f"node up and answering {waited:.1f} s after start; streaming {frame.name} "
             f"({frame.camera.width}x{frame.camera.height}, {len(frame.points)} LiDAR points) "
             f"at {args.rate:g} Hz for {args.seconds:g} s")
        report = driver.run(seconds=args.seconds, check=node.check,
                            progress=lambda sent, answered, elapsed: _say(
                                f"  {elapsed:4.1f} s: {sent} frames sent, {answered} answered"))
        print_summary(report)
        write_outputs(args.out, driver, report, {
            "data": str(args.data), "backend_requested": args.backend, "model": args.model,
            "domain_id": domain_id, "ready_s": waited})
    except (NodeProcessError, TimeoutError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        if isinstance(error, TimeoutError) and node.log_tail():
            print(f"--- completion node output (tail) ---\n{node.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if driver is not None:
            driver.close()
        context.try_shutdown()
        if not args.no_node:
            code = node.stop(timeout_s=5.0)
            _say(f"completion node stopped (exit code {code})")
    return 0 if report.frames_answered else 1


if __name__ == "__main__":
    sys.exit(main())
