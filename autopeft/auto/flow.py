"""The steps that turn what a user gave into a prepared, planned study, shared by the CLI
(``search``, ``init``) and the Python API: infer (zero-config), validate, preflight, plan the
time budget. Nothing here trains the study; ``search.run_search`` does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from autopeft.auto.budget import BudgetPlan, plan, probe
from autopeft.auto.infer import Inference, Request, infer
from autopeft.config import ResolvedConfig, resolve, resolve_mapping
from autopeft.data import load
from autopeft.study import Prepared, prepare
from autopeft.study.driver import tokenize_study_data
from autopeft.study.warmstart import collect
from autopeft.tasks import get_task

#: The budget fields a time budget plans when they are not given.
PLANNED_FIELDS = ("trials", "max_steps", "eval_interval", "final_steps", "time_limit_s")

Overrides = list[tuple[list[str], Any]]


def resolve_request(request: Request, overrides: Overrides | None = None) -> tuple[Inference, ResolvedConfig]:
    """Zero-config: infer every choice from the model and the data, then validate it like a file
    (``overrides`` win over what was inferred). A ``data.encoding`` override is how the files are
    read for inference too (``--encoding``, ``--set data.encoding=...``, the API's settings)."""
    encoding = next((value for key, value in overrides or [] if key == ["data", "encoding"]), None)
    if encoding is not None and request.encoding is None:
        request = replace(request, encoding=str(encoding))
    inference = infer(request)
    notes = {choice.field: choice.reason for choice in inference.choices}
    return inference, resolve_mapping(inference.raw_config(), overrides, notes=notes)


def plan_budget(prepared: Prepared, *, say: Callable[[str], None] = lambda _line: None) -> BudgetPlan | None:
    """With ``budget.time``: probe this machine and set the budget fields the user left open
    (in place, with their reasons as notes). None when there is no time budget, or every
    planned field is given (a config ``autopeft init`` wrote).

    A budget this machine cannot hold is refused after the probe, and the probe's cache (the
    tokenized data and timings in ``Prepared.cache_dir``) stays: it is what makes the refusal's
    "give at least N" hold for the rerun, which would otherwise be timed again under other load.
    No study record (MLflow, Optuna, outputs) is written before the refusal."""
    cfg = prepared.config
    if cfg.budget.time is None or set(PLANNED_FIELDS) <= cfg.budget.model_fields_set:
        return None
    data = tokenize_study_data(prepared)
    say(f"probing step and evaluation time of {', '.join(prepared.resolved.space.adapters)} on this machine...")
    measured = probe(prepared, data)
    timings = ", ".join(f"{t.family} {t.step_s:.3f}s/step at batch {t.batch_size}" for t in measured.timings.values())
    say(f"probe ({'cached' if measured.cached else f'{measured.cost_s:.0f}s'}, {measured.device}): {timings}")
    sizes = prepared.raw.sizes
    planned = plan(cfg, prepared.resolved.space, measured, train_rows=sizes.get("train", 0),
                   validation_rows=sizes.get("validation", 0), test_rows=sizes.get("test", 0))
    cfg.budget = planned.budget
    if planned.max_validation_examples != cfg.data.max_validation_examples:
        cfg.data.max_validation_examples = planned.max_validation_examples
        # the data paths are absolute by now (prepare), so no folder is needed to find them
        prepared.raw = load(cfg.data, get_task(cfg.task.kind), seed=cfg.seed)
    base_dir = prepared.resolved.source.parent if prepared.resolved.source else None
    prepared.warm_start = collect(cfg.warm_start, prepared.resolved.space, prepared.optuna_storage,
                                  trials=cfg.budget.trials, base_dir=base_dir)
    if planned.calibration is not None:
        cfg.calibration = planned.calibration
    for name, why in planned.reasons.items():
        prepared.resolved.notes[planned.field(name)] = why
    for line in planned.lines():
        say(line)
    if planned.calibration_s:
        say(f"calibration: about {planned.calibration_s:.0f}s of it probes each family's learning rate first")
    say(f"planned to end in about {planned.estimated_s / 60:.1f} min of the {cfg.budget.time} given")
    return planned


def prepare_request(request: Request | None = None, *, config: str | Path | None = None,
                    overrides: Overrides | None = None, say: Callable[[str], None] = lambda _line: None) -> Prepared:
    """Everything before compute, then the time budget's probe and plan: a prepared study."""
    if config is not None:
        resolved = resolve(config, overrides)
    else:
        assert request is not None
        inference, resolved = resolve_request(request, overrides)
        for choice in inference.choices:
            say(choice.line())
    prepared = prepare(resolved)
    plan_budget(prepared, say=say)
    return prepared
