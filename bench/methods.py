"""The methods compared at equal compute: each gets the same budget of training steps.

Every method returns one record per (task, seed): the test metric of the adapter it would hand
to a user (chosen on validation), that adapter's trainable parameters, the training steps it
used, its wall time and, where it ran several trials, each trial's steps and validation metric.

- ``autopeft-lora`` / ``autopeft-all``: the real ``prepare``/``run_search`` (TPE + ASHA, the
  built-in warm-start prior on, as a user gets it) over ``lora-family`` / ``all-adapters``.
- ``autopeft-lora-fifo``: the same without ASHA (for the early-stopping comparison).
- ``autopeft-lora-noprior``: the same with ASHA, without the built-in warm-start prior.
- ``random``: ``run_search`` with ``sampler: random``, pruning off, no warm-start prior, over
  ``lora-family``.
- ``random-final`` (with ``--final-steps``): the same over the budget less the final steps, then
  its best config trained again for them, as the autopeft searches do: a control, not a baseline.
- ``default``: peft's ``LoraConfig`` defaults (r=8, alpha=8, dropout 0, query+value on every
  layer), LR 2e-4, batch 16, trained for one trial's steps (training.py).
- ``grid``: rank x LR x target modules, each point a full trial (training.py), best on validation.
- ``hf-optuna``: ``transformers.Trainer.hyperparameter_search(backend="optuna")`` over LoRA
  r/alpha/LR through ``model_init``.
- ``autopeft-zero-config``: ``autopeft.search`` given only the model, a training file, a test file
  and a wall-clock budget (``time``): every other choice is the product's. Held to time, not
  steps: the wall time ``autopeft-lora`` took on the same task and seed in this run, else
  ``zero_config_time``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopeft.schema import CalibrationRun, Metric, TrialRunTags
from bench.data import TaskFiles

#: peft LoraConfig() defaults, in autopeft's trial-config form.
DEFAULT_CONFIG: dict[str, Any] = {
    "adapter": "lora", "lora.r": 8, "lora.alpha": 8, "lora.dropout": 0.0,
    "placement.layers": "all", "placement.roles": ["query", "value"],
    "learning_rate": 2e-4, "batch_size": 16, "warmup_ratio": 0.0,
}
DEFAULT_GRID: dict[str, list[Any]] = {
    "r": [4, 16],
    "learning_rate": [5e-4, 2e-3],
    "roles": [["query", "value"], "all-linear"],
}
HF_SPACE = {"r": [4, 8, 16, 32], "alpha": [8, 16, 32, 64], "learning_rate": (1e-4, 1e-2)}


@dataclass
class Context:
    """What every method of one (task, seed) shares."""

    files: TaskFiles
    seed: int
    workdir: Path
    model: str = "minilm"
    max_length: int = 64
    trial_steps: int = 100
    budget_steps: int = 800
    eval_interval: int = 25
    eval_batch_size: int = 64
    grace_period: int = 1
    prune_metric: str | None = None  # None: the objective
    prior_share: float | None = None  # most of a search's trials the warm-start prior takes; None: autopeft's default
    #: steps of each family's learning-rate probe (autopeft's calibration.steps); 0: off; None: autopeft's default
    calibration_steps: int | None = None
    final_steps: int = 0  # of an autopeft search's budget: steps training its selected config again (0: off)
    cpus: int = 2
    grid: dict[str, list[Any]] = field(default_factory=lambda: dict(DEFAULT_GRID))
    #: the task's metric (its task file's ``metric``; higher is better)
    metric: str = "accuracy"
    #: ``autopeft-zero-config``'s time budget when ``autopeft-lora`` did not run before it on this task and seed
    zero_config_time: str = "12m"
    #: The records of the methods that already ran on this task and seed in this bench run, by method
    earlier: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def full_trials(self) -> int:
        """Trials of full length that fit the budget (methods without early stopping)."""
        return max(1, self.budget_steps // self.trial_steps)

    @property
    def search_steps(self) -> int:
        """The step budget of an autopeft search's trials: the budget less its final training."""
        return self.budget_steps - self.final_steps

    @property
    def search_full_trials(self) -> int:
        """Trials of full length that fit a search's share of the budget (``full_trials`` less
        the final training's steps)."""
        return max(1, self.search_steps // self.trial_steps)


# --------------------------------------------------------------------------- shared pieces


_TOKENIZED: dict[tuple, Any] = {}


def tokenized(ctx: Context) -> tuple[Any, Any]:
    """(StudySpec, TokenizedData) for the baselines that call training.py directly: the same
    loading, splits and tokenization as autopeft's searches (cached per task and settings)."""
    from autopeft.config import DataConfig, ModelConfig
    from autopeft.data import load
    from autopeft.engine.training import StudySpec
    from autopeft.model.loading import load_tokenizer, resolve_location
    from autopeft.tasks import get_task, tokenize

    model_cfg = ModelConfig(name_or_path=ctx.model, max_length=ctx.max_length)
    location = resolve_location(ctx.model)
    key = (str(ctx.files.train), ctx.model, ctx.max_length)
    if key not in _TOKENIZED:
        data_cfg = DataConfig(train=str(ctx.files.train), validation=str(ctx.files.validation),
                              test=str(ctx.files.test), text_columns=ctx.files.text_columns,
                              label_column=ctx.files.label_column)
        raw = load(data_cfg, get_task(ctx.files.kind), seed=0)
        tok = load_tokenizer(model_cfg, location)
        _TOKENIZED[key] = tokenize(raw, tok, ctx.max_length, tokenizer_id=location,
                                   cache_dir=ctx.workdir.parent / "cache")
    data = _TOKENIZED[key]
    spec = StudySpec(model=model_cfg, location=location, task=ctx.files.kind,
                     label_names=data.label_names, max_steps=ctx.trial_steps, eval_interval=ctx.eval_interval,
                     eval_batch_size=ctx.eval_batch_size, seed=ctx.seed, metric=ctx.metric, mode=ctx.files.mode)
    return spec, data


def train_one(ctx: Context, config: dict[str, Any]) -> dict[str, Any]:
    """One adapter trained for a full trial with training.py; its validation curve and model."""
    import torch

    from autopeft.engine.training import build_adapter, train

    spec, data = tokenized(ctx)
    torch.set_num_threads(max(1, ctx.cpus))
    built = build_adapter(spec, config)
    curve: list[tuple[int, float]] = []
    state = train(built, spec, data, config, on_eval=lambda m, s: curve.append((int(m["step"]), float(m[ctx.metric]))),
                  device=torch.device("cpu"))
    return {"built": built, "state": state, "curve": curve, "val": curve[-1][1] if curve else float("nan")}


def test_metric(ctx: Context, model: Any) -> float:
    import torch

    from autopeft.engine.training import evaluate

    _, data = tokenized(ctx)
    return float(evaluate(model, data.splits["test"], data.pad_token_id, ctx.files.kind,
                          batch_size=ctx.eval_batch_size, device=torch.device("cpu"))[ctx.metric])


def _record(method: str, ctx: Context, *, test: float, val: float, params: int, steps: int, wall: float,
            trials: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"method": method, "task": ctx.files.task, "seed": ctx.seed, "metric": ctx.metric, "test_metric": test,
            "val_metric": val,
            "trainable_params": params, "total_steps": steps, "wall_time_s": wall, "trials": trials, **extra}


# --------------------------------------------------------------------------- training.py baselines


def run_default(ctx: Context) -> dict[str, Any]:
    started = time.perf_counter()
    out = train_one(ctx, DEFAULT_CONFIG)
    test = test_metric(ctx, out["built"].model)
    wall = time.perf_counter() - started
    trial = {"config": DEFAULT_CONFIG, "steps": out["state"].step, "val": out["val"], "curve": out["curve"],
             "train_time_s": out["state"].train_time_s, "eval_time_s": out["state"].eval_time_s}
    return _record("default", ctx, test=test, val=out["val"], params=out["built"].trainable_params,
                   steps=out["state"].step, wall=wall, trials=[trial])


def grid_points(ctx: Context) -> list[dict[str, Any]]:
    """The grid's configs; when it has more points than full trials fit the budget, an evenly
    spaced subset of them (so the grid never costs more than the budget)."""
    keys = list(ctx.grid)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(ctx.grid[k] for k in keys))]
    n = ctx.full_trials
    if len(points) > n:
        points = [points[int(i * len(points) / n)] for i in range(n)]
    configs = []
    for p in points:
        r = int(p.get("r", 8))
        configs.append({**DEFAULT_CONFIG, "lora.r": r, "lora.alpha": float(p.get("alpha", 2 * r)),
                        "learning_rate": float(p.get("learning_rate", 2e-4)),
                        "placement.roles": p.get("roles", ["query", "value"])})
    return configs


