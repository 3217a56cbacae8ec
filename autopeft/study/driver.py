"""The driver: a study from prepared input to registered adapter, as a list of steps.

The three roles stay apart: the searcher (:mod:`autopeft.study.searcher`) decides what to try,
the scheduler (:mod:`autopeft.study.scheduler`) when to stop a trial, the trial
(:mod:`autopeft.study.trial`) only trains and reports. The driver records every trial in MLflow
(one writer: :class:`~autopeft.registry.tracking.TrialRecorder`) and at the end registers the
best adapter (:mod:`autopeft.study.registration`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune

from autopeft.data import TokenizedData
from autopeft.engine.training import StudySpec
from autopeft.errors import ConfigError, SearchError, StudyCancelled
from autopeft.model.loading import model_reference
from autopeft.objectives import select
from autopeft.process import is_configured
from autopeft.registry.tracking import connect, log_metrics, trial_runs
from autopeft.schema import RUN_STATUS, Metric, Outcome, now_iso
from autopeft.study.calibration import calibrate
from autopeft.study.prepare import Prepared
from autopeft.study.registration import finalize
from autopeft.study.results import SearchResult, phase, summaries
from autopeft.study.scheduler import make_scheduler
from autopeft.study.searcher import make_searcher
from autopeft.study.study_run import (
    StudyRun,
    close_study_run,
    finish_study_run,
    log_study_inputs,
    open_study_run,
    write_study_report,
)
from autopeft.study.trial import run_trial
from autopeft.tasks import TrivialLevel, get_task, tokenize, trivial_level

logger = logging.getLogger("autopeft")


def run_search(prepared: Prepared, *, callbacks: list[Any] | None = None, verbose: bool = False) -> SearchResult:
    """Run the study; the parent MLflow run is FINISHED only when a version was registered.

    A SIGTERM (``autopeft cancel``, ``ray job stop``, a pod's shutdown) ends the study as Ctrl-C
    does, as :class:`~autopeft.errors.StudyCancelled`: every run it opened is closed."""
    if not is_configured():
        logger.warning("autopeft.process.configure_process() was not called: Tune snapshots its state less often")
    started = time.monotonic()
    phases: dict[str, float] = {}
    # Ray first: an address that answers but is no cluster fails here, before anything is written
    with phase(phases, "ray_start"):
        started_ray = init_ray(prepared.config.backend.address, verbose=verbose)
    # after ray.init, which sets a SIGTERM handler of its own (sys.exit: every run left RUNNING)
    with study_signals() as signals:
        return _run_study(prepared, started_ray, started, phases, signals, callbacks=callbacks)


@dataclass
class StudySignals:
    """The Ctrl-C (SIGINT) or cancellation (SIGTERM) the driver received, once one arrived."""

    received: BaseException | None = None

    def restore(self, stop: BaseException) -> BaseException:
        """The cancellation, where Ray's core turned it into a plain KeyboardInterrupt (an
        exception a signal handler raises inside ``ray.get`` comes back as one)."""
        if isinstance(self.received, StudyCancelled) and isinstance(stop, KeyboardInterrupt):
            return self.received
        return stop


#: The signals of the study running in this process (``study_signals``), for ``StopOnSignal``:
#: a module global, not the callback's own state, as Tune pickles its callbacks with a study it
#: can resume.
_active: StudySignals | None = None


@contextmanager
def study_signals() -> Iterator[StudySignals]:
    """Inside the block, SIGINT raises KeyboardInterrupt and SIGTERM
    :class:`~autopeft.errors.StudyCancelled` in the driver, and each is recorded.

    Python's default SIGTERM ends the process at once and Ray's (set by ``ray.init``) exits it:
    either leaves every run RUNNING. SIGINT is set here too, whatever handler a library left, and
    recorded so that ``StopOnSignal`` raises it again at Tune's next loop step if the first raise
    was lost inside a library (one CI run's driver went on for a minute after a Ctrl-C with no
    sign of it)."""
    global _active
    state = StudySignals()
    if threading.current_thread() is not threading.main_thread():
        yield state  # signal handlers can be set only in the main thread; the caller owns the signals
        return

    def cancel(signum: int, frame: Any) -> None:
        state.received = StudyCancelled(signal.Signals(signum).name, now_iso())
        raise state.received

    def interrupt(signum: int, frame: Any) -> None:
        if state.received is None:
            state.received = KeyboardInterrupt()
        raise KeyboardInterrupt

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, cancel),
                signal.SIGINT: signal.signal(signal.SIGINT, interrupt)}
    outer, _active = _active, state
    try:
        yield state
    finally:
        _active = outer
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class StopOnSignal(tune.Callback):
    """Raises the signal the driver received at Tune's next loop step (at least every 0.1 s),
    from the driver's own code, where nothing can swallow it."""

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if _active is not None and _active.received is not None:
            raise _active.received


