"""ROS processes this package starts (demo, tests, live evaluation, benchmarks) and their
environment; ``NodeProcess`` runs the completion node as a child process.

Keeps DDS traffic on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), gives each graph
its own ``ROS_DOMAIN_ID`` so that parallel or leftover processes cannot cross-talk, and loads the
shipped Fast DDS profile so that large images get through between processes.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dmd3c_ros.paths import fastdds_profile


def free_domain_id(rng: random.Random | None = None) -> int:
    """A ROS domain id for a private graph (101-200: clear of the default 0 and of common
    fleet ranges; port numbers stay valid on Linux up to 232)."""
    return (rng or random.SystemRandom()).randint(101, 200)


def package_root() -> str:
    """The folder holding the ``dmd3c_ros`` package this process imported."""
    return str(Path(__file__).resolve().parents[2])


def ros_process_env(domain_id: int | None = None, base: dict | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: os.environ) set up for a private, machine-local ROS graph,
    with :func:`package_root` first on ``PYTHONPATH``: a child process imports the same
    ``dmd3c_ros`` as this one (a second checkout, or an installed copy, would otherwise win)."""
    env = dict(os.environ if base is None else base)
    root = package_root()
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join([root] + paths)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(free_domain_id() if domain_id is None else domain_id)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp":
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(fastdds_profile()))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def setup_process_env(domain_id: int | None = None) -> dict[str, str]:
    """Set up *this* process for a private, machine-local graph: LOCALHOST discovery, the RMW and
    the shipped Fast DDS profile, and ROS_DOMAIN_ID when ``domain_id`` is given (otherwise pass
    the domain to ``rclpy.init``). Call it before the process creates its first ROS participant:
    Fast DDS reads the profile file only then. Returns the keys set."""
    env = ros_process_env(0 if domain_id is None else domain_id)
    keys = ["ROS_AUTOMATIC_DISCOVERY_RANGE", "RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE"]
    values = {key: env[key] for key in keys if key in env}
    if domain_id is not None:
        values["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    os.environ.update(values)
    return values


# ------------------------------------------------------------------------------ node process

class NodeProcessError(RuntimeError):
    """The completion node process failed to start or died; the text ends with its log tail."""


def lidar_to_camera_parameter(transform: np.ndarray) -> list[float]:
    """A (4, 4) transform as the node's ``lidar_to_camera`` parameter (16 floats, row-major)."""
    values = np.asarray(transform, dtype=np.float64)
    if values.size != 16:
        raise ValueError(f"lidar_to_camera needs 16 values, got {values.size}")
    return [float(v) for v in values.reshape(-1)]


def _param_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # always with '.' or 'e': a double, never an integer
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_param_value(v) for v in value) + "]"
    return str(value)


def ros_args(parameters: Mapping[str, object]) -> list[str]:
    """``--ros-args -p name:=value ...`` for a parameter dict (None values are left out)."""
    args = ["--ros-args"]
    for name, value in parameters.items():
        if value is not None:
            args += ["-p", f"{name}:={_param_value(value)}"]
    return args


def node_command(executable: str = "completion_node") -> list[str]:
    """A node (``completion_node`` or ``surround_node``) of this process's own package:
    ``python -P -m dmd3c_ros.ros.<executable>`` with this interpreter. Not the console script of
    the environment, which imports whichever ``dmd3c_ros`` is installed there (an editable
    install of another checkout): a benchmark run from one tree then timed another tree's node.
    With :func:`ros_process_env`'s ``PYTHONPATH`` the module is this process's; ``-P`` keeps a
    ``dmd3c_ros`` folder in the working directory from coming first."""
    return [sys.executable, "-P", "-m", f"dmd3c_ros.ros.{executable}"]


class NodeProcess:
    """A node (default: the completion node) as a child process (its own session, output to a log file).

    ``env`` should come from ``graph.ros_process_env``. Use as a context manager, or call
    ``start`` and, always, ``stop``.
    """

    def __init__(self, parameters: Mapping[str, object], env: Mapping[str, str], *,
                 command: Sequence[str] | None = None, log_path: str | Path | None = None):
        self.command = list(command or node_command()) + ros_args(parameters)
        self.env = dict(env)
        self._log_path = Path(log_path) if log_path is not None else None
        self._log = None
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def start(self) -> "NodeProcess":
        if self._log_path is None:
            handle, name = tempfile.mkstemp(prefix="dmd3c_node_", suffix=".log")
            os.close(handle)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self._log_path, "wb")
        self.process = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # our SIGINT only, not the tty's
        return self

    def log_tail(self, chars: int = 3000) -> str:
        if self._log_path is None or not self._log_path.is_file():
            return ""
        text = self._log_path.read_bytes()[-chars:].decode("utf-8", "replace")
        return text.strip()

    def check(self) -> None:
        """Raise NodeProcessError (with the log tail) when the process has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise NodeProcessError(
                f"the node exited with code {self.process.returncode}; "
                f"command: {' '.join(self.command)}\n--- its output (tail) ---\n{self.log_tail()}")

    def stop(self, timeout_s: float = 5.0, signal_number: int = signal.SIGINT) -> int | None:
        """``signal_number`` (SIGINT or SIGTERM), wait ``timeout_s``, then SIGKILL. Returns the
        exit code (None if never run); ``exit_seconds`` is how long the node took to exit after
        the signal (None when it had exited already or was killed)."""
        process = self.process
        self.exit_seconds = None
        try:
            if process is None:
                return None
            if process.poll() is None:
                sent = time.monotonic()
                process.send_signal(signal_number)
                try:
                    process.wait(timeout_s)
                    self.exit_seconds = time.monotonic() - sent
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout_s)
            return process.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> "NodeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
