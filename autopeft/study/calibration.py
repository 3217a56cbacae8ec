"""Per-family learning-rate calibration, before the search and inside its budget.

For each adapter family whose learning rate the space does not set by hand in the family's own
block, a learning-rate range test (:mod:`autopeft.engine.calibration`) runs as a Ray task with a
trial's resources on the study's training data; the range it suggests replaces the shared
learning-rate range for that family's trials (the family's own ``learning_rate``, a log range),
so the searcher compiles a space in which every family samples rates that train on this task.

Why before the search and not inside it: a short trial at a rate one or two orders of magnitude
off never leaves the majority-class predictor, and the sampler learns nothing from it; one
probe of a few dozen steps per family costs about one short trial and moves every trial of that
family into the range where the loss falls.

Only the driver writes MLflow: the tasks return their curves, and :func:`record` logs them on a
run nested under the study's run (:class:`~autopeft.schema.CalibrationRun`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
import torch

from autopeft.config import BudgetConfig, CalibrationConfig
from autopeft.data import TokenizedData
from autopeft.engine.calibration import LrCurve, LrRange, probe_adapter, suggest_range
from autopeft.engine.memory import release_memory
from autopeft.engine.training import StudySpec, build_adapter, pick_device
from autopeft.registry.tracking import log_history, log_metrics, log_params, set_tags
from autopeft.schema import Artifact, CalibrationRun, StudyRunTags, TrialRunTags
from autopeft.space import ADAPTER_KEY, ChoiceSpec, RangeSpec, SearchSpace
from autopeft.study.define_by_run import compile_space
from autopeft.study.warmstart import PORTFOLIO_PREFIX, WarmPoint

if TYPE_CHECKING:
    from autopeft.study.prepare import Prepared
    from autopeft.study.study_run import StudyRun

logger = logging.getLogger("autopeft")

#: Full trials a step budget (``budget.search_steps``) must still hold after the probes for them
#: to run. A family's probe costs about one short trial, and the range it sets pays that back
#: only over several trials that sample it; with fewer, the sampler has barely begun to use it.
#: On SST-2 (2 probes in 400 steps, 3 trials left) the probes did not pay: with them the search
#: registered 82.4% test (median, 4 seeds, one seed at 79.0), without them 82.2% (5 seeds, none
#: below 80.8) (README, Benchmark #24).
MIN_TRIALS_AFTER_PROBES = 6
#: Most of the trials' cost the probes may take, where they come on top of the trials (a count
#: of trials, or a time budget's planned trials); past it they cost more trials than they could
#: save. A 2-trial study of 8 steps, say, would spend six trials' worth on one 50-step probe.
CALIBRATION_MAX_SHARE = 0.25


@dataclass
class FamilyCalibration:
    """One family's probe: its curve (None when the probe failed), the range chosen (None: the
    space's range is kept) and why."""

    family: str
    config: dict[str, Any]
    curve: LrCurve | None
    found: LrRange | None
    outcome: str
    #: Where the range searched is not the probe's own: the probe's range and what changed it.
    note: str | None = None


def families_to_calibrate(space: SearchSpace, settings: CalibrationConfig) -> tuple[list[str], str | None]:
    """The families the calibration probes, and why it probes none where that is not obvious.

    A family that sets ``learning_rate`` in its own block keeps it (a range fixed by hand). A
    shared rate that is one value is fixed by hand for every family. The calibration replaces a
    log range with a log range: a shared rate written as choices or as a linear range is a form
    the user chose, and the space is searched as given, with the returned reason saying so. (A
    calibrated family samples its range under its own name, ``SearchSpace.sampled_name``, so it
    never has to match the kind of another family's spec.)"""
    if not settings.enabled or not isinstance(space.learning_rate, (RangeSpec, ChoiceSpec)):
        return [], None
    families = [name for name in space.adapters if "learning_rate" not in space.adapters[name]]
    if not families:
        return [], None
    shared = space.learning_rate
    if isinstance(shared, ChoiceSpec) or not shared.log or shared.is_int:
        return [], ("space.learning_rate is not a log range (the form the calibration sets): "
                    "no family is calibrated (give it a log range, or fix it)")
    return families, None


