"""A wall-clock budget (``budget.time``) becomes trials, steps, evaluations and a final training.

A short probe trains each adapter family of the space for a few steps on the study's own data
on this machine (:func:`probe`); :func:`plan` turns its timings into the budget fields the user
did not set. The trials also get a hard stop (``time_limit_s``), so a slow trial cannot eat the
time kept for the final training and registration: the study ends within ``budget.time`` (+5%).

Probe timings are cached beside the tokenized data (``<output_dir>/cache/probe-<key>.json``,
keyed by model, data, families, device and threads), so ``autopeft init`` and the search it
writes plan the same budget on the same machine.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from autopeft.config import BudgetConfig, CalibrationConfig, SearchConfig
from autopeft.data import TokenizedData, TokenizedSplit
from autopeft.errors import ConfigError
from autopeft.space import ChoiceSpec, RangeSpec, SearchSpace
from autopeft.study import Prepared
from autopeft.study.calibration import CALIBRATION_MAX_SHARE, families_to_calibrate, step_aside_reason
from autopeft.study.define_by_run import compile_space

#: Steps each family trains in the probe; the first half warms up and is not timed.
PROBE_STEPS = 8
#: Validation examples the probe evaluates to time evaluation per example.
PROBE_EVAL_EXAMPLES = 64
#: Plan to this share of the budget: the rest absorbs what the estimates miss.
SAFETY = 0.85
#: Seconds outside the trials that do not scale with the data: MLflow set-up, Ray's start,
#: the report, the final training's Ray task start. Measured on 2 CPU cores (bench/NOTES.md).
FIXED_OVERHEAD_S = 25.0
#: Seconds per trial beyond building its adapter: Ray scheduling, checkpoints, MLflow logging.
PER_TRIAL_OVERHEAD_S = 3.0
#: Evaluations per trial (ASHA's rungs are at 1, 2 and 4 of them with grace 1 and factor 2).
REPORTS = 4
#: Share of a full trial's cost an average trial spends under ASHA (weak ones stop at a rung).
ASHA_SHARE = 0.6
#: Shortest trial worth ranking configs by, and how many trials a study should have.
MIN_STEPS, MAX_STEPS = 40, 2000
MIN_TRIALS, TARGET_TRIALS, MAX_TRIALS = 4, 10, 32
#: Longest a trial trains, in epochs of the training data.
MAX_EPOCHS = 3.0
#: Share of the budget kept for the final training, when it can be longer than a trial.
FINAL_SHARE = 0.3
#: Evaluations may take at most this share of a trial; beyond it validation is subsampled.
MAX_EVAL_SHARE = 0.25
MIN_EVAL_EXAMPLES = 500


@dataclass(frozen=True)
class FamilyTiming:
    family: str
    #: Seconds to build the adapter on the base model (the model load included).
    build_s: float
    #: Seconds per training step at ``batch_size``.
    step_s: float
    batch_size: int
    #: Seconds to evaluate one validation example.
    eval_s_per_example: float

    def step_at(self, batch_size: float) -> float:
        """Step time at another batch size (time per example is about constant on one device)."""
        return self.step_s * batch_size / self.batch_size


@dataclass(frozen=True)
class ProbeResult:
    timings: dict[str, FamilyTiming]
    #: Seconds the probe took on this machine when it was measured (also when read from the cache).
    cost_s: float
    device: str
    cached: bool = False

    def to_json(self) -> str:
        return json.dumps({"timings": {k: dataclasses.asdict(v) for k, v in self.timings.items()},
                           "cost_s": self.cost_s, "device": self.device})

    @classmethod
    def from_json(cls, text: str) -> ProbeResult:
        data = json.loads(text)
        return cls(timings={k: FamilyTiming(**v) for k, v in data["timings"].items()}, cost_s=float(data["cost_s"]),
                   device=str(data["device"]), cached=True)


@dataclass(frozen=True)
class BudgetPlan:
    budget: BudgetConfig
    #: The fields the plan set, with their reasons (the user's own fields are kept).
    reasons: dict[str, str] = field(default_factory=dict)
    max_validation_examples: int | None = None
    estimated_s: float = 0.0
    #: Seconds kept for the learning-rate calibration's probes before the trials (0: none run).
    calibration_s: float = 0.0
    #: The calibration settings, where the plan changed them (turned off: no room in the budget).
    calibration: CalibrationConfig | None = None

    def lines(self) -> list[str]:
        """One line per planned field: value and reason."""
        out = []
        for name, why in self.reasons.items():
            out.append(f"{self.field(name)} = {self.value(name)}: {why}")
        return out

    @staticmethod
    def field(name: str) -> str:
        """The dotted config field of a planned ``name`` (a budget field unless named otherwise)."""
        if name == "max_validation_examples":
            return f"data.{name}"
        return name if "." in name else f"budget.{name}"

    def value(self, name: str) -> Any:
        if name == "max_validation_examples":
            return self.max_validation_examples
        if name.startswith("calibration."):
            assert self.calibration is not None
            return getattr(self.calibration, name.split(".", 1)[1])
        return getattr(self.budget, name)


def _batch_sizes(space: SearchSpace, family: str) -> list[int]:
    spec = space.training_params(family)["batch_size"]
    if isinstance(spec, ChoiceSpec):
        return [int(v) for v in spec.choices]
    if isinstance(spec, RangeSpec):
        return [int(spec.low), int(spec.high)]
    return [int(spec)]  # type: ignore[arg-type]


def probe_config(space: SearchSpace, family: str, seed: int) -> dict[str, Any]:
    """One config of ``family`` drawn from the space, at its largest batch size."""
    sub = space.model_copy(update={"adapters": {family: space.adapters[family]}})
    sub.bind_model(space.num_layers or 0)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # an in-memory draw, not a study to announce
    try:
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    finally:
        optuna.logging.set_verbosity(verbosity)
    config = {**compile_space(sub)(trial), **trial.params}
    config["adapter"] = family
    config["batch_size"] = max(_batch_sizes(space, family))
    return config


def _subset(split: TokenizedSplit, n: int, seed: int) -> TokenizedSplit:
    idx = np.random.default_rng(seed).permutation(len(split))[:n]
    labels = split.labels[idx] if isinstance(split.labels, np.ndarray) else [split.labels[i] for i in idx]
    return dataclasses.replace(
        split, input_ids=[split.input_ids[i] for i in idx] if split.input_ids else split.input_ids,
        token_type_ids=None if split.token_type_ids is None else [split.token_type_ids[i] for i in idx],
        labels=labels, pixel_values=None if split.pixel_values is None else split.pixel_values[idx])


def _keep(reports: list[dict[str, Any]], report: dict[str, Any], _state: Any) -> None:
    reports.append(report)


def _cache_key(prepared: Prepared, data: TokenizedData, device: str, threads: int) -> str:
    space = prepared.resolved.space
    wanted = {"model": prepared.location, "revision": prepared.config.model.revision, "data": data.fingerprint,
              "families": {f: space.adapters[f] for f in space.adapters}, "device": device, "threads": threads,
              "batch": {f: max(_batch_sizes(space, f)) for f in space.adapters}, "steps": PROBE_STEPS}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()[:16]


def probe(prepared: Prepared, data: TokenizedData) -> ProbeResult:
    """Time each family of the space on the study's data on this machine (or read the cache)."""
    # deferred: torch takes seconds to import; bad input is answered before the probe
    import torch

    from autopeft.engine.training import StudySpec, build_adapter, pick_device, train

    cfg = prepared.config
    device, amp = pick_device()
    threads = max(1, int(cfg.budget.cpus_per_trial))
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu x{threads}"
    cache = prepared.cache_dir / f"probe-{_cache_key(prepared, data, name, threads)}.json"
    if cache.is_file():
        return ProbeResult.from_json(cache.read_text())
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.monotonic()
    timings: dict[str, FamilyTiming] = {}
    validation = _subset(data.splits["validation"], PROBE_EVAL_EXAMPLES, cfg.seed)
    probe_data = dataclasses.replace(data, splits={"train": data.splits["train"], "validation": validation})
    half = PROBE_STEPS // 2
    spec = StudySpec(model=cfg.model, location=prepared.location, task=cfg.task.kind, label_names=data.label_names,
                     max_steps=PROBE_STEPS, eval_interval=half, eval_batch_size=cfg.budget.eval_batch_size,
                     seed=cfg.seed, metric=cfg.objective.metric, mode=cfg.objective.mode)
    try:
        for family in prepared.resolved.space.adapters:
            config = probe_config(prepared.resolved.space, family, cfg.seed)
            build_started = time.monotonic()
            built = build_adapter(spec, config)
            build_s = time.monotonic() - build_started
            reports: list[dict[str, Any]] = []
            train(built, spec, probe_data, config, on_eval=functools.partial(_keep, reports), device=device,
                  amp_dtype=amp)
            first, last = reports[0], reports[-1]
            step_s = (last["train_time_s"] - first["train_time_s"]) / (PROBE_STEPS - half)
            eval_s = (last["eval_time_s"] - first["eval_time_s"]) / max(1, len(validation))
            timings[family] = FamilyTiming(family, build_s, step_s, int(config["batch_size"]), eval_s)
            del built
    finally:
        torch.set_num_threads(previous_threads)
        if device.type == "cuda":  # the trials, not the driver, need the GPU's memory now
            torch.cuda.empty_cache()
    result = ProbeResult(timings=timings, cost_s=time.monotonic() - started, device=name)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(result.to_json())
    return result


