"""Ablation of the distillation terms: the same finetune run with each term switched off in turn.

    python -m dmd3c_ros.training.ablation --config config/train/finetune_tiny.yaml \
        --steps 600 --out out/ablation [--threads 1]

Every run starts from the config's ``init`` weights with the same seed, crops and step budget;
only one weight differs. Figures are the trainer's validation on the synthetic validation drives
(never the real samples) after the last step. Prints a Markdown table and writes it, with the
command, to OUT/ablation.md (plus OUT/ablation.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from dmd3c_ros.training.trainer import DISTILLATION_TERMS, TrainConfig, train

COLUMNS = (("hdl64_rmse_m", "RMSE HDL-64 (m)"), ("hdl64_mae_m", "MAE HDL-64 (m)"),
           ("beams16_rmse_m", "RMSE 16 beams (m)"), ("mono_absrel", "AbsRel mono"))


def variants(config: TrainConfig) -> list[tuple[str, dict]]:
    """(label, weights): the full recipe, each active distillation term off, and all off."""
    active = [t for t in DISTILLATION_TERMS if config.weights.get(t, 0.0)]
    runs = [("full recipe", dict(config.weights))]
    runs += [(f"without {t}", {**config.weights, t: 0.0}) for t in active]
    runs.append(("no distillation", {**config.weights, **{t: 0.0 for t in active}}))
    return runs


def table(rows: list[dict]) -> str:
    head = "| run | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        lines.append(f"| {row['label']} | " + " | ".join(f"{row['val'][k]:.3f}"
                                                      for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="finetune config YAML")
    p.add_argument("--steps", type=int, required=True, help="step budget of every run")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int)
    p.add_argument("--only", action="append", help="run only these labels (repeatable)")
    args = p.parse_args(argv)
    base = TrainConfig.load(args.config, steps=args.steps, threads=args.threads)
    if base.stage != "finetune":
        raise SystemExit("the ablation is of the finetune stage's distillation terms")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, weights in variants(base):
        if args.only and label not in args.only:
            continue
        run_dir = out / label.replace(" ", "_")
        config = dataclasses.replace(base, weights=weights, out=str(run_dir),
                                     val_every=args.steps, checkpoint_every=args.steps,
                                     progress=False)
        start = time.perf_counter()
        result = train(config, log=lambda *_: None)
        rows.append({"label": label, "weights": weights, "val": result["last"],
                     "seconds": time.perf_counter() - start})
        print(f"{label}: {json.dumps(result['last'])}", flush=True)
    command = "python -m dmd3c_ros.training.ablation " + " ".join(argv or sys.argv[1:])
    text = (f"Command: `{command}`\n\nSteps per run: {args.steps}; init: {base.init}; "
            f"validation: {base.val_frames} synthetic validation frames.\n\n{table(rows)}\n")
    (out / "ablation.md").write_text(text)
    (out / "ablation.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
