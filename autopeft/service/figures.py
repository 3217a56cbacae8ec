"""A submitted study's figures, read from MLflow (never from its log): trials done, pruned and
failed of the budget, the best validation value so far, the registered version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autopeft.registry.reachability import is_http, probe
from autopeft.registry.versions import registered_for_study
from autopeft.schema import Outcome, StudyRunTags, TrialRunTags

#: The study run's params (its flattened config) that the figures read.
_METRIC, _MODE, _TRIALS, _REGISTERED_MODEL = ("objective.metric", "objective.mode", "budget.trials",
                                              "tracking.registered_model")


@dataclass
class StudyFigures:
    """What MLflow holds of a study so far."""

    run_id: str  # the study run
    run_status: str  # its MLflow status: RUNNING, FINISHED, KILLED, FAILED
    run_url: str | None = None  # the study run in the MLflow UI (a tracking server only)
    budget: int | None = None
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    metric: str | None = None
    best: float | None = None
    registered_version: str | None = None
    tags: StudyRunTags | None = None

    @property
    def done(self) -> int:
        return self.completed + self.pruned + self.failed

    def trials_line(self) -> str:
        """``5/8 (2 pruned, 0 failed)``: trials done of the budget, and how many of those ended early."""
        of = f"/{self.budget}" if self.budget else ""
        return f"{self.done}{of} ({self.pruned} pruned, {self.failed} failed)"


def study_run(uri: str, study: str, experiment: str | None = None) -> tuple[Any, Any] | None:
    """(an MLflow client for ``uri``, the study's latest parent run), or None when it has no run
    there yet. ConnectionError (within seconds) when a tracking server does not answer."""
    if is_http(uri):
        probe(uri)  # seconds, where the client would retry an unreachable server for minutes
    # deferred: MLflow takes seconds to import; the job commands that do not read it start without it
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if experiment:
        found = client.get_experiment_by_name(experiment)
        experiment_ids = [found.experiment_id] if found is not None else []
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return None
    runs = client.search_runs(experiment_ids, filter_string=StudyRunTags.search_filter(study),
                              order_by=["attributes.start_time DESC"], max_results=1)
    return (client, runs[0]) if runs else None


def study_figures(uri: str, study: str, experiment: str | None = None) -> StudyFigures | None:
    """The figures of ``study`` in the MLflow at ``uri``; None when it has no run there yet.
    ConnectionError (within seconds) when a tracking server does not answer."""
    found = study_run(uri, study, experiment)
    if found is None:
        return None
    client, parent = found
    params = parent.data.params
    figures = StudyFigures(run_id=parent.info.run_id, run_status=parent.info.status, tags=StudyRunTags.from_tags(parent.data.tags),
                           metric=params.get(_METRIC), budget=_int(params.get(_TRIALS)))
    if is_http(uri):
        figures.run_url = f"{uri.rstrip('/')}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
    trials = client.search_runs([parent.info.experiment_id],
                                filter_string=TrialRunTags.children_filter(parent.info.run_id), max_results=5000)
    values: list[float] = []
    for trial in trials:
        outcome = TrialRunTags.from_tags(trial.data.tags).outcome
        if outcome == Outcome.COMPLETE:
            figures.completed += 1
        elif outcome == Outcome.PRUNED:
            figures.pruned += 1
        elif outcome == Outcome.FAIL:
            figures.failed += 1
        elif trial.info.status == "RUNNING":
            figures.running += 1
        if figures.metric is not None and figures.metric in trial.data.metrics:
            values.append(float(trial.data.metrics[figures.metric]))
    if values:
        figures.best = min(values) if params.get(_MODE) == "min" else max(values)
    if parent.info.status == "FINISHED" and params.get(_REGISTERED_MODEL):
        figures.registered_version = registered_for_study(client, params[_REGISTERED_MODEL], study)
    return figures


def _int(text: Any) -> int | None:
    try:
        return int(str(text))
    except (TypeError, ValueError):
        return None


def experiment_url(uri: str, experiment: str | None) -> str | None:
    """The experiment's page in the MLflow UI, where ``uri`` is a tracking server this machine
    reaches and the experiment exists already; None otherwise (never waits for long)."""
    if not experiment or not is_http(uri):
        return None
    try:
        probe(uri)
        # deferred: MLflow takes seconds to import
        from mlflow import MlflowClient

        found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - a link is a convenience: without one, the URI is printed
        return None
    return f"{uri.rstrip('/')}/#/experiments/{found.experiment_id}" if found is not None else None