def plan(config: SearchConfig, space: SearchSpace, measured: ProbeResult, *, train_rows: int,
         validation_rows: int, test_rows: int) -> BudgetPlan:
    """The budget fields the user did not set, planned so the study fits ``budget.time``.

    Pure: the same config, probe and data sizes give the same plan (so ``init`` and the search
    it writes agree). ConfigError when the time cannot hold even a minimal study.
    """
    budget = config.budget
    total = budget.time_s
    assert total is not None
    given = budget.model_fields_set
    timings = list(measured.timings.values())
    mean_batch = float(np.mean([np.mean(_batch_sizes(space, t.family)) for t in timings]))
    step_s = float(np.mean([t.step_at(float(np.mean(_batch_sizes(space, t.family)))) for t in timings]))
    slowest_step_s = max(t.step_at(max(_batch_sizes(space, t.family))) for t in timings)
    build_s = max(t.build_s for t in timings)
    eval_per_example = max(t.eval_s_per_example for t in timings)
    concurrency = budget.concurrent_trials
    reasons: dict[str, str] = {}

    # what does not depend on the plan: the probe, set-up, registration (two evaluations of the
    # registered adapter on validation and test, reloaded)
    registration_s = build_s + 2 * eval_per_example * (validation_rows + test_rows) + 5.0
    available = total * SAFETY - measured.cost_s - FIXED_OVERHEAD_S - registration_s
    per_trial_s = build_s + PER_TRIAL_OVERHEAD_S
    minimal = MIN_TRIALS * (per_trial_s + MIN_STEPS * step_s) / concurrency
    # the learning-rate calibration probes its families before the trials, inside the budget;
    # where it would leave too little for a minimal study it is turned off (the space's ranges
    # are searched), which is better than refusing a budget that holds the study without it
    calibration: CalibrationConfig | None = None
    calibrating, _ = families_to_calibrate(space, config.calibration)
    calibration_s = _calibration_cost(config, space, measured, calibrating)
    if calibrating and available - calibration_s < minimal <= available:
        calibration = config.calibration.model_copy(update={"enabled": False})
        reasons["calibration.enabled"] = (f"off: the learning-rate probes of {', '.join(calibrating)} (about "
                                          f"{calibration_s:.0f}s) leave too little for {MIN_TRIALS} trials of "
                                          f"{MIN_STEPS} steps")
        calibration_s = 0.0
    elif calibrating and calibration_s > CALIBRATION_MAX_SHARE * available:
        calibration = config.calibration.model_copy(update={"enabled": False})
        reasons["calibration.enabled"] = (f"off: the learning-rate probes of {', '.join(calibrating)} (about "
                                          f"{calibration_s:.0f}s) would take more than "
                                          f"{CALIBRATION_MAX_SHARE:.0%} of the time the trials have")
        calibration_s = 0.0
    available -= calibration_s
    if available < minimal:
        needed = (minimal + measured.cost_s + FIXED_OVERHEAD_S + registration_s) / SAFETY
        raise ConfigError(f"budget.time: {budget.time} cannot hold a study on this machine ({measured.device}): "
                          f"{MIN_TRIALS} trials of {MIN_STEPS} steps need about {_minutes(needed)} with the probe, "
                          f"set-up and registration; give at least that")

    # validation: evaluations are at most MAX_EVAL_SHARE of a trial, else subsample it
    max_validation_examples = config.data.max_validation_examples
    eval_rows = validation_rows

    # the final training: a longer run of the chosen config, when it can be longer than a trial
    final_steps = budget.final_steps
    if "final_steps" not in given:
        final_budget = available * FINAL_SHARE
        final_steps = int((final_budget - per_trial_s - 8 * eval_per_example * eval_rows) / slowest_step_s)
    trial_budget = available - (_final_cost(final_steps, per_trial_s, slowest_step_s, eval_per_example * eval_rows)
                                if final_steps else 0.0)

    max_steps_cap = max(MIN_STEPS, min(MAX_STEPS, int(MAX_EPOCHS * train_rows / mean_batch)))
    trials = budget.trials if "trials" in given else TARGET_TRIALS
    max_steps = budget.max_steps if "max_steps" in given else None
    step_capped = False
    if max_steps is None:
        max_steps = MIN_STEPS
        for candidate in ([trials] if "trials" in given else range(TARGET_TRIALS, MIN_TRIALS - 1, -1)):
            steps = _steps_for(trial_budget * concurrency / candidate, per_trial_s, step_s,
                               eval_per_example * eval_rows)
            trials, max_steps = candidate, steps
            if steps >= MIN_STEPS:
                break
        max_steps = max(MIN_STEPS, min(max_steps_cap, max_steps))
        reasons["max_steps"] = (f"{step_s:.3f}s per step (mean over {', '.join(measured.timings)} at batch "
                                f"{mean_batch:g}); at most {MAX_EPOCHS:g} epochs of {train_rows} examples")
        if budget.search_steps is not None and max_steps > budget.search_steps // MIN_TRIALS:
            # the step budget the user set holds a minimal study's full trials where it can
            max_steps = max(budget.search_steps // MIN_TRIALS, min(MIN_STEPS, budget.search_steps))
            step_capped = True
    if "max_steps" not in given or "trials" not in given:
        eval_cost = eval_per_example * eval_rows
        if eval_cost * REPORTS > MAX_EVAL_SHARE * max_steps * step_s and eval_rows > MIN_EVAL_EXAMPLES:
            eval_rows = max(MIN_EVAL_EXAMPLES, int(MAX_EVAL_SHARE * max_steps * step_s / REPORTS / eval_per_example))
            if eval_rows < validation_rows and max_validation_examples is None:
                max_validation_examples = eval_rows
    if "trials" not in given:
        trial_cost = _trial_cost(max_steps, per_trial_s, step_s, eval_per_example * eval_rows)
        trials = max(MIN_TRIALS, min(MAX_TRIALS, int(trial_budget * concurrency / trial_cost)))
        reasons["trials"] = (f"{_minutes(trial_budget)} for trials, about {trial_cost:.0f}s each under ASHA "
                             f"(a full one {_full_trial(max_steps, per_trial_s, step_s, eval_per_example * eval_rows):.0f}s)")
    eval_interval = budget.eval_interval if "eval_interval" in given else max(1, max_steps // REPORTS)
    if "eval_interval" not in given:
        max_steps = eval_interval * max(1, round(max_steps / eval_interval))
        if budget.search_steps is not None and max_steps > budget.search_steps:  # rounded up past it
            max_steps = eval_interval * max(1, budget.search_steps // eval_interval)
        reasons["eval_interval"] = (f"{REPORTS} evaluations per trial: ASHA compares trials at "
                                    f"{', '.join(str(eval_interval * r) for r in _rungs(config))} steps")
    if step_capped:
        assert budget.search_steps is not None
        held = budget.search_steps // max_steps
        reasons["max_steps"] += (f"; shortened so budget.search_steps ({budget.search_steps}) holds "
                                 f"{held} full trial{'s' if held > 1 else ''}")
    if "final_steps" not in given:
        epoch_cap = int(2 * MAX_EPOCHS * train_rows / mean_batch)
        if final_steps is not None and min(final_steps, epoch_cap) >= 1.5 * max_steps:
            final_steps = min(final_steps, 4 * max_steps, epoch_cap)
            reasons["final_steps"] = (f"{FINAL_SHARE:.0%} of the budget trains the chosen config again, longer "
                                      "than a trial, and registers that adapter")
        elif final_steps is not None and final_steps >= 1.5 * max_steps:
            # a handful of rows: the trials already take every epoch a final training could add
            final_steps = None
            reasons["final_steps"] = (f"off: {2 * MAX_EPOCHS:g} epochs of {train_rows} examples are no longer "
                                      "than a trial")
        else:
            final_steps = None
            reasons["final_steps"] = "off: the budget has no room for a final training longer than a trial"
    if calibrating and calibration is None:
        # the probes' rule in steps (against a step budget the user set, else against the trials'
        # steps) needs the trials just planned: where it would step aside, the plan says so now
        # and gives the probes' seconds to the trials instead of keeping them for nothing
        aside = step_aside_reason(budget.model_copy(update={"max_steps": max_steps, "trials": trials}), calibrating,
                                  config.calibration)
        if aside is not None:
            calibration = config.calibration.model_copy(update={"enabled": False})
            reasons["calibration.enabled"] = f"off: {aside}"
            calibration_s = 0.0
    time_limit_s = budget.time_limit_s
    if "time_limit_s" not in given:
        final_cost = (_final_cost(final_steps, per_trial_s, slowest_step_s, eval_per_example * eval_rows)
                      if final_steps else 0.0)
        time_limit_s = round(max(60.0, total * SAFETY - measured.cost_s - FIXED_OVERHEAD_S - registration_s
                                 - calibration_s - final_cost), 0)
        reasons["time_limit_s"] = "trials stop by then, whatever ASHA decided, so the final training and " \
                                  "registration still fit"
    if max_validation_examples != config.data.max_validation_examples:
        reasons["max_validation_examples"] = (f"validation has {validation_rows} examples; {max_validation_examples} keep "
                                        f"evaluations under {MAX_EVAL_SHARE:.0%} of a trial")
    planned = BudgetConfig.model_validate({
        **budget.model_dump(exclude_unset=True),
        "trials": trials, "max_steps": max_steps, "eval_interval": eval_interval,
        "final_steps": final_steps, "time_limit_s": time_limit_s,
    })
    estimated = (measured.cost_s + FIXED_OVERHEAD_S + registration_s + calibration_s + (time_limit_s or 0.0)
                 + (_final_cost(final_steps, per_trial_s, slowest_step_s, eval_per_example * eval_rows)
                    if final_steps else 0.0))
    return BudgetPlan(budget=planned, reasons=reasons, max_validation_examples=max_validation_examples,
                      estimated_s=estimated, calibration_s=calibration_s, calibration=calibration)


def _calibration_cost(config: SearchConfig, space: SearchSpace, measured: ProbeResult, families: list[str]) -> float:
    """Seconds of the calibration's probes: each family's build and ``calibration.steps`` steps
    (all of them, though a probe stops early once its loss diverges), side by side as far as
    ``concurrent_trials`` allows."""
    if not families:
        return 0.0
    steps = config.calibration.steps
    each = [measured.timings[f].build_s + PER_TRIAL_OVERHEAD_S
            + steps * measured.timings[f].step_at(float(np.mean(_batch_sizes(space, f)))) for f in families]
    return math.ceil(len(each) / config.budget.concurrent_trials) * max(each)


def _full_trial(steps: int, per_trial_s: float, step_s: float, eval_s: float) -> float:
    return per_trial_s + steps * step_s + REPORTS * eval_s


def _trial_cost(steps: int, per_trial_s: float, step_s: float, eval_s: float) -> float:
    """A trial's expected seconds under ASHA: weak trials stop at a rung."""
    return per_trial_s + ASHA_SHARE * (steps * step_s + REPORTS * eval_s)


def _steps_for(seconds: float, per_trial_s: float, step_s: float, eval_s: float) -> int:
    """The longest trial whose expected cost under ASHA fits ``seconds``."""
    return int(((seconds - per_trial_s) / ASHA_SHARE - REPORTS * eval_s) / step_s)


def _final_cost(steps: int, per_trial_s: float, step_s: float, eval_s: float) -> float:
    return per_trial_s + steps * step_s + 8 * eval_s


def _rungs(config: SearchConfig) -> list[int]:
    """Reports at which ASHA compares trials."""
    rungs, rung = [], config.pruning.grace_period
    while rung < REPORTS:
        rungs.append(rung)
        rung = math.ceil(rung * config.pruning.reduction_factor)
    return [*rungs, REPORTS]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f}s"
