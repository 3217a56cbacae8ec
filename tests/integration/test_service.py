"""Studies as Ray jobs, through the real stack: a Ray head the test starts (``ray start --head``
on 127.0.0.1, token authentication on, a study limit of 1), a real ``mlflow server``, and the
``autopeft`` CLI as a user runs it from working folders whose data files exist only there.

One scenario runs once for the module (it is minutes of compute on 2 cores) and records what a
user sees at each point; each test asserts one capability on that record:

1. study A is submitted, then study B: with the limit at 1, B waits as pending while A runs;
2. ``logs A --follow`` shows progress lines while A still runs; ``jobs`` shows A running, then
   succeeded with its registered version;
3. B starts when A ends and is cancelled mid-trial: its study run ends KILLED with who cancelled
   and when, no run is left RUNNING, Optuna's running trial is closed;
4. ``submit --resume B`` continues B as a new job to exactly its planned trials, with one MLflow
   run per trial;
5. a wrong or missing token is refused in one line, exit 2.
6. ``jobs --watch`` off a terminal prints the table again every interval until Ctrl-C (exit 0).
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient

import autopeft
from autopeft.cli.jobs import COLUMNS
from autopeft.schema import CalibrationRun, JobMetadata, RunKind, RunTag, StudyRunTags, TrialAttr, current_user
from autopeft.service.connection import TOKEN_ENV, connect
from tests.conftest import write_sst2_slice, write_yaml
from tests.integration.conftest import _stop_ray
from tests.integration.mlflow_server import tracking_server
from tests.integration.ray_head import RayHead, ray_head

pytestmark = pytest.mark.integration

AUTOPEFT = str(Path(sys.executable).parent / "autopeft")
A, B = "svc-a", "svc-b"
B_TRIALS = 2


@dataclass
class Record:
    """What the scenario saw, for the tests to assert on."""

    uri: str
    head: RayHead
    output_dir: Path
    laptop: Path
    submit_a: subprocess.CompletedProcess
    job_b: Any = None  # autopeft.service.StudyJob
    jobs_while_a_runs: str = ""
    b_status_while_a_runs: str = ""
    b_state_after_cancel: str = ""
    b_log_after_cancel: str = ""
    state_at_first_progress_line: str = ""
    follow_a: str = ""
    follow_a_code: int | None = None
    jobs_after_a: str = ""
    cancel_b: subprocess.CompletedProcess | None = None
    b_runs_after_cancel: list[Any] = field(default_factory=list)
    b_optuna_after_cancel: list[Any] = field(default_factory=list)
    b_optuna_after_resume: list[Any] = field(default_factory=list)
    resume_b: subprocess.CompletedProcess | None = None
    resume_state: str = ""
    wrong_token: subprocess.CompletedProcess | None = None
    no_token: subprocess.CompletedProcess | None = None
    watch: str = ""
    watch_code: int | None = None
    token: str = ""
    failures: list[str] = field(default_factory=list)
    #: seconds from the start of the scenario at each step (printed with -s: where its minutes go)
    marks: dict[str, float] = field(default_factory=dict)


def cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([AUTOPEFT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def study_config(folder: Path, data: dict[str, Path], name: str, uri: str, **budget: Any) -> Path:
    """A small study whose data paths are relative to its own folder (they exist only there)."""
    config = {
        "study_name": name,
        "model": {"name_or_path": "minilm", "max_length": 32},
        "data": {"train": data["train"].name, "test": data["test"].name, "text_columns": ["sentence"],
                 "label_column": "label", "validation_fraction": 0.2},
        "space": {"adapters": {"lora": {"r": {"choices": [4]}}}, "batch_size": 8},
        "warm_start": {"prior": False},
        "budget": {"cpus_per_trial": 1, **budget},
        "tracking": {"uri": uri, "experiment": "service", "registered_model": f"{name}-model"},
    }
    return write_yaml(folder / "search.yaml", config)


#: One job client per head's dashboard: the scenario polls job states every second.
_JOB_CLIENTS: dict[str, Any] = {}


def job_state(head: RayHead, study: str, action: str = "search") -> str:
    client = _JOB_CLIENTS.get(head.dashboard)
    if client is None:
        with pytest.MonkeyPatch.context() as env:  # the head's token, as a user's shell would hold it
            env.setenv(TOKEN_ENV, head.env[TOKEN_ENV])
            client = _JOB_CLIENTS[head.dashboard] = connect(head.dashboard).client
    records = [(j, JobMetadata.from_metadata(j.metadata)) for j in client.list_jobs()]
    states = [str(getattr(j.status, "value", j.status)) for j, meta in records
              if meta is not None and meta.study == study and meta.action == action]
    return states[0] if states else "MISSING"


def wait_for(what: str, check, timeout_s: float, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f}s")


def runs_of(uri: str, study: str) -> list[Any]:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("service")
    if experiment is None:
        return []
    return [r for r in client.search_runs([experiment.experiment_id], max_results=1000)
            if r.data.tags.get(RunTag.STUDY) == study]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, glue_dir, minilm_path, mlflow_db_template) -> Record:
    _stop_ray()  # the shared local Ray of other tests: the cluster here is the test's own
    started = time.monotonic()
    root = tmp_path_factory.mktemp("service")
    laptop = root / "laptop"
    folders = {A: laptop / "a", B: laptop / "b"}
    token = secrets.token_hex(16)
    with tracking_server(root / "mlflow", template=mlflow_db_template) as uri, \
            ray_head(root / "head.log", resources={"autopeft_study": 1}, token=token) as head:
        env = {**head.env, "RAY_API_SERVER_ADDRESS": head.dashboard}
        out = root / "cluster-outputs"
        configs = {}
        for name, folder in folders.items():
            folder.mkdir(parents=True)
            data = write_sst2_slice(glue_dir, folder, train_rows=200, test_rows=60)
            budget = ({"trials": 2, "max_steps": 8, "eval_interval": 4} if name == A else
                      {"trials": B_TRIALS, "max_steps": 40, "eval_interval": 20})
            configs[name] = study_config(folder, data, name, uri, **budget)
        record_start = time.monotonic() - started
        record = Record(uri=uri, head=head, output_dir=out, laptop=laptop, token=token,
                        submit_a=cli(["submit", "--config", "search.yaml", "--output-dir", str(out)], folders[A], env))
        record.marks["head and MLflow up"] = record_start
        assert record.submit_a.returncode == 0, record.submit_a.stderr[-2000:]
        # the head's study limit was read (else A and B would run at once, and the waits below time out)
        assert not re.search(r"study limit \(|no limit on the studies", record.submit_a.stdout + record.submit_a.stderr), \
            record.submit_a.stdout + record.submit_a.stderr
        # B from Python, the token from a file
        token_file = root / "ray-token"
        token_file.write_text(token)
        record.job_b = autopeft.submit(config=configs[B], address=head.dashboard, token_file=token_file,
                                       output_dir=str(out), settings={"pruning.enabled": False})
        for folder in folders.values():  # what the jobs read has travelled: the laptop's copies go
            for csv in folder.glob("*.csv"):
                csv.unlink()

        record.marks["submitted"] = time.monotonic() - started
        # 1-2: A runs, B waits; A's log shows progress while A runs
        wait_for("job A running", lambda: job_state(head, A) == "RUNNING", 120)
        record.jobs_while_a_runs = cli(["jobs"], laptop, env).stdout
        record.b_status_while_a_runs = record.job_b.status()
        follow = subprocess.Popen([AUTOPEFT, "logs", A, "--follow"], cwd=laptop, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        lines = []
        assert follow.stdout is not None
        for line in follow.stdout:
            lines.append(line)
            if not record.state_at_first_progress_line and re.match(r"trial \w+ started: ", line):
                record.state_at_first_progress_line = job_state(head, A)
        record.follow_a_code = follow.wait(timeout=60)
        record.follow_a = "".join(lines)
        wait_for("job A ended", lambda: job_state(head, A) in ("SUCCEEDED", "FAILED"), 120)
        record.jobs_after_a = cli(["jobs"], laptop, env).stdout

        record.marks["A ended"] = time.monotonic() - started
        # 3: B runs when A ends; cancelled mid-trial
        wait_for("a trial of B running", lambda: any(
            r.info.status == "RUNNING" and r.data.tags.get(RunTag.KIND) == RunKind.TRIAL for r in runs_of(uri, B)),
            240, poll_s=0.5)
        record.cancel_b = cli(["cancel", B], laptop, env, timeout=180)
        record.b_runs_after_cancel = runs_of(uri, B)
        record.b_state_after_cancel, record.b_log_after_cancel = record.job_b.wait(timeout_s=30), record.job_b.logs()
        storage = f"sqlite:///{out / 'optuna.db'}"
        record.b_optuna_after_cancel = optuna.load_study(study_name=B, storage=storage).trials

        record.marks["B cancelled"] = time.monotonic() - started
        # 4: resumed as a new job, to the end
        record.resume_b = cli(["submit", "--resume", B], laptop, env)
        record.resume_state = wait_for("the resume of B ended", lambda: (
            state if (state := job_state(head, B, "resume")) in ("SUCCEEDED", "FAILED", "STOPPED") else ""), 420)
        if record.resume_state != "SUCCEEDED":
            record.failures.append(cli(["logs", B], laptop, env).stdout[-4000:])
        record.b_optuna_after_resume = optuna.load_study(study_name=B, storage=storage).trials

        record.marks["B resumed and ended"] = time.monotonic() - started
        # 5: tokens
        record.wrong_token = cli(["jobs"], laptop, {**env, "RAY_AUTH_TOKEN": "not-the-token"})
        no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
        record.no_token = cli(["jobs"], laptop, {**no_token, "RAY_AUTH_MODE": "disabled"})
        record.marks["tokens checked"] = time.monotonic() - started
        # 6: `jobs --watch` off a terminal (a pod's log): the table again every interval until Ctrl-C
        printed = root / "watch.txt"
        with printed.open("w") as sink:
            watch = subprocess.Popen([AUTOPEFT, "jobs", "--watch", "--interval", "1"], cwd=laptop, env=env,
                                     stdout=sink, stderr=subprocess.STDOUT, text=True)
            try:
                wait_for("two tables from jobs --watch", lambda: printed.read_text().count("\t".join(COLUMNS)) >= 2, 90)
            except TimeoutError:
                pass  # the test says what it printed
            watch.send_signal(signal.SIGINT)
            try:
                record.watch_code = watch.wait(timeout=60)
            except subprocess.TimeoutExpired:
                # a watch that ignores Ctrl-C fails its own test (with what it printed), not the
                # scenario's other steps, which are recorded by now
                watch.kill()
                watch.wait(timeout=30)
                record.watch_code = None
        record.watch = printed.read_text()
        record.marks["jobs --watch"] = time.monotonic() - started
        print(f"service scenario: {record.marks}")
        yield record


def row(jobs_output: str, study: str) -> dict[str, str]:
    """The row of ``study`` in ``autopeft jobs`` off a terminal (tab-separated, a header line)."""
    header, *rows = [line.split("\t") for line in jobs_output.strip().splitlines()]
    found = [dict(zip(header, r, strict=True)) for r in rows if len(r) == len(header) and r[1] == study]
    assert found, f"no row for {study} in:\n{jobs_output}"
    return found[0]


def test_submit_prints_the_job_and_returns_at_once(scenario: Record, no_shared_ray):
    out = scenario.submit_a.stdout
    assert re.search(rf"submitted: study {A} as job autopeft-{A}-\w+", out), out
    assert "data.train train.csv" in out and "data.test test.csv" in out
    assert scenario.uri in out and "autopeft logs" in out


def test_the_study_limit_keeps_the_second_study_pending_while_the_first_runs(scenario: Record, no_shared_ray):
    assert row(scenario.jobs_while_a_runs, A)["state"] == "running"
    assert row(scenario.jobs_while_a_runs, B)["state"] == "pending (waiting for a study slot)"
    assert row(scenario.jobs_while_a_runs, A)["submitter"] == current_user()
    assert scenario.b_status_while_a_runs == "pending"  # the Python handle says the same


def test_the_python_handle_follows_the_job_it_submitted(scenario: Record, no_shared_ray):
    job = scenario.job_b
    assert job.study == B and job.job_id.startswith(f"autopeft-{B}-") and job.metadata.study_slot
    assert scenario.b_state_after_cancel == "cancelled"
    assert "cancelled (SIGTERM at " in scenario.b_log_after_cancel
    assert f"continue it with 'autopeft resume {B}" in scenario.b_log_after_cancel


def test_logs_follow_shows_progress_while_the_study_runs(scenario: Record, no_shared_ray):
    assert scenario.state_at_first_progress_line == "RUNNING"
    assert scenario.follow_a_code == 0
    log = scenario.follow_a
    assert re.search(r"trial \w+ step 4: accuracy \d\.\d{4}", log), log[-3000:]
    assert re.search(r"trial \w+ completed: accuracy", log) and "progress: trials 2/2" in log
    assert f"registered: models:/{A}-model/1" in log


def test_jobs_shows_the_finished_study_with_its_registered_version(scenario: Record, no_shared_ray):
    finished = row(scenario.jobs_after_a, A)
    assert finished["state"] == "succeeded"
    assert finished["trials"].startswith("2/2")
    assert finished["registered"] == "version 1"
    assert finished["best"].startswith("accuracy ")


def test_a_study_too_short_for_the_learning_rate_probes_skips_them_and_says_why(scenario: Record, no_shared_ray):
    # A: 2 trials of 8 steps; one 50-step probe of LoRA would train three times what they do
    runs = runs_of(scenario.uri, A)
    (study,) = [r for r in runs if r.data.tags.get(RunTag.KIND) == RunKind.STUDY]
    skipped = StudyRunTags.from_tags(study.data.tags).calibration_skipped
    assert skipped and skipped.startswith("the probes of lora (50 steps) would take more than 25% of the trials' "
                                          "16 steps"), skipped
    assert not [r for r in runs if r.data.tags.get(RunTag.KIND) == CalibrationRun.KIND]


def test_cancel_stops_the_study_and_closes_every_run(scenario: Record, no_shared_ray):
    assert scenario.cancel_b is not None and scenario.cancel_b.returncode == 0, scenario.cancel_b.stderr[-2000:]
    assert f"cancelled job autopeft-{B}-" in scenario.cancel_b.stdout
    assert f"autopeft submit --resume {B}" in scenario.cancel_b.stdout
    runs = scenario.b_runs_after_cancel
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    (study,) = [r for r in runs if r.data.tags.get(RunTag.KIND) == RunKind.STUDY]
    tags = StudyRunTags.from_tags(study.data.tags)
    assert study.info.status == "KILLED"
    assert tags.cancelled_by == current_user() and tags.cancelled_at
    assert tags.error and tags.error.startswith(f"cancelled by {current_user()} (SIGTERM at ")
    assert tags.submitter == current_user() and tags.job_id and tags.job_id.startswith(f"autopeft-{B}-")
    interrupted = [r for r in runs if r.data.tags.get(RunTag.OUTCOME) == "INTERRUPTED"]
    assert interrupted and all(r.info.status == "KILLED" for r in interrupted)
    states = [t.state for t in scenario.b_optuna_after_cancel]
    assert optuna.trial.TrialState.RUNNING not in states
    assert any("cancelled" in t.user_attrs.get(TrialAttr.ORPHANED, "") for t in scenario.b_optuna_after_cancel)


def test_resume_as_a_job_finishes_the_planned_trials_without_duplicate_runs(scenario: Record, no_shared_ray):
    assert scenario.resume_b is not None and scenario.resume_b.returncode == 0, scenario.resume_b.stderr[-2000:]
    assert scenario.resume_state == "SUCCEEDED", scenario.failures
    runs = runs_of(scenario.uri, B)
    trials = [r for r in runs if r.data.tags.get(RunTag.KIND) == RunKind.TRIAL]
    trial_ids = [r.data.tags[RunTag.TRIAL_ID] for r in trials]
    assert len(trial_ids) == B_TRIALS and len(set(trial_ids)) == B_TRIALS
    assert all(r.data.tags.get(RunTag.OUTCOME) == "COMPLETE" for r in trials)
    (study,) = [r for r in runs if r.data.tags.get(RunTag.KIND) == RunKind.STUDY]
    assert study.info.status == "FINISHED"
    (cancelled,) = [r for r in scenario.b_runs_after_cancel if r.data.tags.get(RunTag.KIND) == RunKind.STUDY]
    first_job, resume_job = (StudyRunTags.from_tags(r.data.tags).job_id for r in (cancelled, study))
    assert study.info.run_id == cancelled.info.run_id  # the same study run, continued
    # Optuna agrees: the trial the cancel cut (FAIL, never reopened) has its result in a new trial
    optuna_trials = scenario.b_optuna_after_resume
    cut = [t for t in optuna_trials if "cancelled" in t.user_attrs.get(TrialAttr.ORPHANED, "")]
    assert cut
    for trial in cut:
        (continued,) = [t for t in optuna_trials if t.user_attrs.get(TrialAttr.CONTINUES) == trial.number]
        assert continued.user_attrs[TrialAttr.RAY_TRIAL_ID] == trial.user_attrs[TrialAttr.RAY_TRIAL_ID]
        assert continued.params == trial.params and continued.state != optuna.trial.TrialState.FAIL
    ran = [t for t in optuna_trials if TrialAttr.ORPHANED not in t.user_attrs]
    assert len(ran) == B_TRIALS and all(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL for t in ran)
    assert {t.user_attrs[TrialAttr.RAY_TRIAL_ID] for t in ran} == set(trial_ids)
    assert resume_job and resume_job.startswith(f"autopeft-{B}-") and resume_job != first_job
    assert row(cli(["jobs"], scenario.laptop, {**scenario.head.env, "RAY_API_SERVER_ADDRESS": scenario.head.dashboard})
               .stdout, B)["registered"] == "version 1"


def test_a_wrong_or_missing_token_is_refused_in_one_line(scenario: Record, no_shared_ray):
    wrong, missing = scenario.wrong_token, scenario.no_token
    assert wrong is not None and missing is not None
    assert wrong.returncode == 2 and missing.returncode == 2
    assert wrong.stderr.strip().count("\n") == 0 and missing.stderr.strip().count("\n") == 0
    assert "refused the token from RAY_AUTH_TOKEN" in wrong.stderr
    assert "requires a token" in missing.stderr
    for result in (wrong, missing):
        assert scenario.token not in result.stdout + result.stderr


def test_jobs_watch_prints_the_table_every_interval_until_ctrl_c(scenario: Record, no_shared_ray):
    header = "\t".join(COLUMNS)
    assert scenario.watch.count(header) >= 2, scenario.watch[-2000:]
    for table in scenario.watch.split(header)[1:]:  # every refresh lists both studies
        assert f"\t{A}\t" in table and f"\t{B}\t" in table, table
    assert scenario.watch_code is not None, "still running 60 s after Ctrl-C; it printed: " + scenario.watch[-2000:]
    assert scenario.watch_code == 0, scenario.watch[-2000:]
