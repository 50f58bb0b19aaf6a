"""``dmd3c eval --live``: a bag played through the completion node, once per compared model."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .records import clean, distance_errors
from .runs import _visual_class, plan_models, unique_name
from .sources import open_bag


def evaluate_live(source, *, backends=("auto",), models=(), image_topics=(),
                  camera_info_topics=(), points_topic: str | None = None, gt_topics=(),
                  lidar_to_camera=None, slop: float = 0.05, max_visuals: int = 4,
                  progress: Callable[[str], None] | None = None, **ignored):
    """``dmd3c eval --live``: play the bag through the completion node
    (``ros.live_eval.play_and_record``) once per compared backend / model; the same return values
    as ``offline.evaluate``.

    The node gets ``lidar_to_camera`` as a parameter: the one given, else the bag's /tf_static
    (read here). Offline-only options (``lidar_split``, KITTI) are errors.
    """
    try:
        from dmd3c_ros.ros import live_eval  # rclpy lives in ros/ only
    except ImportError as error:
        raise ValueError(f"--live needs rclpy ({error})") from None
    if ignored.get("mono") or ignored.get("gt_max_depth") is not None:
        raise ValueError("--mono and --gt-max-depth apply to offline evaluation, not --live")
    if ignored.get("lidar_split") is not None or ignored.get("kind") == "kitti":
        raise ValueError("--live plays a bag with a ground-truth depth topic: no --lidar-split "
                         "or --kitti")
    image_topics, gt_topics = list(image_topics or []), list(gt_topics or [])
    if len(image_topics) != 1 or not points_topic or len(gt_topics) > 1:
        raise ValueError("--live needs one --image-topic, --points-topic and at most one "
                         "--gt-topic")
    info = (list(camera_info_topics or []) or [None])[0]
    ((_, frames),) = open_bag(source, image_topics=image_topics, camera_info_topics=[info],
                              points_topic=points_topic, slop=slop,
                              lidar_to_camera=lidar_to_camera)
    transform = frames.lidar_to_camera
    frames.close()
    topics = {"image": image_topics[0], "camera_info": frames.topics.resolved()["camera_info"],
              "points": points_topic, "gt": gt_topics[0] if gt_topics else None}
    names, results, latencies, distance, visuals, runs = [], {}, {}, {}, [], {}
    Visual = _visual_class()
    for backend, model in plan_models(backends, models):
        name = unique_name(backend if model is None else f"{backend}:{Path(model).stem}", names)
        names.append(name)
        report = (lambda played, total, answered, name=name: progress(
            f"{name}: played {played}/{total}, answered {answered}")) if progress else None
        parameters = {"backend": backend, "sync_slop": slop,
                      "lidar_to_camera": [float(v) for v in transform.ravel()]}
        if model is not None:  # else the node's default model
            parameters["model"] = str(model)
        result = live_eval.play_and_record(source, topics=topics, progress=report,
                                           keep=max(max_visuals, 0), node_parameters=parameters)
        results[name], latencies[name] = result.to_results(name), list(result.latencies_ms)
        runs[name] = result.to_dict()
        truth = [distance_errors(x["depth"], x["gt"]) for x in result.samples]
        distance[name] = (np.concatenate([t for t, _ in truth]) if truth else np.zeros(0),
                          np.concatenate([e for _, e in truth]) if truth else np.zeros(0))
        for x in result.samples:
            if "rgb" in x:
                visuals.append(Visual(name=f"{name} {x['stamp_ns']}", rgb=x["rgb"],
                                      sparse=np.zeros(x["gt"].shape, np.float32), gt=x["gt"],
                                      predictions={name: x["depth"]}))
    summary = {"results": results, "run": clean({"source": str(source), "kind": "bag",
                                                 "mode": "live", "topics": topics,
                                                 "live": runs})}
    return summary, visuals, distance, latencies


__all__ = ["evaluate_live"]