def _run_study(prepared: Prepared, started_ray: bool, started: float, phases: dict[str, float],
               signals: StudySignals, *,
               callbacks: list[Any] | None) -> SearchResult:
    cfg = prepared.config
    try:
        with phase(phases, "mlflow_setup"):
            client, experiment_id = connect(cfg.tracking.uri, cfg.tracking.experiment)
        with phase(phases, "tokenize"):
            data = tokenize_study_data(prepared)
    except BaseException as stop:
        if started_ray:  # no study run is open yet: only the Ray this call started to stop
            ray.shutdown()
        cancelled = signals.restore(stop)
        if cancelled is not stop:
            raise cancelled from None
        raise
    model_ref = model_reference(cfg.model, prepared.location)
    ray_path = cfg.backend.storage_path or str((prepared.output_dir / "ray").resolve())
    with phase(phases, "mlflow_setup"):
        study = open_study_run(prepared, client, experiment_id, data, ray_path)
    try:
        with phase(phases, "mlflow_setup"):
            log_study_inputs(study, prepared, data, model_ref)
        trivial, trivial_metrics = study_trivial_level(prepared, data)
        if trivial_metrics:  # the line the report draws on every curve
            log_metrics(client, study.parent_id, {Metric.trivial(k): v for k, v in trivial_metrics.items()})
        spec = study_spec(prepared, data, trivial)
        with phase(phases, "calibration"):  # before the searcher compiles the space: it searches the calibrated one
            prepared = calibrate(prepared, study, spec, data)
        tuner = make_tuner(prepared, study, spec, data, ray_path, callbacks or [])
        with phase(phases, "trials"):
            grid = tuner.fit()
        trials = summaries(grid, trial_runs(client, experiment_id, study.parent_id))
        selection = select(trials, cfg.objective_list, cfg.constraints.limits(), cfg.selection)
        result = SearchResult(study_name=prepared.study_name, parent_run_id=study.parent_id, trials=trials,
                              best=selection.best, selection=selection,
                              calibration_skipped=prepared.calibration_skipped)
        if result.best is None:
            raise SearchError("search: no trial produced a result (see the FAILED trial runs in MLflow for why)")
        checkpoint = next(grid[i].checkpoint for i in range(len(grid))
                          if (grid[i].metrics or {}).get("trial_id") == result.best.trial_id)
        finalize(prepared, spec, client, data, result, checkpoint, model_ref, phases)
        with phase(phases, "report"):
            result.report_path = write_study_report(prepared, client, result)
        finish_study_run(study, prepared, result)
        result.wall_time_s = time.monotonic() - started
        result.phase_times_s = phases
        log_metrics(client, study.parent_id, {Metric.SEARCH_WALL_TIME: result.wall_time_s,
                                              **{Metric.phase(name): seconds for name, seconds in phases.items()}})
        return result
    except KeyboardInterrupt as stop:
        study.status = RUN_STATUS[Outcome.INTERRUPTED]
        cancelled = signals.restore(stop)
        if cancelled is not stop:  # raised here, it is the exception close_study_run sees
            raise cancelled from None
        raise
    finally:
        close_study_run(study, prepared)
        if started_ray:
            ray.shutdown()


def tokenize_study_data(prepared: Prepared) -> TokenizedData:
    """Tokenize every split once (or read the cache): trials get the splits, not the files."""
    cfg = prepared.config
    tokenizer = get_task(cfg.task.kind).load_preprocessor(cfg.model, prepared.location)  # or image processor
    return tokenize(prepared.raw, tokenizer, cfg.model.max_length, tokenizer_id=prepared.location,
                    cache_dir=prepared.cache_dir)


def study_trivial_level(prepared: Prepared, data: TokenizedData) -> tuple[TrivialLevel | None, dict[str, float]]:
    """The trivial predictor's level for the metric the rungs judge trials on (the objective's,
    or with several objectives the first), and all its validation metrics."""
    cfg = prepared.config
    return trivial_level(get_task(cfg.task.kind), data, cfg.objective.metric, cfg.objective.mode)


def study_spec(prepared: Prepared, data: TokenizedData, trivial: TrivialLevel | None = None) -> StudySpec:
    """What every trial of the study shares besides its sampled config."""
    cfg = prepared.config
    return StudySpec(model=cfg.model, location=prepared.location, task=cfg.task.kind, label_names=data.label_names,
                     max_steps=cfg.budget.max_steps, eval_interval=cfg.budget.eval_interval,
                     eval_batch_size=cfg.budget.eval_batch_size, seed=cfg.seed, metric=cfg.objective.metric,
                     mode=cfg.objective.mode, limits=cfg.constraints.limits(), faults=prepared.faults,
                     trivial=trivial)


def make_tuner(prepared: Prepared, study: StudyRun, spec: StudySpec, data: TokenizedData, ray_path: str,
               callbacks: list[Any]) -> tune.Tuner:
    """Tune's tuner for the study: new, or restored from its last snapshot when resuming."""
    cfg = prepared.config
    resources = {"cpu": cfg.budget.cpus_per_trial, "gpu": cfg.budget.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, spec=spec, data=data), resources)
    if study.resumed and tune.Tuner.can_restore(study.manifest.ray_experiment):
        # Ray restores the searcher (with its Optuna trials), the scheduler and every trial;
        # unfinished trials continue from their last checkpoint.
        return tune.Tuner.restore(study.manifest.ray_experiment, trainable, resume_unfinished=True,
                                  resume_errored=True)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(prepared),
            scheduler=make_scheduler(cfg, judged=spec.trivial is not None),
            num_samples=cfg.budget.trials,
            max_concurrent_trials=cfg.budget.concurrent_trials,
            time_budget_s=cfg.budget.time_limit_s,
            # keep worker processes (and their imported torch/transformers) between trials
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=prepared.study_name,
            storage_path=ray_path,
            callbacks=[study.recorder, StopOnSignal(), *callbacks],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=cfg.budget.max_failures),
            verbose=0,
        ),
    )


def init_ray(address: str | None, *, verbose: bool = False) -> bool:
    """Connect to ``address`` or start local Ray; True when this call started it."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
                 configure_logging=verbose, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"backend.address: cannot connect to Ray at {address!r}: {' '.join(str(exc).split())[:200]}") from None
    return True
