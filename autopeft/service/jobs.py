"""Studies as Ray jobs: submit one, list them, follow one's log, cancel it, resume it.

A submitted study is ``autopeft search`` run by Ray's job service on the cluster, in a working
directory that carries its config and local files (:mod:`autopeft.service.staging`). Its
inputs are copied beside its outputs there (``<output_dir>/inputs/<study>``) before it starts,
so that a resume, as a later job, reads the same files. The job's metadata
(:class:`~autopeft.schema.JobMetadata`) names the study, who submitted it and its MLflow; the
driver learns who submitted it and its job id from the environment
(:class:`~autopeft.schema.JobEnv`) and tags the study run with both.

A cancel is Ray's job stop: the driver gets SIGTERM, ends the study as Ctrl-C would (every run
it opened closed, KILLED; finished trials kept) within ``STOP_WAIT_S``, and Ray then kills
what is left.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from autopeft.errors import ClusterError, JobError
from autopeft.registry.tracking import redact, set_tags
from autopeft.schema import STUDY_RESOURCE, JobEnv, JobMetadata, StudyRunTags, current_user
from autopeft.service.connection import Cluster, call
from autopeft.service.figures import StudyFigures, study_figures, study_run
from autopeft.service.staging import Staged, stage_config, stage_request

if TYPE_CHECKING:
    from ray.job_submission import JobDetails

#: Ray's job states as ``jobs`` shows them.
STATES = {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed",
          "STOPPED": "cancelled"}
FINISHED_STATES = ("succeeded", "failed", "cancelled")
#: Seconds Ray waits after the SIGTERM of a stop before it kills the driver
#: (``RAY_JOB_STOP_WAIT_TIME_S``, default 3): the time the driver has to close every run.
STOP_WAIT_S = 60
#: Where the outputs go on the cluster when the config does not say (the driver's home).
DEFAULT_OUTPUT_DIR = "~/autopeft-runs"


def shell_path(path: str) -> str:
    """``path`` for the entrypoint's shell: quoted, with a leading ``~`` left to the shell."""
    if path == "~" or path.startswith("~/"):
        rest = path[1:]
        return '"$HOME"' + (shlex.quote(rest) if rest else "")
    return shlex.quote(path)


def inputs_dir(output_dir: str, study: str) -> str:
    return f"{output_dir.rstrip('/')}/inputs/{study}"


@dataclass
class StudyJob:
    """A study submitted as a Ray job: ``status()``, ``logs()``, ``follow()``, ``cancel()``,
    ``wait()``, and its ``figures()`` from MLflow."""

    cluster: Cluster
    job_id: str
    metadata: JobMetadata
    #: The job's state when it was listed (``study_jobs``): a table of many jobs reads it rather
    #: than asking the job service once more per row; ``status()`` always asks.
    listed_state: str | None = None

    @property
    def study(self) -> str:
        return str(self.metadata.study)

    def info(self) -> JobDetails:
        return call(self.cluster, f"read job {self.job_id}", self.cluster.client.get_job_info, self.job_id)

    def status(self) -> str:
        """pending, running, succeeded, failed or cancelled."""
        return state_of(self.info())

    def logs(self) -> str:
        """The job's log so far (the driver's stdout and stderr)."""
        return str(call(self.cluster, f"read the log of job {self.job_id}", self.cluster.client.get_job_logs,
                        self.job_id))

    def follow(self, write: Callable[[str], None]) -> None:
        """Hand each new piece of the log to ``write`` until the job ends."""
        async def tail() -> None:
            async for chunk in self.cluster.client.tail_job_logs(self.job_id):
                write(chunk)

        call(self.cluster, f"follow the log of job {self.job_id}", asyncio.run, tail())

    def wait(self, timeout_s: float | None = None, poll_s: float = 2.0) -> str:
        """Wait until the job ends; its final state. TimeoutError after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            state = self.status()
            if state in FINISHED_STATES:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.job_id} is still {state} after {timeout_s:.0f}s")
            time.sleep(poll_s)

    def figures(self, tracking_uri: str | None = None) -> StudyFigures | None:
        """The study's figures in MLflow (``tracking_uri``: where this machine reaches it, when
        the cluster's address for it differs); None when it has no run yet."""
        uri = tracking_uri or self.metadata.tracking_uri
        return study_figures(uri, self.study, self.metadata.experiment) if uri else None

    def cancel(self, *, by: str | None = None, tracking_uri: str | None = None, wait_s: float = STOP_WAIT_S + 30,
               on_note: Callable[[str], None] = lambda _line: None) -> str:
        """Stop the job; the study run is tagged with who cancelled and when. Returns the job's
        final state (``cancelled``, or how it ended when it ended first)."""
        state = self.status()
        if state in FINISHED_STATES:
            return state
        by = by or current_user()
        try:  # who asked, on the study run, before the driver is told (it records when it was told)
            _tag_cancelled(tracking_uri or self.metadata.tracking_uri, self.study, self.metadata.experiment, by)
        except Exception as exc:  # noqa: BLE001 - MLflow unreachable from here: the cancel still goes on
            on_note(f"could not record who cancelled in MLflow ({' '.join(str(exc).split())[:120]}); "
                    "the driver still records when")
        call(self.cluster, f"stop job {self.job_id}", self.cluster.client.stop_job, self.job_id)
        return self.wait(timeout_s=wait_s)


