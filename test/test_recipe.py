"""dmd3c train --recipe: cache, runs in order (finished ones skipped, interrupted ones resumed)
and exports, the same weights at two input sizes kept once."""
from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from dmd3c_ros.cli import main  # noqa: E402
from dmd3c_ros.recipe import load_recipe, run_recipe  # noqa: E402
from dmd3c_ros.runtime.factory import create_backend  # noqa: E402
from dmd3c_ros.runtime.spec import load_spec  # noqa: E402

RUN = dict(steps=2, batch_size=2, crop=[64, 128], lr=1e-3, warmup_steps=1, threads=1,
           val_every=2, checkpoint_every=1, val_frames=1, log_every=1, real_val=False,
           depth_scale=120.0, max_depth=120.0, beam_probs={64: 1.0},
           weights={"depth": 1.0, "log": 0.5})


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    (root / "pre.yaml").write_text(yaml.safe_dump(
        {**RUN, "stage": "pretrain", "cache": "cache", "out": "runs/pre", "variant": "residual"}))
    (root / "fine.yaml").write_text(yaml.safe_dump(
        {**RUN, "stage": "finetune", "cache": "cache", "out": "runs/fine", "ema": 0.5,
         "variant": "residual_geo", "init": "runs/pre/best.safetensors", "init_strict": False}))
    (root / "views.yaml").write_text(yaml.safe_dump(
        {**RUN, "stage": "finetune", "cache": "cache", "out": "runs/views",
         "surround_cache": "surround", "view_samples": 8, "beam_probs": {32: 1.0},
         "variant": "residual_geo", "init": "runs/fine/best.safetensors", "init_strict": False,
         "weights": {"depth": 1.0, "xview": 1.0, "vrel": 0.5}}))
    (root / "recipe.yaml").write_text(yaml.safe_dump({
        "caches": [{"out": "cache", "train": "6:7", "val": "5006:5007", "frames_per_drive": 2,
                    "stage1": True},
                   {"kind": "surround", "out": "surround", "seeds": "0:1",
                    "frames_per_drive": 1, "image_scale": 0.25, "lidar": "hdl32"}],
        "runs": ["pre.yaml", "fine.yaml", "views.yaml"],
        "exports": [{"run": "fine.yaml", "out": "models/r.onnx", "input_size": [64, 128]},
                    {"run": "fine.yaml", "out": "models/r_wide.onnx", "input_size": [64, 192],
                     "classical_resolution": "input"},
                    {"run": "views.yaml", "out": "models/r_views.onnx",
                     "input_size": [64, 192], "classical_resolution": "input"}]}))
    lines = []
    result = run_recipe(root / "recipe.yaml", progress=False, log=lines.append)
    return root, result, lines


def test_recipe_trains_every_run_and_exports(recipe):
    root, result, lines = recipe
    assert set(result["runs"]) == {"pre.yaml", "fine.yaml", "views.yaml"}
    surround = json.loads((root / "surround" / "index.json").read_text())  # the rig's cache
    assert surround["lidar"] == "hdl32"                          # the LiDAR the recipe names
    views = load_spec(root / "models" / "r_views.yaml")           # its own weights
    assert views.torch.weights.name == "r_views.safetensors"
    assert all(r["steps_run"] == 2 for r in result["runs"].values())
    assert any(line.startswith("cache: 4/4 frames") for line in lines)
    narrow, wide = (load_spec(root / "models" / name) for name in ("r.yaml", "r_wide.yaml"))
    assert narrow.classical_resolution == "image" and wide.classical_resolution == "input"
    assert tuple(wide.input_size) == (64, 192)
    assert wide.torch.weights == narrow.torch.weights            # one copy of the weights
    assert not (root / "models" / "r_wide.safetensors").exists()
    for spec in (narrow, wide):
        backend = create_backend("torch", spec)                   # the kept weights load
        assert backend.spec.classical_input == "classical"


