"""Where the package's data (models/, launch/) lives: a source checkout or an installed share/."""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "dmd3c_ros"
DEFAULT_MODEL_SPEC = "student.yaml"


def share_dir() -> Path:
    """The folder holding models/ and launch/.

    A source checkout (or an editable install) uses the repository root; a colcon or pip install
    uses <prefix>/share/dmd3c_ros (ament_index where ROS 2 is sourced).
    """
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "package.xml").is_file():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # not installed through ament, or ament_index missing
        return Path(sys.prefix) / "share" / PACKAGE


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository: the real samples (it may be absent)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def kitti_sample_dir() -> Path:
    """The real KITTI frame the demo and ``dmd3c bench`` use by default:
    ``../shared/data/kitti_dc/0000000005`` beside the repository (it may be absent)."""
    return shared_data_dir() / "kitti_dc" / "0000000005"


def nuscenes_sample_dir() -> Path:
    """The real nuScenes keyframe of ``dmd3c eval --nuscenes`` (six cameras + LIDAR_TOP):
    ``../shared/data/nuscenes_sample`` beside the repository (it may be absent)."""
    return shared_data_dir() / "nuscenes_sample"


def default_model_spec() -> Path | None:
    """The shipped student's model spec YAML, or None when the package ships none."""
    path = share_dir() / "models" / DEFAULT_MODEL_SPEC
    return path if path.is_file() else None


def fastdds_profile() -> Path:
    """The shipped Fast DDS profile for large images between processes (config/)."""
    return share_dir() / "config" / "fastdds_large_data.xml"