def _tag_cancelled(uri: str | None, study: str, experiment: str | None, by: str) -> None:
    if not uri:
        return
    found = study_run(uri, study, experiment)
    if found is None or found[1].info.status != "RUNNING":
        return  # not started yet (no run), or ended: nothing to tag
    client, run = found
    set_tags(client, run.info.run_id, StudyRunTags(cancelled_by=by))


def state_of(info: Any) -> str:
    status = getattr(info.status, "value", str(info.status))
    return STATES.get(str(status), str(status).lower())


def submit(cluster: Cluster, staged: Staged, *, output_dir: str, submitter: str | None = None,
           on_note: Callable[[str], None] = lambda _line: None) -> StudyJob:
    """Submit ``staged`` as a job that runs ``autopeft search`` on the cluster; returns at once."""
    metadata = JobMetadata(study=staged.study_name, action="search", submitter=submitter or current_user(),
                           tracking_uri=str(redact(staged.tracking_uri)), experiment=staged.experiment,
                           output_dir=output_dir, trials=staged.trials)
    keep = inputs_dir(output_dir, staged.study_name)
    # the inputs are kept beside the outputs: a resume (a later job, without this upload) reads them
    entrypoint = (f"mkdir -p {shell_path(keep)} && cp -R . {shell_path(keep)} && cd {shell_path(keep)} && "
                  f"autopeft {shlex.join(staged.args)}")
    return _submit(cluster, metadata, entrypoint, working_dir=str(staged.directory), on_note=on_note)


def submit_resume(cluster: Cluster, study: str, *, output_dir: str | None = None, submitter: str | None = None,
                  on_note: Callable[[str], None] = lambda _line: None) -> StudyJob:
    """Continue ``study`` (cancelled, or its driver died) as a new job: ``autopeft resume`` on
    the cluster, with the outputs its last job wrote."""
    earlier = latest_job(cluster, study)
    if earlier is None and output_dir is None:
        raise ClusterError(f"--resume: no job of study {study!r} on the cluster at {cluster.address}; give the "
                           "study's --output-dir on the cluster to resume one started another way")
    source = earlier.metadata if earlier is not None else JobMetadata(study=study)
    state = earlier.listed_state if earlier is not None else None  # listed a moment ago by latest_job
    if earlier is not None and state in ("pending", "running"):
        raise ClusterError(f"--resume: study {study!r} is still {state} as job {earlier.job_id}")
    out = output_dir or source.output_dir or DEFAULT_OUTPUT_DIR
    metadata = JobMetadata(study=study, action="resume", submitter=submitter or current_user(),
                           tracking_uri=source.tracking_uri, experiment=source.experiment, output_dir=out,
                           trials=source.trials)
    entrypoint = f"autopeft resume {shlex.quote(study)} --output-dir {shell_path(out)}"
    return _submit(cluster, metadata, entrypoint, working_dir=None, on_note=on_note)