def step_aside_reason(budget: BudgetConfig, families: list[str], settings: CalibrationConfig) -> str | None:
    """Why the probes of ``families`` do not run within ``budget`` (None: they run).

    With a step budget (``budget.search_steps``) the probes' steps come out of it, and they must
    leave ``MIN_TRIALS_AFTER_PROBES`` full trials. Without one they come on top of the trials,
    and may take at most ``CALIBRATION_MAX_SHARE`` of the trials' steps (``trials`` full trials of
    ``max_steps``; ASHA's early stops only make the trials cheaper)."""
    if not families:
        return None
    probe_steps = len(families) * settings.steps
    if budget.search_steps is None:
        trial_steps = budget.trials * budget.max_steps
        if probe_steps <= CALIBRATION_MAX_SHARE * trial_steps:
            return None
        return (f"the probes of {', '.join(families)} ({probe_steps} steps) would take more than "
                f"{CALIBRATION_MAX_SHARE:.0%} of the trials' {trial_steps} steps ({budget.trials} trials of "
                f"{budget.max_steps}): the space's learning-rate ranges are searched as given")
    full_trials = max(budget.search_steps - probe_steps, 0) // budget.max_steps
    if full_trials >= MIN_TRIALS_AFTER_PROBES:
        return None
    return (f"the probes of {', '.join(families)} ({probe_steps} steps) would leave budget.search_steps "
            f"({budget.search_steps}) room for {full_trials} full trials of {budget.max_steps} steps, fewer than "
            f"{MIN_TRIALS_AFTER_PROBES}: the space's learning-rate ranges are searched as given")


def calibrated_space(space: SearchSpace, ranges: dict[str, LrRange]) -> SearchSpace:
    """``space`` with each family of ``ranges`` given its own learning-rate range (log scale)."""
    adapters = {name: ({**block, "learning_rate": RangeSpec(low=ranges[name].low, high=ranges[name].high, log=True)}
                       if name in ranges else dict(block))
                for name, block in space.adapters.items()}
    out = space.model_copy(update={"adapters": adapters})
    if space.num_layers:  # a layer mask needs the model's layer count, bound once by prepare
        out.bind_model(space.num_layers)
    out.validate_shared()
    return out