def test_recipe_skips_finished_runs_and_resumes_interrupted_ones(recipe):
    root, first, _ = recipe
    (root / "runs" / "fine" / "result.json").unlink()             # as if stopped after step 2
    lines = []
    again = run_recipe(root / "recipe.yaml", progress=False, log=lines.append)
    assert "pre.yaml: done before" in " ".join(lines)
    assert any(line.startswith("fine.yaml: resuming") for line in lines)
    assert again["runs"]["fine.yaml"]["steps_run"] == 0          # nothing left to run
    assert again["runs"]["pre.yaml"] == first["runs"]["pre.yaml"]
    assert again["exports"][0]["sha256"] == first["exports"][0]["sha256"]


def test_recipe_file_errors(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"runs": [], "cache": {}}))
    with pytest.raises(ValueError, match="unknown"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(
        {"runs": ["a.yaml"], "exports": [{"run": "b.yaml", "out": "m.onnx"}]}))
    with pytest.raises(ValueError, match="not one of the runs"):
        load_recipe(tmp_path / "r.yaml")
    assert main(["train", "--recipe", str(tmp_path / "r.yaml"), "--steps", "3"]) == 2
    assert "give --recipe alone" in capsys.readouterr().err


def test_recipe_of_the_shipped_student_names_existing_configs():
    from pathlib import Path
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "config" / "train"
                         / "recipe_residual.yaml")
    assert [Path(run).name for run in recipe["runs"]] == [
        "pretrain_residual.yaml", "finetune_residual_geo.yaml",
        "finetune_residual_geo_footprint.yaml", "finetune_residual_geo_views.yaml"]
    assert [c.get("kind", "front") for c in recipe["caches"]] == ["front", "surround",
                                                                  "surround"]
    assert recipe["caches"][2]["split"] == "val"
    assert all(Path(run).is_file() for run in recipe["runs"])
    # Each run starts from the one before it.
    from dmd3c_ros.training.train_config import TrainConfig
    configs = [TrainConfig.load(run) for run in recipe["runs"]]
    for before, after in zip(configs, configs[1:]):
        assert after.init == str(Path(before.out) / "best.safetensors")
    assert [Path(e["run"]).name for e in recipe["exports"]] == [
        "finetune_residual_geo_footprint.yaml", "finetune_residual_geo_views.yaml"]
    assert configs[-1].surround_cache == recipe["caches"][1]["out"]
    assert [Path(e["out"]).name for e in recipe["exports"]] == ["student.onnx",
                                                                "student_surround.onnx"]
    assert json.dumps(recipe)  # plain data


def test_recipe_that_remakes_the_shipped_weights_differs_only_in_its_start():
    """recipe_shipped.yaml: stage 2b from the shipped version 5 weights, then stage 3 from it;
    each run is the recipe's own config apart from where it starts and writes."""
    from pathlib import Path

    from dmd3c_ros.training.train_config import TrainConfig
    folder = Path(__file__).resolve().parents[1] / "config" / "train"
    shipped, full = (load_recipe(folder / name) for name in ("recipe_shipped.yaml",
                                                             "recipe_residual.yaml"))
    assert shipped["caches"] == full["caches"]          # the same data
    first, second = (TrainConfig.load(run) for run in shipped["runs"])
    assert Path(first.init) == (folder.parents[1] / "models" / "student_v5.safetensors")
    assert Path(first.init).is_file()
    assert second.init == str(Path(first.out) / "best.safetensors")
    for mine, theirs in zip((first, second), (TrainConfig.load(r) for r in full["runs"][2:])):
        assert {k: v for k, v in vars(mine).items() if k not in ("init", "out")} == {
            k: v for k, v in vars(theirs).items() if k not in ("init", "out")}
    assert [Path(e["out"]).parent.name for e in shipped["exports"]] == ["remake", "remake"]
    assert [{k: v for k, v in e.items() if k not in ("run", "out")} for e in shipped["exports"]] \
        == [{k: v for k, v in e.items() if k not in ("run", "out")} for e in full["exports"]]