def run_grid(ctx: Context) -> dict[str, Any]:
    started = time.perf_counter()
    best: dict[str, Any] | None = None
    trials = []
    steps = 0
    for config in grid_points(ctx):
        out = train_one(ctx, config)
        steps += out["state"].step
        trials.append({"config": config, "steps": out["state"].step, "val": out["val"], "curve": out["curve"],
                       "train_time_s": out["state"].train_time_s, "eval_time_s": out["state"].eval_time_s})
        if best is None or out["val"] > best["val"]:
            best = {**out, "config": config}
        else:
            del out
    assert best is not None
    test = test_metric(ctx, best["built"].model)
    return _record("grid", ctx, test=test, val=best["val"], params=best["built"].trainable_params, steps=steps,
                   wall=time.perf_counter() - started, trials=trials, best_config=best["config"])


# --------------------------------------------------------------------------- autopeft searches


def search_config(ctx: Context, name: str, *, space: Any, sampler: str, pruning: bool, trials: int,
                  prior: bool = True, concurrent: int = 1, cpus_per_trial: float | None = None,
                  final_steps: int = 0, calibration: bool = True, step_budget: bool = True) -> dict[str, Any]:
    """An autopeft search config (as a user writes it) for this context; ``calibration=False``
    turns the learning-rate probes off whatever the bench's settings (the random-search
    baselines: a hand-rolled search has none). With ``step_budget`` the search may train the
    bench's budget less the final training (``budget.search_steps``, the probes' steps
    included), so no method trains more steps than another."""
    study = f"{name}-{ctx.files.task}-s{ctx.seed}-{time.strftime('%H%M%S')}-{time.time_ns() % 10**6}"
    return {
        "study_name": study,
        "model": {"name_or_path": ctx.model, "max_length": ctx.max_length},
        "task": {"kind": ctx.files.kind},
        "data": {"train": str(ctx.files.train), "validation": str(ctx.files.validation), "test": str(ctx.files.test),
                 "text_columns": ctx.files.text_columns, "label_column": ctx.files.label_column},
        "space": space,
        "objective": {"metric": ctx.metric, "mode": ctx.files.mode},
        "sampler": sampler,
        "warm_start": {"prior": prior, **({"prior_share": ctx.prior_share} if ctx.prior_share is not None else {})},
        "calibration": ({"enabled": False} if ctx.calibration_steps == 0 or not calibration else
                        {"steps": ctx.calibration_steps} if ctx.calibration_steps else {}),
        "budget": {"trials": trials, "max_steps": ctx.trial_steps, "eval_interval": ctx.eval_interval,
                   "concurrent_trials": concurrent, "cpus_per_trial": cpus_per_trial or ctx.cpus,
                   "eval_batch_size": ctx.eval_batch_size, "final_steps": final_steps or None,
                   "search_steps": ctx.budget_steps - final_steps if step_budget else None},
        "pruning": {"enabled": pruning, "grace_period": ctx.grace_period, "reduction_factor": 2,
                    "metric": ctx.prune_metric},
        "tracking": {"uri": f"sqlite:///{ctx.workdir / 'mlflow.db'}", "experiment": f"bench-{name}",
                     "registered_model": f"bench-{name}-{ctx.files.task}"},
        "output_dir": str(ctx.workdir / "autopeft-runs"),
        "seed": ctx.seed,
    }


