"""What the learning-rate calibration finds on a task: each family's range test, without Ray or MLflow.

    python -m bench.calibration_probe --task rte [--steps 50] [--lr-min 1e-5] [--families lora,dora,ia3]

Runs ``engine.calibration.probe_adapter`` as a study would (the middle config of the space for
each family, the study's batches), prints the range ``suggest_range`` picks or that it keeps the
space's, and the curve (rate: loss per step). The README's calibration table came from it (one
thread: ``taskset -c 0``, ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import yaml

from bench.data import prepare_task


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, help="a shipped task's name or a task file")
    p.add_argument("--space", default="lora-family")
    p.add_argument("--families", default="lora,dora,ia3")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--lr-min", type=float, default=1e-5)
    p.add_argument("--lr-max", type=float, default=1.0)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--max-train", type=int, default=4000)
    p.add_argument("--max-validation", type=int, default=200,
                   help="with --top-up-validation, SST-2's validation is topped up from train (its phrases leave train)")
    p.add_argument("--top-up-validation", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="the study's seed: it orders the probe's batches")
    p.add_argument("--save", help="append each family's curve and range to this JSON-lines file")
    p.add_argument("--glue-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    args = p.parse_args(argv)

    # deferred: torch, transformers and peft load with the study's code
    import torch

    from autopeft.config import resolve
    from autopeft.engine.calibration import probe_adapter, suggest_range
    from autopeft.engine.training import build_adapter
    from autopeft.study import prepare
    from autopeft.study.calibration import probe_config
    from autopeft.study.driver import study_spec, tokenize_study_data

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="calibration-probe-") as tmp:
        work = Path(tmp)
        files = prepare_task(args.task, args.glue_dir, work / "data", max_train=args.max_train,
                             max_validation=args.max_validation, max_test=10,
                             top_up_validation=args.top_up_validation)
        config = {"model": {"name_or_path": "minilm", "max_length": args.max_length},
                  "task": {"kind": files.kind},
                  "data": {"train": str(files.train), "validation": str(files.validation), "test": str(files.test),
                           "text_columns": files.text_columns, "label_column": files.label_column},
                  "space": args.space, "output_dir": str(work / "out"), "seed": args.seed,
                  "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}"}}
        (work / "search.yaml").write_text(yaml.safe_dump(config))
        prepared = prepare(resolve(work / "search.yaml"))
        data = tokenize_study_data(prepared)
        spec = study_spec(prepared, data)
        for family in args.families.split(","):
            probed = probe_config(prepared.resolved.space, family)
            started = time.perf_counter()
            curve = probe_adapter(build_adapter(spec, probed), spec, data, probed, lr_min=args.lr_min,
                                  lr_max=args.lr_max, steps=args.steps)
            found = suggest_range(curve)
            print(f"{files.task} {family}: {found.text() if found else 'loss never fell: the space range is kept'} "
                  f"({curve.steps} steps, stopped: {curve.stopped}, {time.perf_counter() - started:.0f}s)", flush=True)
            print("  " + " ".join(f"{lr:.0e}:{loss:.2f}" for lr, loss in zip(curve.lrs, curve.losses, strict=True)),
                  flush=True)
            if args.save:
                with open(args.save, "a") as out:
                    out.write(json.dumps({"task": files.task, "family": family, "seed": args.seed, "lrs": curve.lrs,
                                          "losses": curve.losses, "stopped": curve.stopped,
                                          "found": dataclasses.asdict(found) if found else None}) + "\n")


if __name__ == "__main__":
    main()
