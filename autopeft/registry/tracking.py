"""MLflow: one parent run per study, one nested run per trial, written by the driver alone.

Trial workers never open the tracking store: :class:`TrialRecorder` is a Ray Tune callback in
the driver that records each trial from what it reports. SQLite then has a single writer and
the same code works against a remote tracking server.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from autopeft.config import sqlite_file
from autopeft.errors import ConfigError, TrackingError, TrackingUnreachable
from autopeft.registry.reachability import probe
from autopeft.schema import (
    MAX_PARAM,
    RUN_STATUS,
    ExperimentTag,
    Metric,
    Outcome,
    RunKind,
    RunTag,
    StudyRunTags,
    TrialRunTags,
    VersionTags,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from ray.tune.experiment import Trial

# The tag keys, kept importable here for modules that have not moved to autopeft.schema yet.
PARENT_TAG = RunTag.PARENT_RUN
TAG_STUDY = RunTag.STUDY
TAG_KIND = RunTag.KIND
TAG_TRIAL_ID = RunTag.TRIAL_ID
TAG_OUTCOME = RunTag.OUTCOME
TAG_ERROR = RunTag.ERROR
_MAX_PARAM = MAX_PARAM  # MLflow's limit on a param value


def outcome(result: Mapping[str, Any] | None, error: bool) -> str:
    """COMPLETE when the trial reported its final step, PRUNED when it was stopped before,
    FAIL when it raised. The searcher and the recorder both decide by this one rule."""
    if error:
        return Outcome.FAIL
    if result and result.get("final"):
        return Outcome.COMPLETE
    return Outcome.PRUNED


def default_artifact_location(uri: str) -> str | None:
    """For a SQLite store, keep artifacts in ``mlartifacts/`` beside the database file."""
    db = sqlite_file(uri)
    return (db.resolve().parent / "mlartifacts").as_uri() if db is not None else None


def newest_study(uri: str) -> tuple[str, str, str] | None:
    """(study name, experiment id, parent run id) of the study started last in the store, or None."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    runs = client.search_runs(experiments, filter_string=f"tags.`{RunTag.KIND}` = '{RunKind.STUDY}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    run = runs[0]
    return StudyRunTags.from_tags(run.data.tags).study or run.info.run_name, run.info.experiment_id, run.info.run_id