class _MiddleSampler(optuna.samplers.BaseSampler):
    """Draws the middle of every distribution: the centre of a range (geometric for a log
    range), the middle choice (the first of two). The probe then measures the family as the
    space centres it, the same for every run of the study, not a random corner of it."""

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        dist = param_distribution
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            return dist.choices[(len(dist.choices) - 1) // 2]
        low, high = float(dist.low), float(dist.high)
        middle = (low * high) ** 0.5 if dist.log else (low + high) / 2
        if isinstance(dist, optuna.distributions.IntDistribution):
            step = dist.step or 1
            return int(dist.low + round((middle - dist.low) / step) * step)
        if dist.step:
            return low + round((middle - low) / dist.step) * dist.step
        return middle


def probe_config(space: SearchSpace, family: str) -> dict[str, Any]:
    """The config ``family`` is probed with: the middle of its parameters and of the shared ones
    (placement, batch size, weight decay) as the space gives them for that family."""
    sub = space.model_copy(update={"adapters": {family: space.adapters[family]}})
    if space.num_layers:
        sub.bind_model(space.num_layers)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # an in-memory draw, not a study to announce
    try:
        trial = optuna.create_study(sampler=_MiddleSampler()).ask()
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {**compile_space(sub)(trial), **trial.params, ADAPTER_KEY: family}


def probe_family(spec: StudySpec, config: dict[str, Any], data: TokenizedData,
                 settings: CalibrationConfig) -> LrCurve:
    """The range test of one family, in a Ray task that holds a trial's resources (so it runs
    where and as a trial runs: the GPU worker on a cluster, with the trial's CPU share)."""
    # deferred: Ray takes seconds to import; imported in the code that runs on it
    import ray

    context = ray.get_runtime_context()
    torch.set_num_threads(max(1, int(context.get_assigned_resources().get("CPU", 1))))
    device, amp_dtype = pick_device()
    built = build_adapter(spec, config)
    try:
        return probe_adapter(built, spec, data, config, lr_min=settings.lr_min, lr_max=settings.lr_max,
                             steps=settings.steps, device=device, amp_dtype=amp_dtype)
    finally:
        del built  # the worker may be reused: free the model before the next task
        release_memory()


def calibrate(prepared: Prepared, study: StudyRun, spec: StudySpec, data: TokenizedData) -> Prepared:
    """Probe each family to calibrate (:func:`families_to_calibrate`) and return ``prepared``
    with the calibrated space (the one :func:`~autopeft.study.searcher.make_searcher` compiles);
    record the probes in MLflow. ``prepared`` itself is not changed.

    A resumed study is not calibrated again: the searcher Ray restores holds the space its first
    run searched. A probe that fails (its worker lost past the retries, an error) keeps the
    space's range for its family and says why; the study goes on."""
    # deferred: Ray takes seconds to import; the driver has it loaded by now
    import ray

    cfg = prepared.config
    settings: CalibrationConfig = cfg.calibration
    space = prepared.resolved.space
    families, reason = families_to_calibrate(space, settings)
    if study.resumed:  # what the first run decided, as its study run recorded it
        recorded = StudyRunTags.from_tags(study.client.get_run(study.parent_id).data.tags).calibration_skipped
        return dataclasses.replace(prepared, calibration_skipped=recorded)
    reason = reason or step_aside_reason(cfg.budget, families, settings)
    if reason:
        logger.warning("calibration: %s", reason)
        set_tags(study.client, study.parent_id, StudyRunTags(calibration_skipped=reason))
        return dataclasses.replace(prepared, calibration_skipped=reason)
    if not families:
        return prepared
    started = time.monotonic()
    task = ray.remote(probe_family).options(num_cpus=cfg.budget.cpus_per_trial, num_gpus=cfg.budget.gpus_per_trial,
                                            max_retries=cfg.budget.max_failures)
    train_only = ray.put(dataclasses.replace(data, splits={"train": data.splits["train"]}))
    configs = {family: probe_config(space, family) for family in families}
    # submitted together: they run side by side where the cluster holds more than one trial's resources
    pending = {family: task.remote(spec, configs[family], train_only, settings) for family in families}
    results: list[FamilyCalibration] = []
    for family, ref in pending.items():
        try:
            curve: LrCurve | None = ray.get(ref)
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc  # the task's own exception, without Ray's traceback
            results.append(FamilyCalibration(family, configs[family], None, None, f"probe failed: "
                                             f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"))
            continue
        assert curve is not None
        found = suggest_range(curve)
        results.append(FamilyCalibration(family, configs[family], curve, found,
                                         CalibrationRun.CALIBRATED if found else CalibrationRun.KEPT))
    wall_s = time.monotonic() - started
    for r in results:
        logger.info("calibration: %s: %s", r.family, r.found.text() if r.found else r.outcome)
    ranges, widened = widen_to_portfolio({r.family: r.found for r in results if r.found is not None},
                                         prepared.warm_start, space)
    results = [dataclasses.replace(r, found=ranges[r.family], note=widened[r.family]) if r.family in widened else r
               for r in results]
    calibrated = calibrated_space(space, ranges)
    record(prepared, study, results, calibrated, wall_s)
    warn_outside(prepared.warm_start, ranges, space)
    return dataclasses.replace(prepared, resolved=prepared.resolved.model_copy(update={"space": calibrated}),
                               calibration_steps=sum(r.curve.steps for r in results if r.curve is not None))


def widen_to_portfolio(ranges: dict[str, LrRange], points: list[WarmPoint],
                       space: SearchSpace) -> tuple[dict[str, LrRange], dict[str, str]]:
    """Each calibrated range widened, where needed, to hold the learning rate of every built-in
    portfolio config of its family; returns the ranges and, per widened family, what was done.

    Why the portfolio's rate is kept rather than moved into the probe's range: the portfolio was
    chosen over several tasks, the probe is one ramp of a few dozen steps on this one, and the
    probe is the less stable of the two. On SST-2 at the issue budget (bench/NOTES.md, session 33)
    LoRA's calibrated low end moved 70x across four seeds (1.4e-4 to 9.5e-3); in one seed the whole
    range lay above every rate at which LoRA learnt in any seed, and the portfolio's LoRA, moved
    from 2e-3 to 9.5e-3, never left the majority class. Widening the range (not only keeping the
    rate) puts that trial's result inside the distribution the sampler models."""
    out = dict(ranges)
    held: dict[str, list[str]] = {}
    for point in points:
        family = str(space.family_of(point.params))
        found, lr = out.get(family), point.params.get("learning_rate")
        if (not point.source.startswith(PORTFOLIO_PREFIX) or found is None or isinstance(lr, bool)
                or not isinstance(lr, (int, float)) or found.low <= float(lr) <= found.high):
            continue
        out[family] = LrRange(low=min(found.low, float(lr)), high=max(found.high, float(lr)), suggested=found.suggested)
        held.setdefault(family, []).append(f"{point.source} at {float(lr):.2e}")
    notes = {family: (f"the probe's range {ranges[family].low:.2e}..{ranges[family].high:.2e} widened to "
                      f"{out[family].low:.2e}..{out[family].high:.2e} for {', '.join(sources)}")
             for family, sources in held.items()}
    for family, note in notes.items():
        logger.info("calibration: %s: %s", family, note)
    return out, notes


def warn_outside(points: list[WarmPoint], ranges: dict[str, LrRange], space: SearchSpace) -> None:
    """Say which warm-start configs the user gave (a file, an earlier study) lie outside their
    family's calibrated range. They keep their rate: it may come from this very task, and it is
    theirs to give."""
    for point in points:
        family = space.family_of(point.params)
        found, lr = ranges.get(str(family)), point.params.get("learning_rate")
        if found is not None and isinstance(lr, (int, float)) and not found.low <= float(lr) <= found.high:
            logger.warning("calibration: warm start %s keeps its learning rate %.2e, outside %s's calibrated range %s",
                           point.source, lr, family, found.text())


def record(prepared: Prepared, study: StudyRun, results: list[FamilyCalibration], calibrated: SearchSpace,
           wall_s: float) -> str:
    """The calibration as a run nested under the study's run: the probe's settings and, per
    family, its curve (rate and loss at each step), the range searched or why the space's was
    kept, and the probe's own range where the portfolio widened it (:func:`widen_to_portfolio`);
    the wall time on the study run; the calibrated space as the study's ``space.json`` (the space
    as searched). Returns the calibration run's id."""
    client, parent_id = study.client, study.parent_id
    settings: CalibrationConfig = prepared.config.calibration
    probed = {r.family for r in results}
    chosen = "; ".join(f"{r.family} {r.found.text() if r.found else r.outcome}" for r in results)
    run = client.create_run(
        study.experiment_id, run_name=f"{prepared.study_name}-calibration",
        tags=TrialRunTags(parent_run_id=parent_id, study=prepared.study_name, kind=CalibrationRun.KIND,
                          note=f"Learning-rate range test per adapter family, {settings.steps} steps from "
                               f"{settings.lr_min:g} to {settings.lr_max:g}: {chosen}.").to_tags())
    run_id = str(run.info.run_id)
    params: dict[str, Any] = {CalibrationRun.STEPS: settings.steps, CalibrationRun.LR_MIN: settings.lr_min,
                              CalibrationRun.LR_MAX: settings.lr_max}
    metrics: dict[str, float] = {}
    for r in results:
        params[CalibrationRun.outcome(r.family)] = r.outcome
        if r.found is not None:
            params.update({CalibrationRun.low(r.family): r.found.low, CalibrationRun.high(r.family): r.found.high,
                           CalibrationRun.suggested(r.family): r.found.suggested})
        if r.curve is not None:
            params[CalibrationRun.stopped(r.family)] = r.curve.stopped
            metrics[CalibrationRun.probe_time(r.family)] = r.curve.wall_s
            log_history(client, run_id, [
                {"step": i, CalibrationRun.lr(r.family): lr,
                 **({CalibrationRun.loss(r.family): loss} if math.isfinite(loss) else {})}
                for i, (lr, loss) in enumerate(zip(r.curve.lrs, r.curve.losses, strict=True))])
    params.update({CalibrationRun.probe_range(r.family): r.note for r in results if r.note})
    for family in calibrated.adapters:
        if family not in probed:
            params[CalibrationRun.outcome(family)] = CalibrationRun.SET_BY_HAND
    log_params(client, run_id, params)
    log_metrics(client, run_id, metrics)
    client.set_terminated(run_id, status="FINISHED")
    log_metrics(client, parent_id, {CalibrationRun.WALL_TIME: wall_s,
                                    CalibrationRun.STEPS_TAKEN: sum(r.curve.steps for r in results if r.curve)})
    client.log_dict(parent_id, calibrated.model_dump(mode="json"), Artifact.SPACE)
    return run_id
