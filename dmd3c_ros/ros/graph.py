"""Environment for ROS processes this package starts (demo, tests, live evaluation, benchmarks).

Keeps DDS traffic on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), gives each graph
its own ``ROS_DOMAIN_ID`` so that parallel or leftover processes cannot cross-talk, and loads the
shipped Fast DDS profile so that large images get through between processes.
"""
from __future__ import annotations

import os
import random

from dmd3c_ros.paths import fastdds_profile


def free_domain_id(rng: random.Random | None = None) -> int:
    """A ROS domain id for a private graph (101-200: clear of the default 0 and of common
    fleet ranges; port numbers stay valid on Linux up to 232)."""
    return (rng or random.SystemRandom()).randint(101, 200)


def ros_process_env(domain_id: int | None = None, base: dict | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: os.environ) set up for a private, machine-local ROS graph."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(free_domain_id() if domain_id is None else domain_id)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp":
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(fastdds_profile()))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
