"""The eval report: Markdown tables and PNG figures from synthetic results (no ROS, no models)."""
import copy
import re

import cv2
import numpy as np
import pytest

from dmd3c_ros.evaluation.report import Visual, write_report

H, W = 60, 80


def _metrics(rmse_mm, frames=4):
    return {"frames": frames, "rmse_mm": rmse_mm, "mae_mm": rmse_mm / 2, "irmse_per_km": 3.14159,
            "imae_per_km": 1.5, "abs_rel": 0.051234, "delta1": 0.98765}


def _visual(name="000005", seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    depth = np.tile(np.linspace(2.0, 70.0, H, dtype=np.float32)[:, None], (1, W))
    sparse = np.where(rng.random((H, W)) < 0.05, depth, 0).astype(np.float32)
    gt = np.where(rng.random((H, W)) < 0.3, depth, 0).astype(np.float32)
    pred = depth + rng.normal(0, 0.5, (H, W)).astype(np.float32)
    pred[:5] = np.nan  # no value at the top
    return Visual(name, rgb, sparse, gt, {"classical": pred, "student": depth * 1.05})


def _distance_errors(seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(1, 80, 500)
    return {"classical": (gt, 0.02 * gt), "student": (gt, np.full_like(gt, 0.3))}


def _links(text):
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def _write(tmp_path, results, visuals=None, distance_errors=None, latencies=None, notes=()):
    return write_report(tmp_path / "report", results,
                        [_visual()] if visuals is None else visuals,
                        _distance_errors() if distance_errors is None else distance_errors,
                        {} if latencies is None else latencies,
                        title="Eval of a synthetic drive", command="dmd3c eval --bag x --out y",
                        notes=notes)


def test_full_report_tables_and_figures(tmp_path):
    results = {"classical": {**_metrics(1234.567),
                             "bands": {"20-40": _metrics(2000.0), "0-20": _metrics(800.0),
                                       "40-80": _metrics(4000.0, frames=3)},
                             "cameras": {"cam_front": _metrics(1100.0),
                                         "cam_left": _metrics(1300.0)},
                             "latency_ms": {"p50": 21.04, "p95": 35.5},
                             "dropped": 3, "answered": 97},
               "student": _metrics(987.6)}
    visuals = [_visual("000005"), _visual("drive 1/frame 7", seed=1)]
    latencies = {"classical": list(np.random.default_rng(2).gamma(9, 2.5, 100)), "student": []}
    inputs = (copy.deepcopy(results), [copy.deepcopy(v) for v in visuals], _distance_errors(),
              copy.deepcopy(latencies))
    path = _write(tmp_path, results, visuals, _distance_errors(), latencies,
                  notes=["LiDAR split 0.2, seed 0"])

    assert path == tmp_path / "report" / "report.md"
    text = path.read_text()
    assert text.startswith("# Eval of a synthetic drive")
    assert "dmd3c eval --bag x --out y" in text
    assert "| classical | 1234.6 | 617.3 | 3.14 | 1.50 | 0.0512 | 0.9877 | 4 |" in text
    assert "| student | 987.6 | 493.8 | 3.14 | 1.50 | 0.0512 | 0.9877 | 4 |" in text
    # Bands in numeric order, then cameras.
    assert text.index("| classical | 0-20 | 800.0") < text.index("| classical | 20-40 | 2000.0") \
        < text.index("| classical | 40-80 | 4000.0")
    assert "| classical | cam_left | 1300.0" in text
    assert "| classical | 21.0 | 35.5 | 97 | 3 |" in text
    assert "- LiDAR split 0.2, seed 0" in text
    assert "0-3 m" in text or "3 m" in text  # the error colour scale is stated

    links = _links(text)
    assert {"latency_hist.png", "error_vs_distance.png", "frame_000005.png",
            "frame_drive_1_frame_7.png"} <= set(links)
    for link in links:
        img = cv2.imread(str(path.parent / link))
        assert img is not None and img.ndim == 3, link
        assert 200 <= img.shape[1] <= 2000 and img.shape[0] >= 200, (link, img.shape)
    # The strip holds 7 panels (image, LiDAR, 2 predictions, ground truth, 2 error maps) of a
    # frame enlarged to at least 320 px wide, plus title bars and the legend.
    strip = cv2.imread(str(path.parent / "frame_000005.png"))
    assert strip.shape[1] == 320 and strip.shape[0] > 7 * H * 4

    # Inputs are untouched.
    assert results == inputs[0]
    for v, v0 in zip(visuals, inputs[1]):
        for a, b in ((v.rgb, v0.rgb), (v.sparse, v0.sparse), (v.gt, v0.gt)):
            np.testing.assert_array_equal(a, b)
        for k in v.predictions:
            np.testing.assert_array_equal(v.predictions[k], v0.predictions[k])
    assert latencies == inputs[3]


def test_minimal_report_has_no_optional_sections(tmp_path):
    path = _write(tmp_path, {"classical": _metrics(1500.0)})
    text = path.read_text()
    assert "| classical | 1500.0 | 750.0 |" in text
    assert "band" not in text.lower() and "camera" not in text.lower()
    assert "| name | p50" not in text
    assert "No per-frame latencies" in text
    assert not (path.parent / "latency_hist.png").exists()
    assert "latency_hist.png" not in _links(text)
    assert (path.parent / "error_vs_distance.png").is_file()


def test_empty_and_nan_inputs_degrade_gracefully(tmp_path):
    results = {"classical": {**_metrics(float("nan"), frames=0), "dropped": 5}}
    nan_errors = {"classical": (np.array([np.nan, 5.0]), np.array([1.0, np.nan]))}
    blank = Visual("blank", np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.float32),
                   np.zeros((H, W), np.float32), {"classical": np.full((H, W), np.nan, np.float32)})
    path = _write(tmp_path, results, visuals=[blank], distance_errors=nan_errors,
                  latencies={"classical": [float("nan")]})
    text = path.read_text()
    assert "| classical | n/a | n/a |" in text
    assert "| classical | n/a | n/a | n/a | 5 |" in text  # drops without latency figures
    assert "No sampled errors" in text and not (path.parent / "error_vs_distance.png").exists()
    assert not (path.parent / "latency_hist.png").exists()
    assert cv2.imread(str(path.parent / "frame_blank.png")) is not None

    text = _write(tmp_path, {}, visuals=[], distance_errors={}).read_text()
    assert "No results." in text and "No frames were sampled." in text


def test_latency_from_per_frame_list_when_json_has_none(tmp_path):
    text = _write(tmp_path, {"student": _metrics(900.0)},
                  latencies={"student": [10.0] * 50 + [30.0] * 50}).read_text()
    assert "| student | 20.0 | 30.0 | n/a | n/a |" in text
    assert (tmp_path / "report" / "latency_hist.png").is_file()


def test_mismatched_visual_is_a_clear_error(tmp_path):
    bad = _visual()
    bad.predictions["classical"] = np.zeros((H + 1, W), np.float32)
    with pytest.raises(ValueError, match="classical"):
        _write(tmp_path, {"classical": _metrics(1.0)}, visuals=[bad])