def connect(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """A client and the experiment id (created if new); TrackingError if the store is unreachable."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    started = time.monotonic()
    try:
        probe(uri)  # seconds, where the client would retry an unreachable server for minutes
        found = client.get_experiment_by_name(experiment)
        if found is None:
            experiment_id = client.create_experiment(experiment, artifact_location=default_artifact_location(uri))
        else:
            experiment_id = found.experiment_id
        if found is None or ExperimentTag.KIND not in found.tags:
            # the UI opens a model-development experiment on its training runs
            client.set_experiment_tag(experiment_id, ExperimentTag.KIND, ExperimentTag.MODEL_DEVELOPMENT)
        if found is None or ExperimentTag.NOTE not in found.tags:
            client.set_experiment_tag(experiment_id, ExperimentTag.NOTE, ExperimentTag.DESCRIPTION)
        return client, experiment_id
    except Exception as exc:
        raise TrackingError(
            f"tracking.uri: cannot reach MLflow at {uri!r} after {time.monotonic() - started:.1f}s: "
            f"{' '.join(str(exc).split())[:200]}"
        ) from None


def check_reachable(uri: str, experiment: str | None = None) -> None:
    """Fail within seconds, before any compute, when the tracking store does not answer or
    could not record the study: a SQLite file that cannot be created or written, or is not a
    database; an ``experiment`` that is deleted, or whose artifact folder cannot be written.

    Reads only, so a bad config leaves no trace in the store (and creates no file).
    """
    from mlflow import MlflowClient

    started = time.monotonic()
    db = sqlite_file(uri)
    if db is not None:
        path = db.resolve()
        if not path.parent.is_dir():
            raise TrackingUnreachable(f"tracking.uri: the folder of {uri!r} does not exist")
        problem = write_problem(path)
        if problem:
            raise TrackingUnreachable(f"tracking.uri: cannot write to {str(path)!r} ({uri!r}): {problem}")
        if not _has_mlflow_tables(path, uri):
            return  # created on first use: nothing recorded yet, no experiment to look at
        failure = f"tracking.uri: cannot open the MLflow store {uri!r}"
    else:
        failure = f"tracking.uri: MLflow at {uri!r} does not answer"
    try:
        probe(uri)  # seconds, where the client would retry an unreachable server for minutes
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment) if experiment else None
        if experiment is None:
            client.search_experiments(max_results=1)
    except Exception as exc:
        raise TrackingUnreachable(
            f"{failure} ({time.monotonic() - started:.1f}s): {' '.join(str(exc).split())[:160]}"
        ) from None
    if found is None:
        return
    if found.lifecycle_stage == "deleted":
        # MLflow keeps a deleted experiment's name taken, and refuses new runs in it
        raise ConfigError(
            f"tracking.experiment: the experiment {experiment!r} is deleted in {uri}; restore it with "
            f"'mlflow experiments restore --experiment-id {found.experiment_id}', or choose another name")
    folder = _local_path(found.artifact_location or "")
    problem = write_problem(folder, folder=True) if folder is not None else None
    if problem:
        raise ConfigError(f"tracking.experiment: cannot write the artifacts of {experiment!r} to "
                          f"{str(folder)!r}: {problem}")


def recorded_study(uri: str, experiment: str, registered_model: str, study: str) -> str | None:
    """Where the tracking store already holds a study of this name (its parent run in
    ``experiment``, or a version of ``registered_model`` registered for it), or None.

    A new study of the same name would be confused with it: the report and ``autopeft models``
    find a study's run by its name, and registration takes an existing version of the study for
    its own (a resumed study registers once). Reads only; a store not created yet holds none.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    db = sqlite_file(uri)
    if db is not None and not _has_mlflow_tables(db.resolve(), uri):
        return None
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        found = client.get_experiment_by_name(experiment)
        runs = [] if found is None else client.search_runs(
            [found.experiment_id], filter_string=StudyRunTags.search_filter(study), max_results=1)
    except Exception as exc:
        raise TrackingUnreachable(f"tracking.uri: cannot read the runs of {uri!r}: {' '.join(str(exc).split())[:160]}") from None
    if runs:
        return f"run {runs[0].info.run_id} in experiment {experiment!r}"
    try:
        versions = client.search_model_versions(f"name = '{registered_model}'")
    except MlflowException:  # no such registered model
        return None
    for version in versions:
        if VersionTags.from_tags(version.tags).study == study:
            return f"version {version.version} of {registered_model!r}"
    return None


def write_problem(path: Path, *, folder: bool = False) -> str | None:
    """Why the file (or with ``folder``, the folder) at ``path``, existing or not, could not be
    written, or None.

    Asks the file system rather than ``os.access``, which says yes to root on a read-only mount
    or ``/proc``: an existing file is opened for writing (not changed); otherwise a temporary
    file is made and removed in the nearest folder that exists. Nothing is left behind, and no
    folder is created: folders are made once compute starts.
    """
    path = Path(os.path.abspath(path))
    if path.exists() and path.is_dir() != folder:
        return os.strerror(errno.EISDIR if path.is_dir() else errno.ENOTDIR)
    if path.is_file():
        try:
            with path.open("r+b"):
                return None
        except OSError as exc:
            return exc.strerror or str(exc)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return os.strerror(errno.ENOTDIR)
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".autopeft-write-test-"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _has_mlflow_tables(path: Path, uri: str) -> bool:
    """Whether the SQLite file at ``path`` holds an MLflow store; TrackingUnreachable when it is
    not a database. Read-only: MLflow's client would create its tables in any file it opens."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        try:
            tables = _table_names(f"{path.as_uri()}?mode=ro")
        except sqlite3.Error:
            if not _has_hot_journal(path):
                raise
            # A process that died mid-write (a driver killed on a lost machine) left a hot journal,
            # which SQLite must roll back before anyone reads, and cannot on a read-only connection
            # ("attempt to write a readonly database"). Opened for writing, it rolls the unfinished
            # transaction back, as MLflow's own first open would: nothing committed changes.
            tables = _table_names(path.as_uri())
    except sqlite3.Error as exc:
        raise TrackingUnreachable(f"tracking.uri: {str(path)!r} ({uri!r}) is not an SQLite database: {exc}") from None
    return "experiments" in tables


def _table_names(uri: str) -> set[str]:
    with closing(sqlite3.connect(uri, uri=True)) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _has_hot_journal(path: Path) -> bool:
    """Whether an SQLite file has a rollback journal beside it: what a writer that died
    mid-transaction leaves (SQLite deletes it when a transaction ends)."""
    journal = path.with_name(path.name + "-journal")
    return journal.is_file() and journal.stat().st_size > 0


def _local_path(location: str) -> Path | None:
    """The folder of a local artifact location (``file://`` or a plain path); None for remote ones."""
    if location.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(location).path))
    if location and "://" not in location and ":" not in location.split("/", 1)[0]:
        return Path(location)
    return None


