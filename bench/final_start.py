"""Where a final training should start: the selected config trained again from its
initialisation, or the selected trial's adapter continued (``budget.final_from``).

In the QNLI runs of 2026-12-02 (``bench/results/2026-12-02-qnli-targets*``) the 400-step final
training of the portfolio's LoRA (r16, last 4 layers, attention, 2e-3) fell to a constant
prediction in 3 of 4 seeds, although its 100-step trial had learnt. This probe replays that one
config on the bench's QNLI splits with autopeft's own training loop (same seed, same batches,
same evaluation as the bench's trials), for the variants named on the command line:

- ``init``: 400 steps from the initialisation (what the bench's final training did);
- ``trial``: the 100-step trial, then 400 steps continuing its adapter with a new schedule;
- ``trial@0.5``: the same at half the trial's peak rate (``@`` scales the rate of any variant).

Each variant's validation curve, the step kept (its best evaluation) and the kept weights'
test accuracy are appended to ``--out`` as one JSON line::

    python -m bench.final_start --seeds 0,2 --variants init,trial,trial@0.5

Results: ``bench/NOTES.md``, *The final training continues the trial*.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

#: The portfolio's entry that won QNLI seeds 0, 2 and 3 (``lora-top-attention``), as the bench ran it.
CONFIG: dict[str, Any] = {
    "adapter": "lora", "lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.1, "placement.layers": "last-4",
    "placement.roles": "query,key,value,attention_output", "learning_rate": 2e-3, "batch_size": 16,
    "warmup_ratio": 0.06, "lora.rslora": False, "lora.init": "default", "lora.rank_pattern": "uniform",
    "weight_decay": 0.0}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--glue-dir", default="../shared/data/glue")
    p.add_argument("--task", default="qnli")
    p.add_argument("--seeds", default="0")
    p.add_argument("--variants", default="init,trial")
    p.add_argument("--trial-steps", type=int, default=100)
    p.add_argument("--final-steps", type=int, default=400)
    p.add_argument("--final-interval", type=int, default=50)
    p.add_argument("--workdir", default="bench/results/tmp/final-start")
    p.add_argument("--out", default=f"bench/results/{time.strftime('%Y-%m-%d')}-final-start.jsonl")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from bench.data import load_task, prepare_task
    from bench.methods import Context

    # the glue-targets config's splits (bench/configs/glue-targets.yaml)
    work = Path(args.workdir)
    files = prepare_task(load_task(args.task, args.glue_dir), args.glue_dir, work / "data", max_train=8000,
                         max_validation=2000, max_test=None)
    torch.set_num_threads(2)
    for seed in (int(s) for s in args.seeds.split(",")):
        ctx = Context(files=files, seed=seed, workdir=work / "work", trial_steps=args.trial_steps, eval_interval=25,
                      metric=files.metric)
        for variant in args.variants.split(","):
            row = run_variant(ctx, variant, final_steps=args.final_steps, final_interval=args.final_interval)
            print(json.dumps(row), flush=True)
            with Path(args.out).open("a") as out:
                out.write(json.dumps(row) + "\n")


def run_variant(ctx: Any, variant: str, *, final_steps: int, final_interval: int) -> dict[str, Any]:
    """One variant (``init`` or ``trial``, optionally ``@scale``) on one seed: its curves, the
    step its best evaluation was at and that evaluation's weights' test metric."""
    import torch

    from autopeft.engine.training import BestWeights, build_adapter, train
    from bench.methods import test_metric, tokenized

    start, _, scale = variant.partition("@")
    if start not in ("init", "trial"):
        raise SystemExit(f"--variants: expected init or trial (with @scale), found {variant!r}")
    started = time.perf_counter()
    cpu = torch.device("cpu")
    spec, data = tokenized(ctx)
    built = build_adapter(spec, CONFIG)
    trial_curve: list[tuple[int, float]] = []
    if start == "trial":
        train(built, spec, data, CONFIG, device=cpu,
              on_eval=lambda m, s: trial_curve.append((int(m["step"]), float(m[ctx.metric]))))
    config = {**CONFIG, "learning_rate": CONFIG["learning_rate"] * float(scale or 1.0)}
    best = BestWeights(ctx.metric, "max")
    curve: list[tuple[int, float]] = []

    def record(metrics: dict[str, Any], _state: Any) -> None:
        curve.append((int(metrics["step"]), float(metrics[ctx.metric])))
        best.offer(built.model, metrics, int(metrics["step"]))

    train(built, dataclasses.replace(spec, max_steps=final_steps, eval_interval=final_interval), data, config,
          on_eval=record, device=cpu)
    best.restore(built.model)
    return {"task": ctx.files.task, "seed": ctx.seed, "variant": variant, "trial_curve": trial_curve,
            "final_curve": curve, "kept_step": best.step, "val": best.value, "test": test_metric(ctx, built.model),
            "wall_s": round(time.perf_counter() - started)}


if __name__ == "__main__":
    main()