def _submit(cluster: Cluster, metadata: JobMetadata, entrypoint: str, *, working_dir: str | None,
            on_note: Callable[[str], None]) -> StudyJob:
    slots = _study_slots(cluster, on_note)
    metadata.study_slot = slots is not None
    job_id = f"autopeft-{metadata.study}-{secrets.token_hex(3)}"
    env = {JobEnv.SUBMITTER: str(metadata.submitter), JobEnv.JOB_ID: job_id,
           # the job service reads this from the job's environment: time to close every run
           "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S),
           # a job log is read while the study runs
           "PYTHONUNBUFFERED": "1"}
    runtime_env: dict[str, Any] = {"env_vars": env}
    if working_dir is not None:
        runtime_env["working_dir"] = working_dir
    try:
        call(cluster, "submit the study", cluster.client.submit_job, entrypoint=entrypoint, submission_id=job_id,
             runtime_env=runtime_env, metadata=metadata.to_metadata(), entrypoint_num_cpus=0,
             entrypoint_resources={STUDY_RESOURCE: 1} if slots is not None else None)
    except RuntimeError as exc:  # the job service answered with an error
        raise JobError(f"submit: the Ray job service at {cluster.address} refused the job: "
                       f"{' '.join(str(exc).split())[:300]}") from None
    return StudyJob(cluster=cluster, job_id=job_id, metadata=metadata)


def _study_slots(cluster: Cluster, on_note: Callable[[str], None]) -> float | None:
    """The cluster's study limit (its ``autopeft_study`` resource), or None: no limit."""
    try:
        slots = cluster.resource_total(STUDY_RESOURCE)
    except ClusterError as exc:
        on_note(f"could not read the cluster's study limit ({exc}); submitting without one")
        return None
    if slots is None:
        on_note(f"the cluster has no '{STUDY_RESOURCE}' resource: no limit on the studies that run at once")
    return slots


def study_jobs(cluster: Cluster) -> list[StudyJob]:
    """Every job autopeft submitted to the cluster, newest first."""
    jobs = call(cluster, "list jobs", cluster.client.list_jobs)
    found: list[tuple[float, StudyJob]] = []
    for info in jobs:
        metadata = JobMetadata.from_metadata(info.metadata)
        if metadata is None or not info.submission_id:
            continue
        found.append((float(info.start_time or 0),
                      StudyJob(cluster=cluster, job_id=str(info.submission_id), metadata=metadata,
                               listed_state=state_of(info))))
    return [job for _, job in sorted(found, key=lambda pair: pair[0], reverse=True)]


def latest_job(cluster: Cluster, study: str) -> StudyJob | None:
    return next((job for job in study_jobs(cluster) if job.study == study), None)


def find_job(cluster: Cluster, ref: str) -> StudyJob:
    """A job by its id, or the latest job of a study by the study's name."""
    jobs = study_jobs(cluster)
    for job in jobs:
        if job.job_id == ref:
            return job
    for job in jobs:
        if job.study == ref:
            return job
    known = ", ".join(job.job_id for job in jobs[:5]) or "none"
    raise ClusterError(f"JOB: no autopeft job or study {ref!r} on the cluster at {cluster.address} "
                       f"(latest jobs: {known})")




def submit_study(cluster: Cluster | Callable[[], Cluster], *, config: Path | None = None, request: Any = None,
                 overrides: list[tuple[list[str], Any]] | None = None, output_dir: str | None = None,
                 study_name: str | None = None, submitter: str | None = None,
                 on_note: Callable[[str], None] = lambda _line: None) -> tuple[StudyJob, Staged]:
    """Stage a config file or a zero-config request, submit it, and remove the staged copy
    (Ray has uploaded it by then). Bad input fails here, before anything reaches the cluster:
    ``cluster`` may be a function that connects, called once the inputs are staged."""
    overrides = list(overrides or [])
    if study_name:
        overrides.append((["study_name"], study_name))
    directory = Path(tempfile.mkdtemp(prefix="autopeft-submit-"))
    try:
        if config is not None:
            out = output_dir or _config_output_dir(config, overrides)
            staged = stage_config(config, overrides, directory / "job", output_dir=out)
        else:
            out = output_dir or DEFAULT_OUTPUT_DIR
            staged = stage_request(request, overrides, directory / "job", output_dir=out, study_name=study_name)
        connected = cluster if isinstance(cluster, Cluster) else cluster()
        job = submit(connected, staged, output_dir=out, submitter=submitter, on_note=on_note)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return job, staged


def _config_output_dir(config: Path, overrides: list[tuple[list[str], Any]]) -> str:
    """The config's output_dir where it is absolute (or ~/...): a folder on the cluster; a
    relative one would land in the job's temporary working directory, so the default instead."""
    given = next((value for path, value in reversed(overrides) if path == ["output_dir"]), None)
    if given is None:
        raw = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else None
        given = raw.get("output_dir") if isinstance(raw, dict) else None
    if isinstance(given, str) and (given.startswith(("/", "~")) or "://" in given):
        return given
    return DEFAULT_OUTPUT_DIR