#: What MLflow refuses in a registered model's name, and a quote, which breaks the name filters
#: autopeft's registry commands query with.
_MODEL_NAME_REFUSED = ("/", ":", "'")


def check_registered_model_name(name: str) -> None:
    """A name MLflow would refuse only when registering, after every trial ran: refused here."""
    bad = [c for c in _MODEL_NAME_REFUSED if c in name]
    if bad:
        raise ConfigError(f"tracking.registered_model: {name!r} cannot name a registered model (it holds "
                          f"{' and '.join(repr(c) for c in bad)}); use letters, digits, '.', '_', '-' or spaces")
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(".."):
        # MLflow treats a model name as a path in places: it must not resolve to another name
        raise ConfigError(f"tracking.registered_model: {name!r} cannot name a registered model (as a path it "
                          f"is {norm!r}); use letters, digits, '.', '_', '-' or spaces")


#: A key names a secret when one of its words (split at ``_``, ``-`` and ``.``) is one of these:
#: ``hf_token`` and ``aws_secret_access_key`` do, ``max_new_tokens`` and ``tokens_column`` do not.
_SECRET_KEY = re.compile(r"(?:^|[_.-])(password|passwd|secret|credentials?|token|api[_-]?key|access[_-]?key|"
                         r"private[_-]?key|authorization)(?:$|[_.-])", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/@:\s]*)(:[^/@\s]*)?@", re.IGNORECASE)
REDACTED = "***"


def redact(value: Any, key: str = "") -> Any:
    """``value`` with credentials removed: URL user-info (``scheme://user:pw@host``) and the
    values of keys that name a secret. Everything autopeft logs to MLflow goes through here."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", value)
    return value


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → MLflow params ``a.b.c`` (credentials redacted, values cut to MLflow's limit)."""
    out: dict[str, str] = {}
    for key, value in redact(data).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:_MAX_PARAM]
    return out


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str] | StudyRunTags | TrialRunTags) -> None:
    """Write ``tags`` (a mapping, or a schema record's set fields) on a run, in one batch call."""
    from mlflow.entities import RunTag as MlflowRunTag

    items = tags.to_tags() if isinstance(tags, (StudyRunTags, TrialRunTags)) else dict(tags)
    if items:
        client.log_batch(run_id, tags=[MlflowRunTag(k, str(v)) for k, v in items.items()])


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:_MAX_PARAM]) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow caps params per batch at 100
        client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log ``metrics`` in one batch call (one request to a remote server, not one per metric)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    _log_batched(client, run_id, [Metric(k, float(v), now, step) for k, v in metrics.items()])