def run_autopeft(ctx: Context, name: str, raw_config: dict[str, Any]) -> dict[str, Any]:
    """``prepare`` + ``run_search`` on ``raw_config`` with the bench probes attached."""
    import yaml

    from autopeft.config import resolve
    from autopeft.study import prepare, run_search
    from bench.probes import Timeline, timed_recorder

    ctx.workdir.mkdir(parents=True, exist_ok=True)
    path = ctx.workdir / f"{raw_config['study_name']}.yaml"
    path.write_text(yaml.safe_dump(raw_config, sort_keys=False))
    timeline = Timeline(ctx.metric)
    mlflow_time: dict[str, float] = {}
    started = time.perf_counter()
    with timed_recorder(mlflow_time):
        prepared = prepare(resolve(path))
        result = run_search(prepared, callbacks=[timeline])
    wall = time.perf_counter() - started
    trials = _trial_rows(sorted(result.trials, key=lambda t: timeline.started.get(t.trial_id, math.inf)), ctx.metric)
    best = result.best
    assert best is not None
    # the final training's steps count against the budget like the trials', whether its adapter or
    # the trial's was registered, and so do the learning-rate probes' before the search
    curve = final_curve(raw_config["tracking"]["uri"], result.parent_run_id, ctx.metric)
    final_trained = curve[-1][0] if curve else 0
    calibration_steps = study_metric(raw_config["tracking"]["uri"], result.parent_run_id, CalibrationRun.STEPS_TAKEN)
    return _record(
        name, ctx, test=_f(result.test_metrics.get(ctx.metric)), val=_f(result.reloaded_val_metrics.get(ctx.metric)),
        params=int(best.metrics.get("trainable_params") or 0),
        steps=sum(t["steps"] for t in trials) + final_trained + calibration_steps, calibration_steps=calibration_steps,
        wall=wall, final_steps=final_trained, final_curve=curve,
        final_train_eval_s=result.final_train_time_s + result.final_eval_time_s,
        trials=trials, search_wall_time_s=result.wall_time_s, phase_times_s=result.phase_times_s,
        timeline=timeline.as_dict(),
        mlflow_hook_time_s=mlflow_time, best_config=best.params, study=result.study_name,
        config={k: raw_config[k] for k in ("space", "sampler", "pruning", "budget", "warm_start", "calibration")},
        winner_source=winner_source(raw_config["tracking"]["uri"], best.run_id),
        calibration=calibration_outcomes(raw_config["tracking"]["uri"], result.parent_run_id),
        calibration_skipped=result.calibration_skipped,
        # the final training's evaluation that was registered, or why the trial's adapter was
        final_kept_step=result.final_kept_step,
        final_training_error=result.final_training_error,
    )


