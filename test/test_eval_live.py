"""Live evaluation: a synthetic bag played through the completion node in its own process.

The node runs on a private, machine-local graph (its own ROS_DOMAIN_ID; conftest sets LOCALHOST
discovery and the Fast DDS profile for this process). No timing assertions beyond the readiness
timeout: the figures are checked for presence and sense, not for speed.
"""
import json
import math

import numpy as np
import pytest

from dmd3c_ros.ros.live_eval import DEFAULT_TOPICS, play_and_record
from dmd3c_ros.ros.graph import free_domain_id, lidar_to_camera_parameter
from dmd3c_ros.training.sim.rig import make_rig
from dmd3c_ros.training.sim.run import run_sim

READY_TIMEOUT_S = 90.0  # node start-up on a loaded 2-core machine
FRAMES = 30
SCALE = 0.5  # half-size images keep the test quick


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("live") / "bag"
    run_sim(path, frames=FRAMES, fmt="rosbag2-mcap", image_scale=SCALE)
    return path


@pytest.fixture(scope="module")
def parameters():
    rig = make_rig("front", SCALE)
    return {"backend": "classical",
            "lidar_to_camera": lidar_to_camera_parameter(rig.lidar_to_camera(rig.cameras[0]))}


def test_live_run_reports_latency_drops_and_metrics(bag, parameters, tmp_path):
    calls = []
    result = play_and_record(bag, topics=DEFAULT_TOPICS, node_parameters=parameters,
                             domain_id=free_domain_id(), ready_timeout=READY_TIMEOUT_S,
                             log_path=tmp_path / "node.log",
                             progress=lambda *args: calls.append(args))
    summary = json.dumps(result.to_dict(), allow_nan=False)  # strict JSON
    assert result.frames == FRAMES, summary
    assert result.answered >= 0.9 * result.frames, summary
    assert result.dropped == result.frames - result.answered
    assert result.unmatched_depths == 0 and result.duplicate_depths == 0
    assert len(result.latencies_ms) == result.answered > 0
    assert all(latency > 0 for latency in result.latencies_ms)
    assert 0 < result.latency_p50_ms <= result.latency_p95_ms
    assert result.scored == result.answered
    for name in ("rmse_mm", "mae_mm", "irmse_per_km", "imae_per_km", "abs_rel", "delta1"):
        assert math.isfinite(result.metrics[name]), result.metrics
    assert 0.5 < result.metrics["delta1"] <= 1.0, result.metrics
    assert result.diagnostics["backend"] == "classical", result.diagnostics
    assert calls and calls[-1] == (FRAMES, FRAMES, result.answered)

    entry = result.to_results("classical")
    json.dumps(entry, allow_nan=False)
    assert entry["frames"] == FRAMES and entry["answered"] == result.answered
    assert entry["dropped"] == result.dropped
    assert entry["latency_ms"]["p50"] == pytest.approx(result.latency_p50_ms)
    assert entry["rmse_mm"] == pytest.approx(result.metrics["rmse_mm"])
    assert {"mae_mm", "irmse_per_km", "imae_per_km", "abs_rel", "delta1"} <= set(entry)
    assert set(entry["bands"]) == {"0-20", "20-40", "40-80"}
    assert entry["bands"]["0-20"]["frames"] > 0 and entry["bands"]["0-20"]["rmse_mm"] > 0

    # Visual samples: the last answered frames, full arrays of one size.
    assert 1 <= len(result.samples) <= 3
    sample = result.samples[-1]
    assert sample["depth"].shape == sample["gt"].shape == sample["rgb"].shape[:2]
    assert sample["depth"].dtype == np.float32


def test_missing_topic_is_a_clear_error(bag, parameters):
    with pytest.raises(ValueError, match="/camera_9/image"):
        play_and_record(bag, topics={"image": "/camera_9/image"}, node_parameters=parameters,
                        domain_id=free_domain_id())


def test_rate_must_be_positive(bag, parameters):
    with pytest.raises(ValueError, match="rate"):
        play_and_record(bag, node_parameters=parameters, rate=0.0)