def log_history(client: MlflowClient, run_id: str, history: Sequence[Mapping[str, float]], *, prefix: str = "") -> None:
    """Log a curve, rows of metrics each with its ``step``, as ``<prefix><metric>`` in batch calls."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    _log_batched(client, run_id, [Metric(f"{prefix}{k}", float(v), now, int(row["step"]))
                                  for row in history for k, v in row.items() if k != "step"])


def _log_batched(client: MlflowClient, run_id: str, items: list[Any]) -> None:
    for start in range(0, len(items), 1000):  # MLflow caps metrics per batch at 1000
        client.log_batch(run_id, metrics=items[start : start + 1000])


#: The attribute on Tune's trial object where the scheduler leaves why it stopped the trial.
RUNG_STOP_ATTR = "autopeft_rung_stop"


@dataclass(frozen=True)
class RungStop:
    """Why ASHA stopped a trial: at which rung, with what value, against what cutoff."""

    rung: int
    report: int
    step: int
    metric: str
    mode: str
    value: float
    cutoff: float
    #: Trials recorded at the rung when the cutoff was computed.
    compared: int
    #: Whether the trial was still at the trivial predictor's level (``tasks.trivial``).
    at_trivial: bool = False
    #: Set when the rung stopped the trial for being at the trivial level while this many of the
    #: trials that reached the rung had left it (not for a quantile cutoff).
    left_trivial: int | None = None

    def describe(self) -> str:
        where = f"at rung {self.rung} (evaluation {self.report}, step {self.step})"
        over = f"computed over the {self.compared} trials that had reached it"
        if self.left_trivial:
            return (f"stopped by ASHA {where} still at the trivial predictor's level, while {self.left_trivial} of the "
                    f"{self.compared} other trials that had reached the rung had left it")
        if self.metric == Metric.RUNG_SCORE:
            if self.at_trivial:
                return (f"stopped by ASHA {where} still at the trivial predictor's level: its rung score "
                        f"{self.value:.4f} (minus its validation loss over the trivial predictor's) was below the "
                        f"rung's cutoff {self.cutoff:.4f}, {over}")
            return (f"stopped by ASHA {where}: its gain over the trivial predictor, {self.value:.4f}, was below the "
                    f"rung's cutoff {self.cutoff:.4f}, {over}")
        side = "above" if self.mode == "min" else "below"
        return (f"stopped by ASHA {where}: {self.metric} {self.value:.4f} was {side} the rung's cutoff "
                f"{self.cutoff:.4f}, {over}")


def config_summary(config: Mapping[str, Any]) -> str:
    """A trial's sampled config in one line, as the model version's tags say it: the family and
    its parameters, the placement, the learning rate."""
    lineage = VersionTags(params=dict(config), family=str(config.get("adapter", "?")))
    parts = [lineage.adapter_summary or str(config.get("adapter", "?"))]
    if lineage.placement_summary:
        parts.append(lineage.placement_summary)
    if lineage.learning_rate is not None:
        parts.append(f"learning rate {lineage.learning_rate:.2e}")
    return "; ".join(parts)


def describe_trial(config: Mapping[str, Any], state: str, last: Mapping[str, Any] | None, metric: str | None,
                   stop: RungStop | None = None, error: str | None = None) -> str:
    """A trial run's description: its config, how it ended and, if stopped early, why."""
    last = last or {}
    step = last.get("step")
    value = last.get(metric) if metric else None
    reached = f" after {int(step)} steps" if isinstance(step, (int, float)) else ""
    figure = f": {metric} {float(value):.4f}" if isinstance(value, (int, float)) else ""
    if state == Outcome.COMPLETE and last.get(Metric.AT_TRIVIAL):
        ending = (f"Completed{reached}{figure}, still at the trivial predictor's level (it learnt nothing the "
                  f"majority class or mean would not give): told to the sampler as pruned.")
    elif state == Outcome.COMPLETE:
        ending = f"Completed{reached}{figure}."
    elif state == Outcome.FAIL:
        ending = f"Failed{reached}: {error or 'no error recorded'}."
    elif stop is not None:
        ending = f"Pruned: {stop.describe()}."
    elif last.get("infeasible"):
        ending = f"Pruned{reached}: over a cost limit (constraints){figure}."
    else:
        ending = f"Stopped{reached} before its last step{figure}."
    return f"Trial config: {config_summary(config)}.\n\n{ending}"