def study_metric(tracking_uri: str, parent_run_id: str, name: str) -> int:
    """A count the study logged on its parent run (0 where it logged none)."""
    from mlflow import MlflowClient

    return int(MlflowClient(tracking_uri=tracking_uri).get_run(parent_run_id).data.metrics.get(name, 0))


def final_curve(tracking_uri: str, parent_run_id: str, metric: str) -> list[tuple[int, float]]:
    """The final training's validation curve as the study run logged it, (step, value) in step
    order; empty when it ran none. Logged before the study decides which adapter to register, so
    a final training whose adapter lost to its trial's is here too: its steps were trained."""
    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri=tracking_uri).get_metric_history(parent_run_id, Metric.final(metric))
    return sorted((int(m.step), float(m.value)) for m in history)


def calibration_outcomes(tracking_uri: str, parent_run_id: str) -> dict[str, dict[str, Any]]:
    """{family: its probe's outcome and the range it set (None where it kept the space's)}, as the
    study's calibration run records them; empty when the study ran no probe."""
    from mlflow import MlflowClient

    from autopeft.report.sections import calibration_probes

    return {p.family: {"outcome": p.outcome, "low": p.low, "high": p.high}
            for p in calibration_probes(MlflowClient(tracking_uri=tracking_uri), parent_run_id)}


