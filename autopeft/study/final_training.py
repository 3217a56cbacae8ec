"""The final training: the selected config trained for ``budget.final_steps`` more steps,
continuing the selected trial's adapter (or from its initialisation), in a Ray task with a
trial's resources."""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from autopeft.adapters import get_family
from autopeft.data import TokenizedData
from autopeft.engine.training import StudySpec
from autopeft.registry.tracking import config_summary, log_history, log_metrics, log_params, set_tags
from autopeft.schema import Metric, RunKind, StudyRunTags, TrialRunTags
from autopeft.space import family_params
from autopeft.study.results import SearchResult
from autopeft.study.trial import FinalTraining, train_final
from autopeft.tasks import get_task

if TYPE_CHECKING:
    from autopeft.study.prepare import Prepared

logger = logging.getLogger(__name__)


def final_start(prepared: Prepared, result: SearchResult, checkpoint: Any) -> tuple[Any, str]:
    """The checkpoint the final training continues (None: the config's initialisation), and
    what it started from in words (``autopeft.final_training_start``).

    It continues the selected trial by default, at ``budget.final_lr_scale`` times its rate.
    Measured on QNLI (bench/NOTES.md, *The final training continues the trial*): the portfolio's
    LoRA at 2e-3 learnt in its 100-step trial, whose schedule decays within those steps, but
    trained again from its initialisation for 400 steps it held that rate four times as long and
    fell to a constant prediction in 3 of 4 seeds. Continued from the trial's adapter at the same
    rate it learnt, then collapsed in one of two seeds; at half the rate it held in both."""
    best = result.best
    assert best is not None
    budget = prepared.config.budget
    if budget.final_from == "init":
        return None, "initialisation (budget.final_from: init)"
    family, _ = family_params(best.params)
    if get_family(family).on_step is not None:
        return None, f"initialisation ({family}'s training follows a schedule of its own, which a trial's end does not continue)"
    if checkpoint is None:
        return None, f"initialisation (trial {best.trial_id} left no checkpoint)"
    return checkpoint, f"trial {best.trial_id}'s adapter, at {budget.final_lr_scale:g} times its learning rate"