class TrialRecorder(Callback):
    """Records every trial as a nested MLflow run under the study's parent run."""

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str, study: str,
                 metric: str | None = None) -> None:
        self._client = client
        self._experiment_id = experiment_id
        self._parent = parent_run_id
        self._study = study
        self._metric = metric  # the objective, named in each trial's description
        self.runs: dict[str, str] = {}  # Ray trial id → MLflow run id
        self.outcomes: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the experiment state; keep the store's URI, not the client.
        state = dict(self.__dict__)
        state["_client"] = self._client.tracking_uri
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from mlflow import MlflowClient

        uri = state["_client"]
        self.__dict__.update(state)
        self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def _run_for(self, trial: Trial) -> str:
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:  # a trial restored after a driver crash keeps the run it had
            existing = _find_trial_run(self._client, self._experiment_id, self._parent, trial.trial_id)
            if existing is not None:
                self.runs[trial.trial_id] = run_id = existing
                self._client.update_run(run_id, status="RUNNING")
        if run_id is None:
            run = self._client.create_run(
                self._experiment_id,
                run_name=f"{self._study}-{trial.trial_id}",
                tags=TrialRunTags.created(parent_run_id=self._parent, study=self._study,
                                          trial_id=trial.trial_id).to_tags(),
            )
            run_id = run.info.run_id
            self.runs[trial.trial_id] = run_id
            log_params(self._client, run_id, trial.config)
        return run_id

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._run_for(trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any],
                        **info: Any) -> None:
        step = int(result.get("step", result.get("training_iteration", 0)))
        run_id = self._run_for(trial)
        metrics = {
            key: value
            for key, value in result.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != Metric.WORKER_PID
            and not key.startswith(("time_", "timestamp", "pid", "training_iteration", "iterations_since"))
        }
        logged = self.__dict__.setdefault("_constants_logged", set())
        if trial.trial_id in logged:  # constants once per trial: the charts show what moves
            metrics = {k: v for k, v in metrics.items() if k not in Metric.TRIAL_CONSTANTS}
        logged.add(trial.trial_id)
        log_metrics(self._client, run_id, metrics, step)
        self._note_worker(trial.trial_id, run_id, result.get(Metric.WORKER_PID))

    def _note_worker(self, trial_id: str, run_id: str, pid: Any) -> None:
        """The worker processes a trial ran in, as a tag: one more when Ray moved the trial."""
        if pid is None:
            return
        workers = self.__dict__.setdefault("_workers", {}).setdefault(trial_id, [])
        if not workers or workers[-1] != str(pid):
            workers.append(str(pid))
            set_tags(self._client, run_id, TrialRunTags(workers=",".join(workers)))

    def _finish(self, trial: Trial, error: bool) -> None:
        run_id = self._run_for(trial)
        state = outcome(trial.last_result, error)
        self.outcomes[trial.trial_id] = state
        summary = error_summary(trial) if error else None
        note = describe_trial(trial.config, state, trial.last_result, getattr(self, "_metric", None),
                              getattr(trial, RUNG_STOP_ATTR, None), summary)
        last = trial.last_result or {}
        trivial = bool(last[Metric.AT_TRIVIAL]) if Metric.AT_TRIVIAL in last and state != Outcome.FAIL else None
        set_tags(self._client, run_id, TrialRunTags(outcome=state, error=summary, note=note, trivial=trivial))
        self._client.set_terminated(run_id, status=RUN_STATUS[state])

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, error=True)

    def close_open_runs(self, status: str = RUN_STATUS[Outcome.INTERRUPTED]) -> None:
        """Terminate runs of trials that never finished (e.g. the search was interrupted)."""
        for trial_id, run_id in self.runs.items():
            if trial_id not in self.outcomes:
                set_tags(self._client, run_id, TrialRunTags(outcome=Outcome.INTERRUPTED))
                self._client.set_terminated(run_id, status=status)


def error_summary(trial: Trial) -> str:
    """The last line of the trial's traceback (the exception and its message): the trial run's
    error tag, and the plain progress log's line for a failed trial."""
    path = trial.error_file
    if path and Path(path).is_file():
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1]  # cut to MLflow's limit by TrialRunTags
    return "trial failed (no error file)"


def _children(client: MlflowClient, experiment_id: str, parent_run_id: str, extra: str = "") -> list[Any]:
    query = TrialRunTags.children_filter(parent_run_id) + (f" and {extra}" if extra else "")
    return list(client.search_runs([experiment_id], filter_string=query, max_results=10000))


def _find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> str | None:
    runs = _children(client, experiment_id, parent_run_id, TrialRunTags.trial_filter(trial_id))
    return runs[0].info.run_id if runs else None


def trial_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> dict[str, str]:
    """Ray trial id → MLflow run id for every trial run of a study."""
    found = {}
    for run in _children(client, experiment_id, parent_run_id):
        trial_id = TrialRunTags.from_tags(run.data.tags).trial_id
        if trial_id is not None:
            found[trial_id] = run.info.run_id
    return found


def close_orphan_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> int:
    """Mark trial runs still RUNNING under a parent (left by a dead driver) as KILLED."""
    orphans = _children(client, experiment_id, parent_run_id, "attributes.status = 'RUNNING'")
    for run in orphans:
        set_tags(client, run.info.run_id, TrialRunTags(outcome=Outcome.INTERRUPTED))
        client.set_terminated(run.info.run_id, status=RUN_STATUS[Outcome.INTERRUPTED])
    return len(orphans)