def winner_source(tracking_uri: str, run_id: str | None) -> str:
    """Where the registered trial's config came from: the warm start's source (``prior:...``,
    ``portfolio:...``, a file or an earlier study) as its trial run is tagged, else ``sampler``
    (one of the sampler's own draws)."""
    from mlflow import MlflowClient

    if run_id is None:
        return "unknown"
    tags = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).data.tags
    return TrialRunTags.from_tags(tags).warm_start or "sampler"


def _trial_rows(trials: list[Any], metric: str) -> list[dict[str, Any]]:
    """One row per trial of a search result (its ``TrialSummary``s), in the order given."""
    rows = []
    for t in trials:
        m = t.metrics
        rows.append({"trial_id": t.trial_id, "outcome": t.outcome, "family": m.get("family"),
                     "steps": int(m.get("step") or 0), "val": _f(m.get(metric)),
                     "train_time_s": _f(m.get("train_time_s")), "eval_time_s": _f(m.get("eval_time_s")),
                     "time_total_s": _f(m.get("time_total_s")), "trainable_params": m.get("trainable_params"),
                     # whether its last evaluation was still at the trivial predictor's level (None: not judged)
                     "trivial": bool(m[Metric.AT_TRIVIAL]) if Metric.AT_TRIVIAL in m else None,
                     "config": {k: v for k, v in t.params.items()}})
    return rows


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")



def run_autopeft_space(space: str, name: str, *, pruning: bool = True,
                       prior: bool = True) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        # with ASHA, twice the full trials the budget pays for (8 for a 4-trial budget, the
        # config's default): the step budget, not the count, ends the search unless ASHA stops
        # most trials at their first rung; the warm-start prior's share is of this count. With a
        # final training (ctx.final_steps), of the budget that is left to the search
        trials = 2 * ctx.search_full_trials if pruning else ctx.search_full_trials
        return run_autopeft(ctx, name, search_config(ctx, name, space=space, sampler="tpe", pruning=pruning,
                                                     trials=trials, prior=prior, final_steps=ctx.final_steps))
    return run


def run_random(ctx: Context) -> dict[str, Any]:
    cfg = search_config(ctx, "random", space="lora-family", sampler="random", pruning=False,
                        trials=ctx.full_trials, prior=False, calibration=False)
    return run_autopeft(ctx, "random", cfg)


def run_random_final(ctx: Context) -> dict[str, Any]:
    """A control for ``--final-steps``: random search as above over the search's share of the
    budget, then the same final training of its best config. Set beside the autopeft searches,
    it says how much of their result is the final training and how much the search."""
    cfg = search_config(ctx, "random-final", space="lora-family", sampler="random", pruning=False,
                        trials=ctx.search_full_trials, prior=False, final_steps=ctx.final_steps, calibration=False)
    return run_autopeft(ctx, "random-final", cfg)


# --------------------------------------------------------------------------- zero-config autopeft

#: The hand-written search the zero-config search is held to: its wall time is the time budget.
ZERO_CONFIG_REFERENCE = "autopeft-lora"


def zero_config_budget(ctx: Context) -> tuple[float, str]:
    """(seconds, where they come from): the wall time ``autopeft-lora`` took on this task and
    seed earlier in this bench run, else the ``zero_config_time`` setting."""
    from autopeft.config import parse_duration

    reference = ctx.earlier.get(ZERO_CONFIG_REFERENCE)
    if reference is not None and math.isfinite(_f(reference.get("wall_time_s"))):
        # whole seconds, rounded down: the zero-config search never gets more than the reference took
        return float(int(reference["wall_time_s"])), f"{ZERO_CONFIG_REFERENCE}'s wall time, seed {ctx.seed}"
    return parse_duration(ctx.zero_config_time), f"zero_config_time {ctx.zero_config_time}"


