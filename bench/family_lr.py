"""Learning-rate probe per adapter family: which learning rates let each family learn in one short trial.

Trains every family of a space (with its default parameters, on all layers' linear modules) for one
trial at each of a few learning rates, and writes each run's validation curve to
``bench/results/<date>-<name>.json`` plus a markdown table. A search space's per-family learning-rate
ranges (``adapters.<family>.learning_rate``) are set from it: a family that is still at the majority
class after a trial at some learning rate wastes every trial a search gives it there, because ASHA
stops it at its first rung.

    python -m bench.family_lr --glue-dir ../shared/data/glue --lrs 1e-3,5e-3,2e-2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from autopeft.process import configure_process

RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.family_lr", description=__doc__.split("\n\n")[0])
    p.add_argument("--glue-dir", default="../shared/data/glue")
    p.add_argument("--space", default="all-adapters", help="ready space or YAML whose families are probed")
    p.add_argument("--families", help="comma-separated subset of the space's families (default: all it keeps)")
    p.add_argument("--lrs", default="1e-3,5e-3,2e-2", help="comma-separated learning rates")
    p.add_argument("--trial-steps", type=int, default=100)
    p.add_argument("--eval-interval", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-train", type=int, default=8000)
    p.add_argument("--max-validation", type=int, default=1000,
                   help="validation sentences: dev.tsv's, topped up from train.tsv (0: dev.tsv's only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--name", default="family-lr")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    try:
        args.lrs = [float(x) for x in args.lrs.split(",") if x.strip()]
    except ValueError:
        p.error(f"--lrs: expected comma-separated numbers, found {args.lrs!r}")
    if not args.lrs or min(args.lrs) <= 0:
        p.error(f"--lrs: expected positive learning rates, found {args.lrs}")
    if args.eval_interval > args.trial_steps:
        p.error("--eval-interval must be at most --trial-steps")
    return args


def representative(spec: Any) -> Any:
    """One value of a parameter spec for a single run: a fixed value as is, the lower middle of a
    choice (r 8 of 4/8/16), the middle of a range (geometric when it is on a log scale)."""
    from autopeft.space import ChoiceSpec, RangeSpec

    if isinstance(spec, ChoiceSpec):
        return spec.encoded()[(len(spec.choices) - 1) // 2]
    if isinstance(spec, RangeSpec):
        mid = (spec.low * spec.high) ** 0.5 if spec.log else (spec.low + spec.high) / 2
        return int(round(mid)) if spec.is_int else mid
    return spec


def family_config(space: Any, family: str) -> dict[str, Any]:
    """``family``'s own parameters (the space's, else the family's defaults) at one value each,
    keyed as a sampled trial config keys them."""
    from autopeft.adapters import get_family

    params = get_family(family).resolve_params(space.own_params(family))
    return {f"{family}.{name}": representative(spec) for name, spec in params.items()}


def families_to_probe(space: Any, space_name: str, subset: str | None,
                      model: str = "minilm") -> tuple[list[str], dict[str, str]]:
    """The space's families this model can run (in the space's order), and the excluded ones with why."""
    from autopeft.adapters.fit import fit_to_model
    from autopeft.config import ModelConfig
    from autopeft.model.loading import resolve_location
    from autopeft.tasks import get_task

    kind = get_task("sequence_classification")
    structure = kind.structure(ModelConfig(name_or_path=model), resolve_location(model), ["0", "1"])
    fit = fit_to_model(space, structure, "sequence_classification")
    kept = fit.kept
    if subset:
        wanted = [x.strip() for x in subset.split(",") if x.strip()]
        unknown = [w for w in wanted if w not in kept]
        if unknown:
            raise SystemExit(f"--families: {unknown} not among the families {space_name} keeps: {', '.join(kept)}")
        kept = wanted
    return kept, fit.excluded


def markdown(result: dict[str, Any]) -> str:
    lrs = result["lrs"]
    lines = [f"# {result['name']}", "", f"`{result['command']}`", "",
             f"Validation accuracy after {result['trial_steps']} steps (and at step {result['eval_interval']}), "
             f"one seed; majority class {result['majority']:.3f}.", "",
             "| family | params | " + " | ".join(f"LR {lr:g}" for lr in lrs) + " |",
             "| --- | --- | " + " | ".join("---" for _ in lrs) + " |"]
    by_family: dict[str, dict[float, dict[str, Any]]] = {}
    for row in result["runs"]:
        by_family.setdefault(row["family"], {})[row["lr"]] = row
    for family, runs in by_family.items():
        params = next(iter(runs.values())).get("trainable_params", "")
        cells = []
        for lr in lrs:
            row = runs.get(lr)
            if row is None:
                cells.append("")
            elif row.get("error"):
                cells.append("error")
            else:
                curve = row["curve"]
                first = curve[0][1] if len(curve) > 1 else None
                cells.append(f"{curve[-1][1]:.3f}" + (f" ({first:.3f})" if first is not None else ""))
        lines.append(f"| {family} | {params} | " + " | ".join(cells) + " |")
    if result["excluded"]:
        lines += ["", "Excluded on this model: " + "; ".join(f"{k} ({v})" for k, v in result["excluded"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    configure_process()
    args = parse_args(argv)
    from autopeft.space import load_space

    space = load_space(args.space)
    families, excluded = families_to_probe(space, args.space, args.families)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"{dt.date.today().isoformat()}-{args.name}"
    command = "python -m bench.family_lr " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="family-lr-") as work:  # splits, tokenizer cache
        probe(args, space, families, excluded, Path(work), base, command)
    return 0


def probe(args: argparse.Namespace, space: Any, families: list[str], excluded: dict[str, str], work: Path,
          base: Path, command: str) -> None:
    """Train each family at each learning rate; rewrite ``base``.json/.md after every run, so a
    stopped probe keeps what it measured."""
    from bench.data import prepare_task
    from bench.methods import Context, tokenized, train_one

    files = prepare_task("sst2", Path(args.glue_dir), work / "data", max_train=args.max_train,
                         max_validation=args.max_validation or None, max_test=None,
                         top_up_validation=bool(args.max_validation))
    ctx = Context(files=files, seed=args.seed, workdir=work / "runs", trial_steps=args.trial_steps,
                  budget_steps=args.trial_steps, eval_interval=args.eval_interval, cpus=args.cpus)
    _, data = tokenized(ctx)
    labels = list(data.splits["validation"].labels)
    majority = max(labels.count(v) for v in set(labels)) / len(labels)
    result: dict[str, Any] = {"name": args.name, "command": command, "lrs": args.lrs, "trial_steps": args.trial_steps,
                              "eval_interval": args.eval_interval, "batch_size": args.batch_size, "seed": args.seed,
                              "sizes": files.sizes, "majority": majority, "excluded": excluded, "runs": []}
    for family in families:
        for lr in args.lrs:
            config = {"adapter": family, **family_config(space, family),
                      "placement.layers": "all", "placement.roles": "all-linear",
                      "learning_rate": lr, "batch_size": args.batch_size, "warmup_ratio": 0.06}
            started = time.perf_counter()
            row: dict[str, Any] = {"family": family, "lr": lr, "config": config}
            try:
                trained = train_one(ctx, config)
                row.update(curve=trained["curve"], trainable_params=trained["built"].trainable_params)
            except Exception as exc:  # one family failing must not lose the others' results
                row["error"] = f"{type(exc).__name__}: {exc}"
            row["wall_s"] = round(time.perf_counter() - started, 1)
            result["runs"].append(row)
            print(family, lr, row.get("curve", row.get("error")), row["wall_s"], flush=True)
            base.with_suffix(".json").write_text(json.dumps(result, indent=1))
            base.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    raise SystemExit(main())
