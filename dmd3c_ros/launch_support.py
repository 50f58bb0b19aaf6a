"""What completion.launch.py and surround.launch.py share. Only ``fastdds_profile_action`` imports
the ``launch`` packages (pip-only installs lack them), so the tests can check the rest
everywhere."""
from __future__ import annotations

from typing import Iterable, Mapping

import os

import yaml

EXTRINSIC_PARAMETER = "lidar_to_camera"
# The depth topic's sub-topics that a remapping of ``depth`` carries along (the node publishes
# depth, depth/camera_info, depth/uncertainty, depth/points, depth/colorized).
DEPTH_OUTPUTS = ("", "/camera_info", "/uncertainty", "/points", "/colorized")


def parameter_overrides(texts: Mapping[str, str]) -> dict[str, object]:
    """Launch-argument strings -> node parameter values; empty strings keep the YAML's value.

    Each text is read as YAML ("80" -> 80, "true" -> True, "[1, 0, ...]" -> a list); the
    numbers of a ``lidar_to_camera`` become floats (a double-array parameter).
    """
    overrides = {}
    for name, text in texts.items():
        text = text.strip()
        if not text:
            continue
        value = yaml.safe_load(text)
        if name.split(".")[-1] == EXTRINSIC_PARAMETER:
            value = [float(v) for v in value]
        overrides[name] = value
    return overrides


def camera_remappings(cameras: Iterable[str], formats: Mapping[str, str],
                      suffixes: Mapping[str, Iterable[str]] | None = None
                      ) -> list[tuple[str, str]]:
    """Remappings of per-camera topics: ``formats`` maps a relative topic of the node ("image")
    to a pattern with ``{camera}`` ("/{camera}/image_raw"); empty patterns keep the node's name
    ``<camera>/<topic>``. ``suffixes[topic]`` lists sub-topics remapped along (depth ->
    depth/camera_info ...)."""
    remappings = []
    for camera in cameras:
        for topic, pattern in formats.items():
            if not pattern:
                continue
            target = pattern.format(camera=camera)
            for suffix in (suffixes or {}).get(topic, ("",)):
                remappings.append((f"{camera}/{topic}{suffix}", target + suffix))
    return remappings


def fastdds_profile_action(share: str):
    """The launch action that points Fast DDS at the shipped profile (large images through shared
    memory) unless FASTDDS_DEFAULT_PROFILES_FILE is already set."""
    from launch.actions import SetEnvironmentVariable
    from launch.substitutions import EnvironmentVariable
    profile = os.path.join(share, "config", "fastdds_large_data.xml")
    return SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                  EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                                      default_value=profile))