def write_zero_config_data(ctx: Context) -> tuple[Path, Path, int]:
    """The context's rows as the CSV files a user has: (train, test, text cells read back as missing).

    A zero-config user has one training file, and autopeft carves its validation out of it
    (``data.validation_fraction``). So its train file holds the rows every other method trains
    on AND the rows they select on (the bench's validation split): the same rows in all, split
    by autopeft instead of by the bench. Test is the same test split as every method's.
    """
    import pandas as pd

    columns = [*ctx.files.text_columns, ctx.files.label_column]
    train = pd.concat([pd.read_parquet(ctx.files.train)[columns], pd.read_parquet(ctx.files.validation)[columns]],
                      ignore_index=True)
    test = pd.read_parquet(ctx.files.test)[columns]
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    paths = ctx.workdir / f"{ctx.files.task}-train.csv", ctx.workdir / f"{ctx.files.task}-test.csv"
    missing = 0
    for frame, path in zip((train, test), paths, strict=True):
        frame.to_csv(path, index=False)
        # a CSV reader turns a sentence such as "null" or "NA" into a missing value (the reason
        # the bench's own splits are parquet); SST-2 and RTE hold none, but say so if one does
        missing += int(pd.read_csv(path)[ctx.files.text_columns].isna().any(axis=1).sum())
    return paths[0], paths[1], missing


def registered_test_accuracy(ctx: Context, adapter_dir: Path, test: Path) -> tuple[float, int]:
    """(accuracy, rows): the registered adapter, loaded with ``autopeft.load`` as a user would,
    on every row of the test file, as a check on the study's own test evaluation (the same rows
    since the plan subsamples validation alone, ``data.max_validation_examples``; before, its cap
    cut test too)."""
    import pandas as pd

    import autopeft

    frame = pd.read_csv(test, keep_default_na=False)
    predicted = autopeft.load(adapter_dir).predict(frame[ctx.files.text_columns], batch_size=ctx.eval_batch_size)
    hits = predicted["label"].astype(str).to_numpy() == frame[ctx.files.label_column].astype(str).to_numpy()
    return float(hits.mean()), len(frame)


def _said(lines: list[str]) -> dict[str, str]:
    """{field: value} of the lines a zero-config search says its choices in (``field = value: why``)."""
    import re

    return {m.group(1): m.group(2) for line in lines if (m := re.match(r"([\w.]+) = (.*?): ", line))}


