"""A study from config to registered adapter: check everything, then let Ray Tune search.

The three roles stay apart: the searcher (Optuna, through Ray's ``OptunaSearch``) decides what
to try, the scheduler (ASHA) decides when to stop a trial, the trial (``trial.py``) only trains
and reports. The driver checks all input before Ray starts, records every trial in MLflow
(``tracking.TrialRecorder``) and at the end saves, evaluates and registers the best adapter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ray.tune.search.optuna import OptunaSearch

from autopeft import __version__
from autopeft.config import ResolvedConfig
from autopeft.data import RawData, TokenizedData, load, locate, split_fingerprint, tokenize
from autopeft.engine.training import StudySpec, export_adapter
from autopeft.errors import ConfigError, SearchError
from autopeft.model.loading import model_reference, resolve_location
from autopeft.model.placement import ModelStructure
from autopeft.registry.tracking import TAG_KIND, TAG_STUDY, check_reachable, log_history, log_metrics, outcome
from autopeft.search.define_by_run import compile_space
from autopeft.tasks import get_task

if TYPE_CHECKING:
    import optuna


class PruningAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells Optuna the truth about trials the scheduler stopped.

    Ray's ``OptunaSearch`` records a trial that ASHA stops early as COMPLETE with its truncated
    score, so the sampler learns from half-trained values, and it records a trial that raised
    after reporting as COMPLETE too. Here a trial is COMPLETE only when it reported its final
    step; one stopped before is PRUNED (its last report kept as an intermediate value, which is
    what Optuna's samplers expect of pruned trials) and one that raised is FAIL.

    With several objectives (``metric``/``mode`` lists) the same holds; Optuna keeps no
    intermediate values there, so a pruned trial is PRUNED without a curve in Optuna (MLflow has
    it). Before telling Optuna, the trial's cost measurements are stored as user attributes,
    which the sampler's constraints and the study report read.
    """

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (Ray's ``OptunaSearch`` creates it once it has a space)."""
        return cast("optuna.Study", self._ot_study)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        from autopeft.objectives import ATTR_RAY_TRIAL

        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:  # joins Optuna trials to Ray trials (and their MLflow runs)
            self._ot_trials[trial_id].set_user_attr(ATTR_RAY_TRIAL, trial_id)
        return config

    def _already_told(self, trial_id: str) -> bool:
        """Whether Optuna's storage already holds this trial's end. Tune snapshots its state once
        a second; a driver that died within that second after a trial ended is restored with
        the trial still running, and Tune replays it. The study keeps the end it recorded."""
        ot_trial = self._ot_trials.get(trial_id)
        return ot_trial is not None and ot_trial.storage.get_trial(ot_trial._trial_id).state.is_finished()

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if self._already_told(trial_id):
            return
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        import optuna

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if self._already_told(trial_id):
            self._completed_trials.add(trial_id)
            return
        from autopeft.objectives import record_measurements

        state = outcome(result, error)
        ot_trial = self._ot_trials[trial_id]
        record_measurements(ot_trial, trial_id, result)
        single = isinstance(self.metric, str)
        if result and single and self.metric in result and state != "FAIL":
            # Tune does not pass the result that made the scheduler stop the trial to
            # on_trial_result; record it here so the pruned trial's curve is whole.
            step = int(result.get("training_iteration", 0))
            if step not in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values:
                ot_trial.report(float(result[self.metric]), step)
        if state == "COMPLETE":
            super().on_trial_complete(trial_id, result=result, error=False)
            return
        self.study.tell(
            ot_trial, state=optuna.trial.TrialState.PRUNED if state == "PRUNED" else optuna.trial.TrialState.FAIL
        )
        self._completed_trials.add(trial_id)


@dataclass
class Prepared:
    """Everything checked and loaded before any compute starts."""

    resolved: ResolvedConfig
    study_name: str
    location: str
    structure: ModelStructure
    raw: RawData
    output_dir: Path
    optuna_storage: str
    #: Set when resuming: the study's manifest (parent run, Ray experiment) from the first run.
    manifest: Any = None
    #: Configs enqueued as the first trials (``warmstart.WarmPoint``), checked in prepare().
    warm_start: list[Any] = field(default_factory=list)

    @property
    def config(self):  # noqa: ANN201 - SearchConfig, kept short for readers
        return self.resolved.config


@dataclass
class TrialSummary:
    trial_id: str
    outcome: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    run_id: str | None


@dataclass
class SearchResult:
    study_name: str
    parent_run_id: str
    trials: list[TrialSummary]
    best: TrialSummary | None
    adapter_dir: Path | None = None
    model_version: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    reloaded_val_metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    #: How the registered trial was chosen and the Pareto set (``objectives.Selection``).
    selection: Any = None
    #: The study report (HTML), written at the end of the search.
    report_path: Path | None = None
    #: Wall seconds per phase of the search (``SEARCH_PHASES``); logged on the parent run as
    #: ``phase_<name>_s`` so a slow study shows where its time went.
    phase_times_s: dict[str, float] = field(default_factory=dict)
    #: With ``budget.final_steps``: the final training's evaluations (the registered adapter's
    #: validation curve); empty when it was off or diverged (then the trial's adapter is registered).
    final_history: list[dict[str, float]] = field(default_factory=list)
    #: The Ray node the final training ran on (also the parent run's ``autopeft.final_training_node``).
    final_node_id: str = ""
    #: Seconds of the final training's own training steps and validation evaluations, without its
    #: Ray task's start (``phase_times_s["final_training"]`` holds both); logged as ``final_training_*_s``.
    final_train_time_s: float = 0.0
    final_eval_time_s: float = 0.0


#: The phases of :func:`run_search`: record the study in MLflow, tokenize the data (or read the
#: cache), start Ray, run the trials, train the selected config again for ``budget.final_steps``
#: (``final_training``, zero when off), export and register the best adapter (``finalize``) with
#: its evaluation after reloading it, on validation and test (``final_eval``), write the report.
#: Disjoint, so they add up to at most the wall time.
SEARCH_PHASES = ("mlflow_setup", "tokenize", "ray_start", "trials", "final_training", "final_eval", "finalize",
                 "report")


@contextlib.contextmanager
def _phase(times: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.monotonic() - started


def validate_space(resolved: ResolvedConfig, structure: ModelStructure) -> None:
    """Every family exists, fits the task and takes the given parameters; every placement
    choice resolves to at least one module of this model. Families the architecture cannot
    run are dropped from the space with their reason (``space.fit_to_model``)."""
    import logging

    from autopeft.adapters.fit import fit_to_model

    space = resolved.space
    fit = fit_to_model(space, structure, resolved.config.task.kind)
    for name, reason in fit.excluded.items():
        logging.getLogger("autopeft").warning("space.adapters.%s: excluded: %s", name, reason)
        del space.adapters[name]
    sampler = resolved.config.sampler.name
    differing = space.training_keys_set_per_family()
    if differing and sampler in ("gp", "nsga2"):
        # Optuna's gp and nsga2 model only parameters every trial samples from one distribution
        logging.getLogger("autopeft").warning(
            "space: %s differs between adapter families, so the %s sampler draws it at random instead of "
            "modelling it (tpe models it per trial; or give every family the same range)", ", ".join(differing), sampler)


def _default_storage(resolved: ResolvedConfig, output_dir: Path) -> str:
    tracking = resolved.config.tracking
    if tracking.optuna_storage:
        return tracking.optuna_storage
    if tracking.uri.startswith("sqlite:///"):
        db = Path(tracking.uri[len("sqlite:///"):]).resolve()
        return f"sqlite:///{db.parent / 'optuna.db'}"
    return f"sqlite:///{output_dir.resolve() / 'optuna.db'}"


def prepare(resolved: ResolvedConfig, *, manifest: Any = None) -> Prepared:
    """All checks that need no compute: model, data, space against the model, study name, paths.

    With ``manifest`` (a :class:`~autopeft.study.StudyManifest`), prepares to resume that study.
    """
    import optuna

    cfg = resolved.config
    task = get_task(cfg.task.kind)
    location = resolve_location(cfg.model.name_or_path)
    base_dir = resolved.source.parent if resolved.source else None
    raw = load(cfg.data, task, seed=cfg.seed, base_dir=base_dir)
    for split in ("train", "validation", "test"):  # absolute, so a resume works from any folder
        given = getattr(cfg.data, split)
        if given is not None:
            setattr(cfg.data, split, str(locate(given, base_dir).resolve()))
    structure = task.structure(cfg.model, location, raw.label_names or ["0", "1"])
    validate_space(resolved, structure)
    check_ray_address(cfg.backend.address)
    check_reachable(cfg.tracking.uri)

    output_dir = Path(cfg.output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output_dir: cannot write to {str(output_dir)!r}: {exc.strerror or exc}") from None

    if manifest is not None:
        return Prepared(resolved=resolved, study_name=manifest.study_name, location=location, structure=structure,
                        raw=raw, output_dir=output_dir, optuna_storage=manifest.optuna_storage, manifest=manifest)
    study_name = cfg.study_name or f"{cfg.tracking.experiment}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    storage = _default_storage(resolved, output_dir)
    try:
        existing = optuna.study.get_all_study_names(storage=storage)
    except Exception as exc:
        raise ConfigError(f"tracking.optuna_storage: cannot open {storage!r}: {' '.join(str(exc).split())[:200]}") from None
    if study_name in existing:
        raise ConfigError(
            f"study_name: a study named {study_name!r} already exists in {storage}; continue it with "
            f"'autopeft resume {study_name} --output-dir {output_dir}' or choose another name"
        )
    from autopeft.search.warmstart import collect

    warm = collect(cfg.warm_start, resolved.space, storage, trials=cfg.budget.trials, base_dir=base_dir)
    return Prepared(resolved=resolved, study_name=study_name, location=location, structure=structure, raw=raw,
                    output_dir=output_dir, optuna_storage=storage, warm_start=warm)


def prepare_resume(study_name: str, output_dir: Path) -> Prepared:
    """Re-check a study's recorded config and prepare to continue it."""
    from autopeft.config import from_dump
    from autopeft.search.manifest import StudyManifest

    manifest = StudyManifest.load(output_dir, study_name)
    return prepare(from_dump(manifest.config), manifest=manifest)


def _make_scheduler(cfg: Any) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    from autopeft.search.scheduler import BootstrappedASHA

    if not cfg.pruning.enabled:
        return FIFOScheduler()
    metric, mode = cfg.pruning.rung_target(cfg.objective)
    return BootstrappedASHA(
        bootstrap_count=cfg.pruning.bootstrap_count,
        time_attr="training_iteration",
        metric=metric,
        mode=mode,
        max_t=cfg.budget.num_reports,
        grace_period=min(cfg.pruning.grace_period, cfg.budget.num_reports),
        reduction_factor=cfg.pruning.reduction_factor,
    )


def _make_searcher(prepared: Prepared) -> PruningAwareOptunaSearch:
    import optuna

    from autopeft.objectives import make_sampler
    from autopeft.search.warmstart import enqueue

    cfg = prepared.config
    objectives = cfg.objective_list
    sampler = make_sampler(cfg.sampler, cfg.constraints.limits(), seed=cfg.seed, trials=cfg.budget.trials,
                           concurrent=cfg.budget.concurrent_trials, warm_started=len(prepared.warm_start))
    multi = len(objectives) > 1  # Ray's OptunaSearch takes metric/mode lists for several objectives
    searcher = PruningAwareOptunaSearch(
        space=compile_space(prepared.resolved.space),
        metric=[m for m, _ in objectives] if multi else cfg.objective.metric,
        mode=[m for _, m in objectives] if multi else cfg.objective.mode,
        sampler=sampler,
        study_name=prepared.study_name,
        storage=optuna.storages.RDBStorage(prepared.optuna_storage),
    )
    # enqueued directly (not points_to_evaluate) so each carries its source as a user attribute
    enqueue(searcher.study, prepared.warm_start)
    return searcher


def check_ray_address(address: str | None, timeout_s: float = 5.0) -> None:
    """A Ray address that does not answer fails here in seconds (``ray.init`` retries for minutes)."""
    import socket

    if address in (None, "", "auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"backend.address: expected auto, HOST:PORT or ray://HOST:PORT, found {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(f"backend.address: no Ray cluster answers at {address!r}: {exc.strerror or exc}") from None


def init_ray(address: str | None, *, verbose: bool = False) -> bool:
    """Connect to ``address`` or start local Ray; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
                 configure_logging=verbose, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"backend.address: cannot connect to Ray at {address!r}: {' '.join(str(exc).split())[:200]}") from None
    return True


def run_search(prepared: Prepared, *, callbacks: list[Any] | None = None, verbose: bool = False) -> SearchResult:
    """Run the study; the parent MLflow run is FINISHED only when a version was registered."""
    from ray import tune

    from autopeft.registry.tracking import (
        TrialRecorder,
        close_orphan_runs,
        connect,
        flatten,
        log_params,
        redact,
        trial_runs,
    )
    from autopeft.search.manifest import StudyManifest
    from autopeft.search.trial import run_trial

    cfg = prepared.config
    started = time.monotonic()
    phases: dict[str, float] = {}
    with _phase(phases, "mlflow_setup"):
        client, experiment_id = connect(cfg.tracking.uri, cfg.tracking.experiment)
    with _phase(phases, "tokenize"):
        tokenizer = get_task(cfg.task.kind).load_preprocessor(cfg.model, prepared.location)  # or image processor
        data = tokenize(prepared.raw, tokenizer, cfg.model.max_length, tokenizer_id=prepared.location,
                        cache_dir=prepared.output_dir / "cache")
    with _phase(phases, "ray_start"):
        started_ray = init_ray(cfg.backend.address, verbose=verbose)

    model_ref = model_reference(cfg.model, prepared.location)
    ray_path = cfg.backend.storage_path or str((prepared.output_dir / "ray").resolve())
    manifest = prepared.manifest
    with _phase(phases, "mlflow_setup"):
        if manifest is None:
            parent = client.create_run(
                experiment_id,
                run_name=prepared.study_name,
                tags={TAG_STUDY: prepared.study_name, TAG_KIND: "study", "autopeft.version": __version__,
                      "autopeft.data_fingerprint": data.fingerprint, "autopeft.base_model": cfg.model.name_or_path,
                      "autopeft.optuna_storage": redact(prepared.optuna_storage)},
            )
            manifest = StudyManifest(study_name=prepared.study_name, config=prepared.resolved.dump(),
                                     parent_run_id=parent.info.run_id, experiment_id=experiment_id,
                                     tracking_uri=cfg.tracking.uri, optuna_storage=prepared.optuna_storage,
                                     ray_experiment=_join_storage(ray_path, prepared.study_name))
            manifest.save(prepared.output_dir)
        else:  # resuming: the study keeps its parent run
            client.update_run(manifest.parent_run_id, status="RUNNING")
    parent_id = manifest.parent_run_id
    recorder = TrialRecorder(client, experiment_id, parent_id, prepared.study_name)
    status = "FAILED"
    try:
        with _phase(phases, "mlflow_setup"):
            if prepared.manifest is None:
                log_params(client, parent_id, flatten(prepared.resolved.dump()))
                client.log_dict(parent_id, redact(prepared.resolved.dump()), "config.json")
                client.log_dict(parent_id, prepared.resolved.space.model_dump(mode="json"), "space.json")
                client.log_dict(parent_id, {"base_model": model_ref, "data": prepared.raw.source, "sizes": data.sizes,
                                            "label_names": data.label_names}, "lineage.json")

        spec = StudySpec(model=cfg.model, location=prepared.location, task=cfg.task.kind,
                         label_names=data.label_names, max_steps=cfg.budget.max_steps,
                         eval_interval=cfg.budget.eval_interval, eval_batch_size=cfg.budget.eval_batch_size,
                         seed=cfg.seed, metric=cfg.objective.metric, mode=cfg.objective.mode,
                         limits=cfg.constraints.limits())
        resources = {"cpu": cfg.budget.cpus_per_trial, "gpu": cfg.budget.gpus_per_trial}
        trainable = tune.with_resources(tune.with_parameters(run_trial, spec=spec, data=data), resources)
        if prepared.manifest is not None and tune.Tuner.can_restore(manifest.ray_experiment):
            # Ray restores the searcher (with its Optuna trials), the scheduler and every trial;
            # unfinished trials continue from their last checkpoint.
            tuner = tune.Tuner.restore(manifest.ray_experiment, trainable, resume_unfinished=True,
                                       resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=_make_searcher(prepared),
                    scheduler=_make_scheduler(cfg),
                    num_samples=cfg.budget.trials,
                    max_concurrent_trials=cfg.budget.concurrent_trials,
                    time_budget_s=cfg.budget.time_limit_s,
                    # keep worker processes (and their imported torch/transformers) between trials
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=prepared.study_name,
                    storage_path=ray_path,
                    callbacks=[recorder, *(callbacks or [])],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    failure_config=tune.FailureConfig(max_failures=cfg.budget.max_failures),
                    verbose=0,
                ),
            )
        # Snapshot Tune's experiment state at most a second after any change, so a driver that
        # dies loses at most the trials started in that second (they are cleaned up below).
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
        with _phase(phases, "trials"):
            grid = tuner.fit()
        trials = _summaries(grid, trial_runs(client, experiment_id, parent_id), cfg.objective.metric)
        selection = _best(trials, cfg)
        result = SearchResult(study_name=prepared.study_name, parent_run_id=parent_id, trials=trials,
                              best=selection.best, selection=selection)
        if result.best is None:
            raise SearchError("search: no trial produced a result (see the FAILED trial runs in MLflow for why)")
        checkpoint = next(grid[i].checkpoint for i in range(len(grid))
                          if (grid[i].metrics or {}).get("trial_id") == result.best.trial_id)
        _finalize(prepared, spec, client, data, result, checkpoint, model_ref, phases)
        with _phase(phases, "report"):
            result.report_path = _report(prepared, client, result)
        manifest.status, manifest.registered_version = "FINISHED", result.model_version
        manifest.save(prepared.output_dir)
        status = "FINISHED"
        result.wall_time_s = time.monotonic() - started
        result.phase_times_s = phases
        log_metrics(client, parent_id, {"search_wall_time_s": result.wall_time_s,
                                        **{f"phase_{name}_s": seconds for name, seconds in phases.items()}})
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        recorder.close_open_runs()
        close_orphan_runs(client, experiment_id, parent_id)
        _fail_orphan_trials(prepared.optuna_storage, prepared.study_name)
        client.set_terminated(parent_id, status=status)
        if started_ray:
            import ray

            ray.shutdown()


def _summaries(grid: Any, runs: dict[str, str], metric: str) -> list[TrialSummary]:
    out = []
    for result in grid:
        metrics = dict(result.metrics or {})
        trial_id = metrics.get("trial_id") or (result.path.rsplit("_", 1)[-1] if result.path else "?")
        out.append(TrialSummary(trial_id=trial_id, outcome=outcome(metrics, result.error is not None),
                                params=dict(result.config or {}), metrics=metrics, run_id=runs.get(trial_id)))
    return out


def _best(trials: list[TrialSummary], cfg: Any) -> Any:
    """The trial to register, by the config's selection policy (``objectives.select``): among
    COMPLETE trials within the constraints; a pruned one only when none completed."""
    from autopeft.objectives import select

    return select(trials, cfg.objective_list, cfg.constraints.limits(), cfg.selection)


def _report(prepared: Prepared, client: Any, result: SearchResult) -> Path | None:
    """Record the Pareto set, tag warm-started runs, write the study report. A report that fails
    does not fail the search (the adapter is registered by now): the error is tagged instead."""
    import logging

    from autopeft.objectives import record_selection
    from autopeft.search.warmstart import tag_runs

    record_selection(client, result.parent_run_id, result.selection)
    tag_runs(client, prepared.optuna_storage, prepared.study_name, {t.trial_id: t.run_id for t in result.trials})
    try:
        from autopeft.report.study_report import write_report

        return write_report(prepared.study_name, tracking_uri=prepared.config.tracking.uri,
                            out_dir=prepared.output_dir / prepared.study_name, client=client,
                            structure=prepared.structure)
    except Exception as exc:  # noqa: BLE001 - reported on the run, not raised
        logging.getLogger(__name__).warning("study report failed: %s", exc)
        client.set_tag(result.parent_run_id, "autopeft.report_error", " ".join(str(exc).split())[:500])
        return None


def _finalize(prepared: Prepared, spec: StudySpec, client: Any, data: TokenizedData, result: SearchResult,
              checkpoint: Any, model_ref: dict[str, str], phases: dict[str, float]) -> None:
    """Save the best adapter with its tokenizer and metadata, evaluate it, register it; the
    final training (if any) is timed as ``final_training``, the evaluation as ``final_eval``, the
    rest as ``finalize``."""
    with _phase(phases, "final_training"):
        final_dir = _train_final(prepared, spec, client, data, result) if prepared.config.budget.final_steps else None
    with _phase(phases, "finalize"):
        if final_dir is not None:
            adapter_dir = _export_best(prepared, spec, data, result, final_dir, model_ref)
            shutil.rmtree(final_dir)  # the exported adapter's copy
        else:
            with checkpoint.as_directory() as directory:
                adapter_dir = _export_best(prepared, spec, data, result, Path(directory), model_ref)
    with _phase(phases, "final_eval"):
        _evaluate_reloaded(prepared, data, result, adapter_dir)
    with _phase(phases, "finalize"):
        _record_and_register(prepared, client, data, result, adapter_dir, model_ref)


def _train_final(prepared: Prepared, spec: StudySpec, client: Any, data: TokenizedData,
                 result: SearchResult) -> Path | None:
    """Train the selected trial's config again from its start for ``budget.final_steps`` steps
    (learning-rate schedule over those steps) in a Ray task with a trial's resources; its
    validation curve goes on the parent run as ``final_<metric>``. Returns the folder of the
    trained adapter, or None when the training diverged or failed: the trial's adapter is then
    registered instead (the search's result is not lost), and the parent run's
    ``autopeft.final_training_error`` tag says why.

    Short trials rank configs; the adapter a user ships is better trained for longer, and the
    steps ASHA saves pay for it (bench/NOTES.md, *A final training of the selected config*)."""
    import dataclasses

    import ray

    from autopeft.search.trial import train_final

    cfg = prepared.config
    best = result.best
    assert best is not None and cfg.budget.final_steps
    final_spec = dataclasses.replace(spec, max_steps=cfg.budget.final_steps, eval_interval=cfg.budget.final_interval,
                                     limits={})
    # a lost worker or node restarts it (from its start), as many times as a trial may be retried
    task = ray.remote(train_final).options(num_cpus=cfg.budget.cpus_per_trial, num_gpus=cfg.budget.gpus_per_trial,
                                           max_retries=cfg.budget.max_failures)

    def keep_trial_adapter(reason: str) -> None:
        logging.getLogger(__name__).warning("%s; registering the trial's adapter", reason)
        client.set_tag(result.parent_run_id, "autopeft.final_training_error", reason[:500])

    try:
        trained = ray.get(task.remote(final_spec, dict(best.params), data, get_task(cfg.task.kind).metric_names))
    except ray.exceptions.RayError as exc:  # it crashed, or its worker was lost past its retries
        cause = getattr(exc, "cause", None) or exc  # a task's own exception, without Ray's traceback
        keep_trial_adapter(f"final training failed: {type(cause).__name__}: {' '.join(str(cause).split())}")
        return None
    result.final_node_id = trained.node_id
    result.final_train_time_s, result.final_eval_time_s = trained.train_time_s, trained.eval_time_s
    log_metrics(client, result.parent_run_id, {"final_training_train_s": trained.train_time_s,
                                               "final_training_eval_s": trained.eval_time_s})
    client.set_tag(result.parent_run_id, "autopeft.final_training_node", trained.node_id)
    log_history(client, result.parent_run_id, trained.history, prefix="final_")
    if trained.error is not None:  # it diverged
        keep_trial_adapter(trained.error)
        return None
    result.final_history = trained.history
    directory = prepared.output_dir / prepared.study_name / "final-training"
    if directory.exists():  # left by a driver that died here; this run starts it again
        shutil.rmtree(directory)
    for name, content in trained.adapter_files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    return directory


def _export_best(prepared: Prepared, spec: StudySpec, data: TokenizedData, result: SearchResult,
                 checkpoint_dir: Path, model_ref: dict[str, str]) -> Path:
    """The registered adapter (the best trial's, or its final training's), tokenizer and
    metadata in ``<output>/<study>/<artifact>``."""
    from autopeft.engine.predictor import write_metadata
    from autopeft.registry.serving import ADAPTER_ARTIFACT

    cfg = prepared.config
    best = result.best
    assert best is not None
    # named like the artifact key: MLflow stores the folder under artifacts/<its name>
    adapter_dir = prepared.output_dir / prepared.study_name / ADAPTER_ARTIFACT
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    export_adapter(spec, best.params, checkpoint_dir, adapter_dir)
    get_task(cfg.task.kind).load_preprocessor(cfg.model, prepared.location).save_pretrained(str(adapter_dir))
    family = best.params.get("adapter")
    write_metadata(adapter_dir, {
        "autopeft_version": __version__,
        "base_model": {"config": cfg.model.model_dump(mode="json"), "reference": model_ref},
        "task": cfg.task.kind,
        "task_config": cfg.task.model_dump(mode="json"),
        "label_names": data.label_names,
        "text_columns": prepared.raw.text_columns,
        "label_column": prepared.raw.label_column,
        "max_length": cfg.model.max_length,
        "family": family,
        "params": best.params,
        "study": prepared.study_name,
        "trial_id": best.trial_id,
        "objective": {"metric": cfg.objective.metric, "mode": cfg.objective.mode},
        "objectives": [{"metric": m, "mode": md} for m, md in cfg.objective_list],
        "selection": {"policy": cfg.selection.policy, "reason": result.selection.reason if result.selection else ""},
        "costs": {k: best.metrics[k] for k in ("trainable_share", "adapter_size_mb", "peak_memory_mb", "latency_ms")
                  if k in best.metrics},
        # the registered adapter's own: its final training's last evaluation where it had one
        "validation": {k: v for k, v in (result.final_history[-1] if result.final_history else best.metrics).items()
                       if k in get_task(cfg.task.kind).metric_names},
        "final_steps": cfg.budget.final_steps if result.final_history else None,
        "data_fingerprint": data.fingerprint,
    })
    return adapter_dir


def _evaluate_reloaded(prepared: Prepared, data: TokenizedData, result: SearchResult, adapter_dir: Path) -> None:
    """Validation (a check that the saved adapter reproduces its trial) and test metrics of the
    adapter as saved, reloaded the way users load it."""
    from autopeft.engine.predictor import AdapterPredictor
    from autopeft.engine.training import evaluate

    cfg = prepared.config
    predictor = AdapterPredictor.load(adapter_dir)
    pad = data.pad_token_id
    result.reloaded_val_metrics = evaluate(predictor.model, data.splits["validation"], pad, cfg.task.kind,
                                           batch_size=cfg.budget.eval_batch_size, device=predictor.device)
    if "test" in data.splits:
        result.test_metrics = evaluate(predictor.model, data.splits["test"], pad, cfg.task.kind,
                                       batch_size=cfg.budget.eval_batch_size, device=predictor.device)
    del predictor


def _record_and_register(prepared: Prepared, client: Any, data: TokenizedData, result: SearchResult,
                         adapter_dir: Path, model_ref: dict[str, str]) -> None:
    """Log the best adapter's metrics and the trial table on the parent run; register the adapter."""
    from autopeft.registry.versions import register_adapter, signature

    cfg = prepared.config
    best = result.best
    assert best is not None
    family = best.params.get("adapter")
    metric = cfg.objective.metric
    summary = {f"best_val_{k}": float(v) for k, v in result.reloaded_val_metrics.items()}
    summary.update({f"test_{k}": float(v) for k, v in result.test_metrics.items()})
    summary["best_trainable_params"] = float(best.metrics.get("trainable_params", 0))
    summary["best_trainable_share"] = float(best.metrics.get("trainable_share", 0))
    log_metrics(client, result.parent_run_id, summary)
    client.set_tag(result.parent_run_id, "autopeft.best_trial_id", best.trial_id)
    if best.run_id:
        client.set_tag(result.parent_run_id, "autopeft.best_trial_run_id", best.run_id)
    client.log_dict(result.parent_run_id, [
        {"trial_id": t.trial_id, "outcome": t.outcome, "run_id": t.run_id, metric: t.metrics.get(metric),
         "step": t.metrics.get("step"), **t.params} for t in result.trials
    ], "trials.json")

    test_fp = split_fingerprint(prepared.raw, "test") if "test" in prepared.raw.frames else ""
    tags = {
        "autopeft.study": prepared.study_name,
        "autopeft.trial_id": best.trial_id,
        "autopeft.trial_run_id": best.run_id or "",
        "autopeft.parent_run_id": result.parent_run_id,
        "autopeft.family": family,
        "autopeft.params": json.dumps(best.params, sort_keys=True, default=str),
        "autopeft.base_model": json.dumps(model_ref, sort_keys=True),
        "autopeft.data_fingerprint": data.fingerprint,
        "autopeft.split_sizes": json.dumps(data.sizes, sort_keys=True),
        "autopeft.test_fingerprint": test_fp,
        "autopeft.metric": metric,
        "autopeft.mode": cfg.objective.mode,
        "autopeft.selection_policy": cfg.selection.policy,
        "autopeft.val_metric": result.reloaded_val_metrics.get(metric, ""),
        "autopeft.test_metric": result.test_metrics.get(metric, ""),
        "autopeft.trainable_params": best.metrics.get("trainable_params", ""),
        "autopeft.trainable_share": best.metrics.get("trainable_share", ""),
        "autopeft.final_steps": cfg.budget.final_steps if result.final_history else "",
        "autopeft.version": __version__,
    }
    result.adapter_dir = adapter_dir
    registered = _registered_for_study(client, cfg.tracking.registered_model, prepared.study_name)
    if registered is not None:  # a resumed study that registered before its driver died
        result.model_version = str(registered)
        return
    version = register_adapter(client, tracking_uri=cfg.tracking.uri, run_id=result.parent_run_id,
                               adapter_dir=adapter_dir, registered_model=cfg.tracking.registered_model, tags=tags,
                               model_signature=signature(prepared.raw.text_columns, get_task(cfg.task.kind).outputs))
    result.model_version = str(version.version)


def _registered_for_study(client: Any, name: str, study: str) -> str | None:
    """The version already registered for ``study`` (so a resumed study registers once)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for version in versions:
        if version.tags.get(TAG_STUDY) == study:
            return str(version.version)
    return None


def _fail_orphan_trials(storage_url: str, study_name: str) -> int:
    """Mark Optuna trials still RUNNING after the search as FAIL.

    Once Tune has finished, a RUNNING trial is one the searcher asked for just before a driver
    crash and Tune's last snapshot never saw; it will never be told. It is tagged so that
    counts of the study's real trials can leave it out.
    """
    import optuna

    try:
        storage = optuna.storages.RDBStorage(storage_url)
        study_id = storage.get_study_id_from_name(study_name)
    except Exception:  # no study was created (the search failed before its first trial)
        return 0
    orphans = [t for t in storage.get_all_trials(study_id, deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for trial in orphans:
        storage.set_trial_user_attr(trial._trial_id, ORPHAN_ATTR, "asked for just before the driver died; never run to a result")
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    return len(orphans)


#: Optuna user attribute on trials orphaned by a driver crash.
ORPHAN_ATTR = "autopeft.orphaned"


def _join_storage(storage_path: str, name: str) -> str:
    """``storage_path``/``name``, keeping a URI's query (``s3://b/p?endpoint_override=...``) at the end."""
    path, sep, query = storage_path.partition("?")
    return f"{path.rstrip('/')}/{name}{sep}{query}"