def train_final_adapter(prepared: Prepared, spec: StudySpec, client: Any, data: TokenizedData,
                        result: SearchResult, checkpoint: Any = None) -> Path | None:
    """Train the selected trial's config for ``budget.final_steps`` more steps (a new
    learning-rate schedule over those steps) in a Ray task with a trial's resources, continuing
    the trial's adapter (its Ray ``checkpoint``) as :func:`final_start` decides; its
    validation curve goes on the parent run as ``final_<metric>``. The adapter kept is that of
    its best evaluation (its step on the parent run as ``final_training_kept_step``). Returns the
    folder of that adapter, or None when the training diverged or failed, or when even its best
    evaluation is worse than the selected trial's own: the trial's adapter is then registered
    instead (the search's result is not lost), and the parent run's
    ``autopeft.final_training_error`` tag says why.

    Short trials rank configs; the adapter a user ships is better trained for longer, and the
    steps ASHA saves pay for it (bench/NOTES.md, *A final training of the selected config*). A
    rate that won a short trial can still slide over a longer one (seen on SST-2, where a
    DoRA at 5e-3 scored 0.807 after 100 steps and never above 0.788 in 400), which is why
    the final training is held to both its own peak and the trial's score."""
    cfg = prepared.config
    best = result.best
    assert best is not None and cfg.budget.final_steps
    final_spec = dataclasses.replace(spec, max_steps=cfg.budget.final_steps, eval_interval=cfg.budget.final_interval,
                                     limits={})
    start, result.final_start = final_start(prepared, result, checkpoint)
    config = dict(best.params)
    if start is not None:
        config["learning_rate"] = float(config["learning_rate"]) * cfg.budget.final_lr_scale
    # a lost worker or node restarts it (from where it started), as many times as a trial may be retried
    task = ray.remote(train_final).options(num_cpus=cfg.budget.cpus_per_trial, num_gpus=cfg.budget.gpus_per_trial,
                                           max_retries=cfg.budget.max_failures)

    def keep_trial_adapter(reason: str) -> None:
        logger.warning("%s; registering the trial's adapter", reason)
        result.final_training_error = reason
        set_tags(client, result.parent_run_id, StudyRunTags(final_training_error=reason))

    set_tags(client, result.parent_run_id, StudyRunTags(final_training_start=result.final_start))
    try:
        trained = ray.get(task.remote(final_spec, config, data, get_task(cfg.task.kind).metric_names, start))
    except ray.exceptions.RayError as exc:  # it crashed, or its worker was lost past its retries
        cause = getattr(exc, "cause", None) or exc  # a task's own exception, without Ray's traceback
        keep_trial_adapter(f"final training failed: {type(cause).__name__}: {' '.join(str(cause).split())}")
        return None
    result.final_node_id = trained.node_id
    result.final_train_time_s, result.final_eval_time_s = trained.train_time_s, trained.eval_time_s
    log_metrics(client, result.parent_run_id, {Metric.FINAL_TRAINING_TRAIN: trained.train_time_s,
                                               Metric.FINAL_TRAINING_EVAL: trained.eval_time_s})
    set_tags(client, result.parent_run_id, StudyRunTags(final_training_node=trained.node_id))
    log_history(client, result.parent_run_id, trained.history, prefix=Metric.FINAL_PREFIX)
    if trained.error is not None:  # it diverged
        keep_trial_adapter(trained.error)
        return None
    worse = _worse_than_trial(spec, trained, best.metrics.get(spec.metric))
    if worse is not None:
        keep_trial_adapter(worse)
        return None
    assert trained.kept_step is not None  # a training with no measured evaluation was refused just above
    log_metrics(client, result.parent_run_id, {Metric.FINAL_TRAINING_KEPT_STEP: float(trained.kept_step)})
    result.final_history = trained.history
    result.final_kept_step = trained.kept_step
    result.final_run_id = _record_final_run(prepared, client, result, trained.history, config)
    directory = prepared.output_dir / prepared.study_name / "final-training"
    if directory.exists():  # left by a driver that died here; this run starts it again
        shutil.rmtree(directory)
    for name, content in trained.adapter_files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    return directory


def _worse_than_trial(spec: StudySpec, trained: FinalTraining, trial_value: Any) -> str | None:
    """Why the final training's adapter is not kept (its best evaluation is worse than the
    selected trial's by the study's objective, both on the same validation split), or None.
    A tie keeps the final training's: it saw more of the data."""
    kept = next((h for h in trained.history if h["step"] == trained.kept_step), None)
    if kept is None:
        return f"the final training's {spec.metric} was never measured"
    if not isinstance(trial_value, (int, float)) or not math.isfinite(trial_value):
        return None  # nothing to hold it to (a trial without its metric is not selected; kept for safety)
    value = kept[spec.metric]
    worse = value < trial_value if spec.mode == "max" else value > trial_value
    if not worse:
        return None
    return (f"the final training's best validation {spec.metric} {value:.4f} (step {trained.kept_step}) is "
            f"worse than the selected trial's {float(trial_value):.4f}")


def _record_final_run(prepared: Prepared, client: Any, result: SearchResult, history: list[dict[str, float]],
                      config: dict[str, Any]) -> str:
    """The final training as a run nested under the study, with the config it trained (the
    trial's, at the learning rate it continued at) and its validation curve under the trials'
    metric names: the registered adapter is logged on it, so the model version's source run is
    the run that trained it."""
    best = result.best
    assert best is not None
    parent = client.get_run(result.parent_run_id)
    run = client.create_run(
        parent.info.experiment_id, run_name=f"{prepared.study_name}-final-training",
        tags=TrialRunTags(parent_run_id=result.parent_run_id, study=prepared.study_name, kind=RunKind.FINAL_TRAINING,
                          note=f"Final training of trial {best.trial_id}'s config for "
                               f"{prepared.config.budget.final_steps} steps from {result.final_start}: "
                               f"{config_summary(best.params)}.").to_tags())
    log_params(client, run.info.run_id, config)
    log_history(client, run.info.run_id, history)
    client.set_terminated(run.info.run_id, status="FINISHED")
    return str(run.info.run_id)