def run_zero_config(ctx: Context) -> dict[str, Any]:
    """``autopeft.search(model, train, test, time)`` as a user calls it: the task, columns,
    metric, space, max_length, trials, steps and final training are all the product's choices
    (nothing of the bench's max_length, space or step budget reaches it). The settings only put
    its MLflow/Optuna stores and output folder into this method's work folder and give it the
    seed and a study name, as ``run_autopeft`` does for the hand-written searches."""
    import json

    import autopeft
    from autopeft.schema import Artifact

    train, test, missing = write_zero_config_data(ctx)
    budget_s, budget_source = zero_config_budget(ctx)
    tracking_uri = f"sqlite:///{ctx.workdir / 'mlflow.db'}"
    study = f"zero-config-{ctx.files.task}-s{ctx.seed}-{time.strftime('%H%M%S')}-{time.time_ns() % 10**6}"
    settings = {"tracking.uri": tracking_uri, "output_dir": str(ctx.workdir / "autopeft-runs"),
                "study_name": study, "seed": ctx.seed}
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(f"[bench]   zero-config: {line}", flush=True)

    given = f"{budget_s:.0f}s"
    print(f"[bench]   zero-config: time {given} ({budget_source})", flush=True)
    started = time.perf_counter()
    result = autopeft.search(model=ctx.model, train=train, test=test, time=given, settings=settings, on_line=say)
    wall = time.perf_counter() - started
    # outside the wall time: the same test rows as every other method's (see registered_test_accuracy)
    assert result.adapter_dir is not None
    test_accuracy, test_rows = registered_test_accuracy(ctx, result.adapter_dir, test)

    # what ran, as the study logged it: the resolved config (the inferred choices and the planned
    # budget) and the split sizes after the plan's subsampling
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    logged: dict[str, Any] = {}
    for name in (Artifact.CONFIG, Artifact.LINEAGE):
        local = client.download_artifacts(result.parent_run_id, name, str(ctx.workdir))
        logged[name] = json.loads(Path(local).read_text())
    config, sizes = logged[Artifact.CONFIG], logged[Artifact.LINEAGE].get("sizes") or {}
    budget, objective = config.get("budget") or {}, config.get("objective") or {}
    trials = _trial_rows(sorted(result.trials, key=lambda t: t.trial_id), ctx.metric)
    best = result.best
    assert best is not None
    curve = final_curve(tracking_uri, result.parent_run_id, ctx.metric)
    final_trained = curve[-1][0] if curve else 0
    return _record(
        "autopeft-zero-config", ctx, test=test_accuracy,
        # on its own validation split (carved from its train file): not the other methods' rows
        val=_f(result.reloaded_val_metrics.get(ctx.metric)),
        params=int(best.metrics.get("trainable_params") or 0),
        steps=sum(t["steps"] for t in trials) + final_trained, wall=wall, trials=trials,
        time_budget=given, time_budget_s=budget_s, time_budget_source=budget_source,
        plan={key: budget.get(key) for key in ("trials", "max_steps", "eval_interval", "final_steps", "time_limit_s")},
        inferred={"task": (config.get("task") or {}).get("kind"), "metric": objective.get("metric"),
                  # the config holds the space expanded; its name is in the line that chose it
                  "mode": objective.get("mode"), "space": _said(lines).get("space", config.get("space")),
                  "max_length": (config.get("model") or {}).get("max_length"),
                  "text_columns": (config.get("data") or {}).get("text_columns"),
                  "label_column": (config.get("data") or {}).get("label_column"),
                  "max_validation_examples": (config.get("data") or {}).get("max_validation_examples"),
                  "cpus_per_trial": budget.get("cpus_per_trial")},
        split_sizes=sizes, text_read_as_missing=missing, test_rows=test_rows,
        # the study's own figures, on its test split (``split_sizes["test"]`` rows)
        study_test_metric=_f(result.test_metrics.get(ctx.metric)),
        objective_test_metric=_f(result.test_metrics.get(str(objective.get("metric")))),
        test_metrics=dict(result.test_metrics), val_metrics=dict(result.reloaded_val_metrics),
        final_steps=final_trained, final_curve=curve,
        final_train_eval_s=result.final_train_time_s + result.final_eval_time_s,
        search_wall_time_s=result.wall_time_s, phase_times_s=result.phase_times_s, best_config=best.params,
        study=result.study_name, model_version=result.model_version, lines=lines,
    )


# --------------------------------------------------------------------------- transformers Trainer + Optuna


