"""``dmd3c train --recipe FILE``: the whole making of a shipped student in one command.

A recipe YAML names the synthetic caches to build, the training runs in order (each a
``config/train/*.yaml`` of its own) and the exports of the result::

    caches:
      - {out: ../../out/synthetic_cache, train: "0:40", val: "5000:5006", stage1: true}
      - {kind: surround, out: ../../out/surround_cache, seeds: "0:12"}   # lidar: vlp32 (default)
      - {kind: surround, out: ../../out/surround_cache, seeds: "5000:5002", split: val}
    runs:
      - pretrain_residual.yaml
      - finetune_residual_geo.yaml
    exports:
      - {run: finetune_residual_geo.yaml, out: ../../out/recipe/student.onnx,
         input_size: [352, 1216], classical_resolution: image,
         mono_model: ../../models/student_mono.yaml}

Paths are relative to the recipe file. Every step resumes: a cache keeps the frames it has,
a run with a ``result.json`` for its full schedule is done, a run with a ``last.safetensors``
continues from it. Runs validate on the real frames of ``../shared/data`` when they are there
(``evaluation.real_frames``; ``select: real`` configs need them). ``device`` and ``threads``
override every run's (``--device cuda`` runs the same recipe on a GPU).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml


def _seeds(text: str) -> list[int]:
    start, stop = (int(v) for v in str(text).split(":"))
    return list(range(start, stop))


def load_recipe(path) -> dict:
    """The recipe mapping with absolute paths; ValueError on a missing or unknown key."""
    path = Path(path).resolve()
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - {"caches", "runs", "exports"}
    if unknown or "runs" not in raw:
        raise ValueError(f"{path}: a recipe has 'caches', 'runs' and 'exports' "
                         f"(unknown: {sorted(unknown)})")
    base = path.parent
    caches = [dict(c) for c in raw.get("caches") or []]
    for cache in caches:
        cache["out"] = str((base / cache["out"]).resolve())
    runs = [str((base / run).resolve()) for run in raw["runs"]]
    exports = []
    for item in raw.get("exports") or []:
        item = dict(item)
        item["run"] = str((base / item["run"]).resolve())
        item["out"] = str((base / item["out"]).resolve())
        if item.get("mono_model"):
            item["mono_model"] = str((base / item["mono_model"]).resolve())
        if item["run"] not in runs:
            raise ValueError(f"{path}: export of {item['run']}, which is not one of the runs")
        exports.append(item)
    return {"path": str(path), "caches": caches, "runs": runs, "exports": exports}


def share_weights(result: dict, weights: str) -> dict:
    """Point an export's spec at ``weights`` (the same tensors, written by an earlier export of
    the same run) and remove its own copy; returns the updated export result."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from dmd3c_ros.runtime.spec import load_spec
    own = Path(result["weights"])
    mine, theirs = load_file(str(own)), load_file(str(weights))
    if mine.keys() != theirs.keys() or any(not mine[k].equal(theirs[k]) for k in mine):
        raise ValueError(f"{own} and {weights} hold different tensors")
    spec = load_spec(result["spec"])
    if spec.torch is not None:
        replace(spec, torch=replace(spec.torch, weights=Path(weights).resolve())).save(spec.path)
    own.unlink()
    return {**result, "weights": str(Path(weights).resolve())}


def run_recipe(path, *, device: str | None = None, threads: int | None = None,
               progress: bool = True, log=print) -> dict:
    """Build the cache, train every run (skipping finished ones, resuming interrupted ones) and
    export; returns {"runs": {config: result}, "exports": [...], "seconds": {...}}."""
    from dmd3c_ros.evaluation.real_frames import RealValidation
    from dmd3c_ros.training.export import export_student
    from dmd3c_ros.training.synthetic import CacheSpec, build_cache
    from dmd3c_ros.training.trainer import TrainConfig, train
    recipe = load_recipe(path)
    seconds: dict[str, float] = {}
    for number, cache in enumerate(recipe["caches"]):
        start = time.perf_counter()

        def show(done, total, elapsed):
            if done % 20 == 0 or done == total:
                log(f"cache: {done}/{total} frames, {elapsed:.0f} s")

        if cache.get("kind", "front") == "surround":  # the six-camera rig (training.multiview)
            from dmd3c_ros.training.multiview import build_surround_cache
            build_surround_cache(cache["out"], _seeds(cache.get("seeds", "0:12")),
                                 frames_per_drive=int(cache.get("frames_per_drive", 8)),
                                 image_scale=float(cache.get("image_scale", 0.5)),
                                 lidar=str(cache.get("lidar", "vlp32")),
                                 split=cache.get("split", "train"), progress=show)
        else:
            spec = CacheSpec({"train": _seeds(cache.get("train", "0:40")),
                              "val": _seeds(cache.get("val", "5000:5006"))},
                             frames_per_drive=int(cache.get("frames_per_drive", 8)))
            build_cache(cache["out"], spec, stage1=bool(cache.get("stage1", True)),
                        progress=show)
        seconds[f"cache {number}"] = time.perf_counter() - start
    results = {}
    real = {}
    for config_path in recipe["runs"]:
        config = TrainConfig.load(config_path, device=device, threads=threads,
                                  progress=progress)
        name = Path(config_path).name
        out = Path(config.out)
        done = out / "result.json"
        finished = json.loads(done.read_text()) if done.is_file() else {}
        if finished.get("steps") == config.steps and (out / "best.safetensors").is_file():
            log(f"{name}: done before ({done})")
            results[name] = finished
            continue
        key = (config.depth_scale, config.max_depth)
        if key not in real:  # the frames are loaded once per depth range
            real[key] = RealValidation.for_config(config, log=log)
        start = time.perf_counter()
        resume = (out / "last.safetensors").is_file()
        log(f"{name}: {'resuming' if resume else 'starting'} {config.stage} in {out}")
        results[name] = train(config, resume=resume, extra_validation=real.get(key), log=log)
        seconds[name] = time.perf_counter() - start
    exports, weights = [], {}
    for item in recipe["exports"]:
        run = TrainConfig.load(item["run"])
        onnx = Path(item["out"])
        result = export_student(Path(run.out) / "best.safetensors", onnx.parent, onnx.stem,
                                input_size=tuple(item.get("input_size", (352, 1216))),
                                mono_model=item.get("mono_model"),
                                classical_resolution=item.get("classical_resolution", "image"),
                                features=item.get("features", "auto"))
        if item["run"] in weights:  # the same weights at another input size: one copy
            result = share_weights(result, weights[item["run"]])
        weights.setdefault(item["run"], result["weights"])
        exports.append(result)
        log(f"exported {result['spec']} (sha256 {result['sha256']})")
    return {"runs": results, "exports": exports, "seconds": seconds}
