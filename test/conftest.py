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
