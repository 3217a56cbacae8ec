"""The study's record: its parent MLflow run and manifest, opened when a study starts (or
reopened when it resumes) and always closed, so no run is left RUNNING by a driver that exited.

At the end the Pareto set and warm-start sources are recorded and the study report written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from autopeft import __version__, _compat
from autopeft.data import TokenizedData
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
from autopeft.schema import Artifact, StudyRunTags, TrialAttr
from autopeft.search.manifest import StudyManifest
from autopeft.search.results import SearchResult
from autopeft.search.warmstart import tag_runs

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from autopeft.search.prepare import Prepared

logger = logging.getLogger(__name__)

#: Optuna user attribute on trials orphaned by a driver crash (kept importable here).
ORPHAN_ATTR = TrialAttr.ORPHANED


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
    recorder = TrialRecorder(client, experiment_id, manifest.parent_run_id, prepared.study_name,
                             metric=cfg.objective.metric)
    return StudyRun(client=client, experiment_id=experiment_id, manifest=manifest, recorder=recorder,
                    resumed=prepared.manifest is not None)


def log_study_inputs(study: StudyRun, prepared: Prepared, data: TokenizedData, model_ref: dict[str, str]) -> None:
    """The resolved config (params and ``config.json``), the space and the data lineage, once."""
    if study.resumed:
        return
    client, parent_id = study.client, study.parent_id
    log_params(client, parent_id, flatten(prepared.resolved.dump()))
    client.log_dict(parent_id, redact(prepared.resolved.dump()), Artifact.CONFIG)
    client.log_dict(parent_id, prepared.resolved.space.model_dump(mode="json"), Artifact.SPACE)
    client.log_dict(parent_id, {"base_model": model_ref, "data": prepared.raw.source, "sizes": data.sizes,
                                "label_names": data.label_names}, Artifact.LINEAGE)


def finish_study_run(study: StudyRun, prepared: Prepared, result: SearchResult) -> None:
    """The study registered its adapter: the manifest and the parent run say FINISHED."""
    study.manifest.status, study.manifest.registered_version = "FINISHED", result.model_version
    study.manifest.save(prepared.output_dir)
    study.status = "FINISHED"


def close_study_run(study: StudyRun, prepared: Prepared) -> None:
    """End every run the study opened: unfinished trial runs KILLED, Optuna trials that were asked
    for but never ran FAIL, the parent run with the study's status."""
    study.recorder.close_open_runs()
    close_orphan_runs(study.client, study.experiment_id, study.parent_id)
    fail_orphan_trials(prepared.optuna_storage, prepared.study_name)
    study.client.set_terminated(study.parent_id, status=study.status)


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


def fail_orphan_trials(storage_url: str, study_name: str) -> int:
    """Mark Optuna trials still RUNNING after the search as FAIL.

    Once Tune has finished, a RUNNING trial is one the searcher asked for just before a driver
    crash and Tune's last snapshot never saw; it will never be told. It is tagged so that
    counts of the study's real trials can leave it out.
    """
    try:
        storage = optuna.storages.RDBStorage(storage_url)
        study_id = storage.get_study_id_from_name(study_name)
    except Exception:  # no study was created (the search failed before its first trial)
        return 0
    orphans = [t for t in storage.get_all_trials(study_id, deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for trial in orphans:
        trial_id = _compat.optuna_trial_id(trial)
        storage.set_trial_user_attr(trial_id, ORPHAN_ATTR, "asked for just before the driver died; never run to a result")
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    return len(orphans)


def join_storage(storage_path: str, name: str) -> str:
    """``storage_path``/``name``, keeping a URI's query (``s3://b/p?endpoint_override=...``) at the end."""
    path, sep, query = storage_path.partition("?")
    return f"{path.rstrip('/')}/{name}{sep}{query}"
