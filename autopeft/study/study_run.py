"""The study's record: its parent MLflow run and manifest, opened when a study starts (or
reopened when it resumes) and always closed, so no run is left RUNNING by a driver that exited.

At the end the Pareto set and warm-start sources are recorded and the study report written.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from autopeft import __version__, _compat
from autopeft.config import render_yaml
from autopeft.data import TokenizedData
from autopeft.errors import StudyCancelled
from autopeft.objectives import record_selection
from autopeft.registry.tracking import (
    TrialRecorder,
    close_orphan_runs,
    flatten,
    log_params,
    redact,
    set_tags,
)
from autopeft.report.study_report import write_report
from autopeft.schema import RUN_STATUS, Artifact, JobEnv, Outcome, StudyRunTags, TrialAttr, now_iso
from autopeft.study.manifest import StudyManifest
from autopeft.study.results import SearchResult
from autopeft.study.warmstart import tag_runs

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from autopeft.study.prepare import Prepared

logger = logging.getLogger(__name__)

#: Optuna user attribute on trials orphaned by a driver crash (kept importable here).
ORPHAN_ATTR = TrialAttr.ORPHANED
#: Why an Optuna trial was closed as FAIL without a result (its ``ORPHAN_ATTR``). A resumed study
#: that runs such a trial on records its result as a new trial (``TrialAttr.CONTINUES``).
ORPHANED_REASON = "asked for just before the driver died; not run to a result by this driver"
INTERRUPTED_REASON = "running when the search was interrupted (Ctrl-C); not run to a result by this driver"
CANCELLED_REASON = "running when the study was cancelled; not run to a result by this driver"


@dataclass
class StudyRun:
    """The parent MLflow run of a study, its manifest and the recorder of its trial runs."""

    client: MlflowClient
    experiment_id: str
    manifest: StudyManifest
    recorder: TrialRecorder
    resumed: bool
    #: How the parent run ends when the study closes: FINISHED only once a version is registered.
    status: str = "FAILED"

    @property
    def parent_id(self) -> str:
        return self.manifest.parent_run_id


def open_study_run(prepared: Prepared, client: MlflowClient, experiment_id: str, data: TokenizedData,
                   ray_path: str) -> StudyRun:
    """Create the study's parent run and manifest, or reopen them when resuming."""
    cfg = prepared.config
    manifest = prepared.manifest
    if manifest is None:
        parent = client.create_run(
            experiment_id,
            run_name=prepared.study_name,
            tags=StudyRunTags.created(study=prepared.study_name, version=__version__, data_fingerprint=data.fingerprint,
                                      base_model=cfg.model.name_or_path,
                                      optuna_storage=redact(prepared.optuna_storage)).to_tags(),
        )
        set_tags(client, parent.info.run_id, StudyRunTags(note=(
            f"Study in progress: searching {', '.join(prepared.resolved.space.adapters)} on {cfg.model.name_or_path} "
            f"({cfg.budget.trials} trials of up to {cfg.budget.max_steps} steps). The nested runs are its trials.")))
        manifest = StudyManifest(study_name=prepared.study_name, config=prepared.resolved.dump(),
                                 parent_run_id=parent.info.run_id, experiment_id=experiment_id,
                                 tracking_uri=cfg.tracking.uri, optuna_storage=prepared.optuna_storage,
                                 ray_experiment=join_storage(ray_path, prepared.study_name))
        manifest.save(prepared.output_dir)
    else:  # resuming: the study keeps its parent run
        client.update_run(manifest.parent_run_id, status="RUNNING")
    submitted = job_tags()
    if submitted.to_tags():  # run as a Ray job (autopeft submit): who submitted it, which job runs it now
        set_tags(client, manifest.parent_run_id, submitted)
    recorder = TrialRecorder(client, experiment_id, manifest.parent_run_id, prepared.study_name,
                             metric=cfg.objective.metric)
    return StudyRun(client=client, experiment_id=experiment_id, manifest=manifest, recorder=recorder,
                    resumed=prepared.manifest is not None)


def job_tags() -> StudyRunTags:
    """Who submitted the study and the Ray job running it, from the environment ``autopeft
    submit`` gives the driver (nothing when the study was started by hand)."""
    return StudyRunTags(submitter=os.environ.get(JobEnv.SUBMITTER) or None,
                        job_id=os.environ.get(JobEnv.JOB_ID) or None)


def log_study_inputs(study: StudyRun, prepared: Prepared, data: TokenizedData, model_ref: dict[str, str]) -> None:
    """The resolved config (params and ``config.json``), the space and the data lineage, once."""
    if study.resumed:
        return
    client, parent_id = study.client, study.parent_id
    log_params(client, parent_id, flatten(prepared.resolved.dump()))
    client.log_dict(parent_id, redact(prepared.resolved.dump()), Artifact.CONFIG)
    client.log_text(parent_id, render_yaml(redact(prepared.resolved.dump()), prepared.resolved.notes),
                    Artifact.CONFIG_YAML)
    client.log_dict(parent_id, prepared.resolved.space.model_dump(mode="json"), Artifact.SPACE)
    client.log_dict(parent_id, redact({"base_model": model_ref, "data": prepared.raw.source, "sizes": data.sizes,
                                       "label_names": data.label_names}), Artifact.LINEAGE)


def finish_study_run(study: StudyRun, prepared: Prepared, result: SearchResult) -> None:
    """The study registered its adapter: the manifest and the parent run say FINISHED."""
    study.manifest.status, study.manifest.registered_version = "FINISHED", result.model_version
    study.manifest.save(prepared.output_dir)
    study.status = "FINISHED"


