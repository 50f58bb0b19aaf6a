"""Shared fixtures: the real samples in ../shared/data (tests skip when they are absent)."""
from pathlib import Path

import pytest

from dmd3c_ros.paths import nuscenes_sample_dir
from dmd3c_ros.ros.graph import setup_process_env

# Every ROS participant of the test session stays on this machine and uses the shipped Fast DDS
# profile (large images between processes). Fast DDS reads the profile once per process, when the
# first participant is created, hence here, before any test runs. Each test picks its own domain.
setup_process_env()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KITTI_DC = SHARED_DATA / "kitti_dc" / "0000000005"
KITTI_OBJECT = SHARED_DATA / "kitti_object" / "000000"


@pytest.fixture
def kitti_dc() -> Path:
    if not (KITTI_DC / "velodyne.bin").is_file():
        pytest.skip(f"real KITTI sample not found at {KITTI_DC} (../shared/data)")
    return KITTI_DC


@pytest.fixture
def kitti_object() -> Path:
    if not (KITTI_OBJECT / "calib.txt").is_file():
        pytest.skip(f"real KITTI object sample not found at {KITTI_OBJECT} (../shared/data)")
    return KITTI_OBJECT


@pytest.fixture
def nuscenes_sample() -> Path:
    path = nuscenes_sample_dir()
    if not (path / "calibration.json").is_file():
        pytest.skip(f"real nuScenes sample not found at {path} (../shared/data)")
    return path


class SpinningGraph:
    """A private rclpy context (machine-local, a ROS domain of its own) with a single-threaded
    executor spinning in a background thread; ``add`` puts nodes on it (destroyed at the end)."""

    def __init__(self, context, executor):
        self.context, self._executor, self.nodes = context, executor, []

    def add(self, *nodes):
        for node in nodes:
            self._executor.add_node(node)
            self.nodes.append(node)


@pytest.fixture
def spinning_graph(monkeypatch):
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from dmd3c_ros.ros.graph import free_domain_id
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(free_domain_id()))
    context = rclpy.Context()
    rclpy.init(context=context)
    # Single-threaded, as in the nodes' main(): with rclpy's MultiThreadedExecutor its spin
    # thread held the GIL most of the time here and the node tests became slow and flaky.
    executor = SingleThreadedExecutor(context=context)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    graph = SpinningGraph(context, executor)
    yield graph
    executor.shutdown(timeout_sec=2.0)
    for node in graph.nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)
    spinner.join(timeout=5.0)


def wait_until(condition, timeout=10.0):
    """Poll ``condition`` every 20 ms until it holds or ``timeout`` seconds pass; its last value."""
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