def run_hf_optuna(ctx: Context) -> dict[str, Any]:
    """What users do today: ``Trainer.hyperparameter_search(backend="optuna")``, LoRA built in
    ``model_init`` from the trial's r/alpha (LR is a TrainingArguments field), peft's default
    targets (query, value), one trial's steps each, as many trials as full trials fit the budget.
    The test metric is that of the trial best on validation (each trial's model is scored on test
    in a callback when it is evaluated; that time is taken out of the wall time)."""
    import numpy as np
    import optuna
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from autopeft._compat import trainer_search_trial
    from autopeft.model.loading import load_classifier, load_tokenizer
    from autopeft.tasks import get_task

    spec, data = tokenized(ctx)
    kind = get_task(ctx.files.kind)
    label_type = int if kind.categorical else float  # class ids, or the value to regress on
    tokenizer = load_tokenizer(spec.model, spec.location)
    torch.set_num_threads(max(1, ctx.cpus))

    class Split(torch.utils.data.Dataset):
        def __init__(self, split: Any) -> None:
            self.split = split

        def __len__(self) -> int:
            return len(self.split)

        def __getitem__(self, i: int) -> dict[str, Any]:
            item = {"input_ids": self.split.input_ids[i], "labels": label_type(self.split.labels[i])}
            if self.split.token_type_ids is not None:
                item["token_type_ids"] = self.split.token_type_ids[i]
            return item

    per_trial: dict[int, dict[str, Any]] = {}
    test_time = [0.0]

    def model_init(trial: Any) -> Any:
        params = trial.params if trial is not None else {}
        torch.manual_seed(ctx.seed)
        base = load_classifier(spec.model, spec.location, spec.model_kwargs())
        r = int(params.get("lora_r", 8))
        model = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=r,
                                                lora_alpha=int(params.get("lora_alpha", 8))))
        if trial is not None:
            per_trial[trial.number] = {"trainable_params": int(model.get_nb_trainable_parameters()[0]),
                                       "config": dict(params)}
        return model

    def hp_space(trial: optuna.Trial) -> dict[str, Any]:
        low, high = HF_SPACE["learning_rate"]
        return {"learning_rate": trial.suggest_float("learning_rate", low, high, log=True),
                "lora_r": trial.suggest_categorical("lora_r", HF_SPACE["r"]),
                "lora_alpha": trial.suggest_categorical("lora_alpha", HF_SPACE["alpha"])}

    def compute_metrics(pred: Any) -> dict[str, float]:  # the task kind's metrics, as autopeft computes them
        return {ctx.metric: float(kind.compute_metrics(np.asarray(pred.predictions), np.asarray(pred.label_ids))[ctx.metric])}

    class TestScore(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, model: Any = None,
                        **kw: Any) -> None:
            trial = trainer_search_trial(trainer)
            if trial is None or isinstance(trial, dict) or model is None:  # optuna's backend sets a Trial
                return
            t0 = time.perf_counter()
            row = per_trial.setdefault(trial.number, {})
            row.update(val=float(metrics.get(f"eval_{ctx.metric}", float("nan"))), steps=int(state.global_step),
                       test=test_metric(ctx, model))
            test_time[0] += time.perf_counter() - t0

    args = TrainingArguments(
        output_dir=str(ctx.workdir / "hf-trainer"), max_steps=ctx.trial_steps, per_device_train_batch_size=16,
        per_device_eval_batch_size=ctx.eval_batch_size, eval_strategy="no", save_strategy="no",
        logging_strategy="no", report_to="none", use_cpu=True, seed=ctx.seed, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    started = time.perf_counter()
    trainer = Trainer(model_init=model_init, args=args, train_dataset=Split(data.splits["train"]),
                      eval_dataset=Split(data.splits["validation"]), processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
                      callbacks=[TestScore()])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = trainer.hyperparameter_search(
        hp_space=hp_space, compute_objective=lambda m: m[f"eval_{ctx.metric}"], n_trials=ctx.full_trials,
        direction="maximize" if ctx.files.mode == "max" else "minimize", backend="optuna", sampler=optuna.samplers.TPESampler(seed=ctx.seed))
    wall = time.perf_counter() - started - test_time[0]
    assert not isinstance(best, list)  # one direction: one best run
    chosen = per_trial[int(best.run_id)]
    trials = [{"trial": n, "steps": row.get("steps", 0), "val": row.get("val"), "test": row.get("test"),
               "config": row.get("config"), "trainable_params": row.get("trainable_params")}
              for n, row in sorted(per_trial.items())]
    return _record("hf-optuna", ctx, test=chosen["test"], val=chosen["val"], params=chosen["trainable_params"],
                   steps=sum(t["steps"] for t in trials), wall=wall, trials=trials, best_config=chosen["config"])


METHODS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "autopeft-lora": run_autopeft_space("lora-family", "autopeft-lora"),
    "autopeft-all": run_autopeft_space("all-adapters", "autopeft-all"),
    "autopeft-lora-fifo": run_autopeft_space("lora-family", "autopeft-lora-fifo", pruning=False),
    # the built-in warm-start prior off: how much of autopeft-lora is the prior
    "autopeft-lora-noprior": run_autopeft_space("lora-family", "autopeft-lora-noprior", prior=False),
    "default": run_default,
    "hf-optuna": run_hf_optuna,
    "random": run_random,
    # with --final-steps only: random search, then the autopeft searches' final training
    "random-final": run_random_final,
    "grid": run_grid,
    # autopeft.search given only model, train, test and time: held to autopeft-lora's wall time
    "autopeft-zero-config": run_zero_config,
}