def close_study_run(study: StudyRun, prepared: Prepared) -> None:
    """End every run the study opened: unfinished trial runs KILLED, Optuna trials still running
    FAIL, the parent run with the study's status. Called from the driver's ``finally``: when an
    exception is on its way out, the parent run is KILLED for an interrupt (Ctrl-C) and FAILED
    otherwise, with the cause as its ``autopeft.error`` tag.

    A second Ctrl-C does not cut this short (it would leave runs RUNNING), and one step that
    fails (the store went away) does not keep the others from running.
    """
    error = sys.exc_info()[1]  # the exception leaving the driver's try block, if any
    interrupted = isinstance(error, KeyboardInterrupt)  # Ctrl-C, or cancelled (StudyCancelled)
    if interrupted and study.status != "FINISHED":  # FINISHED: the version is registered; it stands
        study.status = RUN_STATUS[Outcome.INTERRUPTED]
    with _sigint_deferred(reraise=error is None):
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("close the trial runs", study.recorder.close_open_runs),
            ("close orphaned trial runs", lambda: close_orphan_runs(study.client, study.experiment_id, study.parent_id)),
            ("close the Optuna trials", lambda: fail_orphan_trials(
                prepared.optuna_storage, prepared.study_name,
                reason=CANCELLED_REASON if isinstance(error, StudyCancelled)
                else INTERRUPTED_REASON if interrupted else ORPHANED_REASON)),
        ]
        if error is not None and study.status != "FINISHED":
            steps.append(("record the cause", lambda: _record_cause(study, error)))
        steps.append(("end the study run", lambda: study.client.set_terminated(study.parent_id, status=study.status)))
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the rest still runs; the cause is already on its way out
                logger.warning("could not %s of study %r: %s", what, prepared.study_name, exc)


def _record_cause(study: StudyRun, error: BaseException) -> None:
    """The cause on the parent run (``autopeft.error``), and a note that says the study ended."""
    if isinstance(error, StudyCancelled):
        # autopeft cancel tags who asked before it stops the job; the driver adds when it was told
        by = StudyRunTags.from_tags(study.client.get_run(study.parent_id).data.tags).cancelled_by
        cause = f"cancelled{f' by {by}' if by else ''} ({error.signal_name} at {error.at})"
        note = f"Study {cause} before it registered an adapter; 'autopeft resume' continues it."
        set_tags(study.client, study.parent_id, StudyRunTags(cancelled_at=error.at))
    elif isinstance(error, KeyboardInterrupt):
        cause, note = "interrupted (Ctrl-C)", "Study interrupted (Ctrl-C) before it registered an adapter."
    else:
        cause = f"{type(error).__name__}: {' '.join(str(error).split())}"
        note = f"Study failed before it registered an adapter: {cause}"
    set_tags(study.client, study.parent_id, StudyRunTags(error=cause, note=f"{note} The nested runs are its trials."))


@contextmanager
def _sigint_deferred(*, reraise: bool) -> Iterator[None]:
    """Hold a Ctrl-C or a SIGTERM that arrives inside the block; raise it once the block is done
    if ``reraise`` (with an exception already on its way out, that one goes on instead)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can be set only in the main thread
        return
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received and reraise:
        if received[0] == signal.SIGTERM:
            raise StudyCancelled(signal.Signals.SIGTERM.name, now_iso())
        raise KeyboardInterrupt


def write_study_report(prepared: Prepared, client: Any, result: SearchResult) -> Path | None:
    """Record the Pareto set, tag warm-started runs, write the study report. A report that fails
    does not fail the search (the adapter is registered by now): the error is tagged instead."""
    record_selection(client, result.parent_run_id, result.selection)
    tag_runs(client, prepared.optuna_storage, prepared.study_name, {t.trial_id: t.run_id for t in result.trials})
    try:
        return write_report(prepared.study_name, tracking_uri=prepared.config.tracking.uri,
                            out_dir=prepared.output_dir / prepared.study_name, client=client,
                            structure=prepared.structure)
    except Exception as exc:  # noqa: BLE001 - reported on the run, not raised
        logger.warning("study report failed: %s", exc)
        set_tags(client, result.parent_run_id, StudyRunTags(report_error=" ".join(str(exc).split())))
        return None


def fail_orphan_trials(storage_url: str, study_name: str, reason: str = ORPHANED_REASON) -> int:
    """Mark Optuna trials still RUNNING after the search as FAIL.

    Once Tune has finished, a RUNNING trial is one the searcher asked for just before a driver
    crash and Tune's last snapshot never saw, or one the search was interrupted in; it will
    never be told. It is tagged (with ``reason``) so that counts of the study's real trials can
    leave it out.
    """
    try:
        storage = optuna.storages.RDBStorage(storage_url)
        study_id = storage.get_study_id_from_name(study_name)
    except Exception:  # no study was created (the search failed before its first trial)
        return 0
    orphans = [t for t in storage.get_all_trials(study_id, deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for trial in orphans:
        trial_id = _compat.optuna_trial_id(trial)
        storage.set_trial_user_attr(trial_id, ORPHAN_ATTR, reason)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    return len(orphans)


def join_storage(storage_path: str, name: str) -> str:
    """``storage_path``/``name``, keeping a URI's query (``s3://b/p?endpoint_override=...``) at the end."""
    path, sep, query = storage_path.partition("?")
    return f"{path.rstrip('/')}/{name}{sep}{query}"
