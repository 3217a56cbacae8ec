"""autopeft.service.jobs and figures: the entrypoint's paths, job states, the trials column, where
a study's outputs go, and what a submit hands Ray's job service (a recording stand-in for Ray's
client: no Ray here; tests/integration/test_service.py submits to a real head)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from autopeft.errors import ClusterError
from autopeft.schema import STUDY_RESOURCE, JobEnv, JobMetadata
from autopeft.service import jobs
from autopeft.service.connection import Cluster
from autopeft.service.figures import StudyFigures
from autopeft.service.jobs import (
    DEFAULT_OUTPUT_DIR,
    STATES,
    StudyJob,
    _config_output_dir,
    find_job,
    inputs_dir,
    shell_path,
    state_of,
    study_jobs,
    submit_study,
)
from tests.conftest import make_config, write_yaml

SERVER = "http://mlflow.example:5000"


def _echo(word: str, home: Path) -> str:
    """What bash makes of ``word`` (the entrypoint's shell, with HOME set)."""
    done = subprocess.run(["bash", "-c", f"printf '%s\\n' {word}"], env={"HOME": str(home), "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, check=True)
    return done.stdout.removesuffix("\n")


# --------------------------------------------------------------------------- the entrypoint's paths


@pytest.mark.parametrize("path,expected", [
    ("~", '"$HOME"'), ("~/x", '"$HOME"/x'), ("~/my runs/x", '"$HOME"\'/my runs/x\''),
    ("/srv/runs", "/srv/runs"), ("/srv/my runs", "'/srv/my runs'"),
])
def test_shell_path_text(path: str, expected: str):
    assert shell_path(path) == expected


@pytest.mark.parametrize("path", ["~", "~/autopeft-runs", "~/my runs/x", "~/it's $HOME; rm -rf x", "/srv/my runs",
                                  "/srv/$(whoami)/`id`/*", "relative dir/x", "~user/x", "a~/b"])
def test_shell_path_is_one_word_that_bash_reads_as_the_path(path: str, tmp_path: Path):
    home = tmp_path / "the home"  # a space in HOME too: "$HOME" is quoted
    expected = str(home) + path[1:] if path == "~" or path.startswith("~/") else path
    assert _echo(shell_path(path), home) == expected


def test_inputs_dir():
    assert inputs_dir("~/autopeft-runs", "s1") == "~/autopeft-runs/inputs/s1"
    assert inputs_dir("/srv/runs/", "s1") == "/srv/runs/inputs/s1"


# --------------------------------------------------------------------------- states and figures


@pytest.mark.parametrize("ray_state,shown", [("PENDING", "pending"), ("RUNNING", "running"),
                                             ("SUCCEEDED", "succeeded"), ("FAILED", "failed"),
                                             ("STOPPED", "cancelled")])
def test_state_of_ray_job_status(ray_state: str, shown: str):
    from ray.job_submission import JobStatus

    assert state_of(SimpleNamespace(status=JobStatus(ray_state))) == shown
    assert state_of(SimpleNamespace(status=ray_state)) == shown  # as a plain string too


def test_every_ray_job_status_has_a_state():
    from ray.job_submission import JobStatus

    assert set(STATES) == {s.value for s in JobStatus}
    assert set(jobs.FINISHED_STATES) == {STATES["SUCCEEDED"], STATES["FAILED"], STATES["STOPPED"]}
    assert state_of(SimpleNamespace(status="SOMETHING_NEW")) == "something_new"  # a later Ray's: shown, not lost


@pytest.mark.parametrize("figures,line", [
    (StudyFigures(run_id="r", run_status="RUNNING", budget=8, completed=3, pruned=2, failed=0, running=1),
     "5/8 (2 pruned, 0 failed)"),
    (StudyFigures(run_id="r", run_status="FINISHED", budget=4, completed=2, pruned=1, failed=1), "4/4 (1 pruned, 1 failed)"),
    (StudyFigures(run_id="r", run_status="RUNNING", budget=None, completed=1, running=2), "1 (0 pruned, 0 failed)"),
    (StudyFigures(run_id="r", run_status="RUNNING", budget=6), "0/6 (0 pruned, 0 failed)"),
])
def test_trials_line(figures: StudyFigures, line: str):
    assert figures.trials_line() == line
    assert figures.done == figures.completed + figures.pruned + figures.failed


# --------------------------------------------------------------------------- where outputs go


@pytest.mark.parametrize("in_file,override,expected", [
    ("/srv/runs", None, "/srv/runs"),
    ("~/runs", None, "~/runs"),
    ("s3://bucket/runs", None, "s3://bucket/runs"),
    ("runs", None, DEFAULT_OUTPUT_DIR),  # would land in the job's temporary working directory
    ("./runs", None, DEFAULT_OUTPUT_DIR),
    (None, None, DEFAULT_OUTPUT_DIR),
    ("/srv/runs", "/data/runs", "/data/runs"),  # --set output_dir beats the file
    ("/srv/runs", "runs", DEFAULT_OUTPUT_DIR),
    ("runs", "~/other", "~/other"),
])
def test_config_output_dir(tmp_path: Path, in_file: str | None, override: str | None, expected: str):
    raw = make_config(tmp_path)
    if in_file is None:
        del raw["output_dir"]
    else:
        raw["output_dir"] = in_file
    config = write_yaml(tmp_path / "search.yaml", raw)
    overrides: list[tuple[list[str], Any]] = [(["budget", "trials"], 3)]
    if override is not None:
        overrides += [(["output_dir"], "/first"), (["output_dir"], override)]  # the last one counts
    assert _config_output_dir(config, overrides) == expected


def test_config_output_dir_of_a_config_that_is_not_there(tmp_path: Path):
    assert _config_output_dir(tmp_path / "missing.yaml", []) == DEFAULT_OUTPUT_DIR


# --------------------------------------------------------------------------- what a submit sends


class FakeClient:
    """Ray's JobSubmissionClient as far as the service uses it, recording what it is asked."""

    def __init__(self, tmp_path: Path, listed: list[Any] | None = None, status: str = "RUNNING") -> None:
        self.tmp_path = tmp_path
        self.submitted: list[dict[str, Any]] = []
        self.uploaded: Path | None = None
        self.listed = listed or []
        self.status = status
        self.stopped: list[str] = []

    def submit_job(self, **kwargs: Any) -> str:
        self.submitted.append(kwargs)
        working_dir = kwargs["runtime_env"].get("working_dir")
        if working_dir is not None:  # what Ray uploads, taken while it is there
            self.uploaded = self.tmp_path / "uploaded"
            shutil.copytree(working_dir, self.uploaded)
        return str(kwargs["submission_id"])

    def list_jobs(self) -> list[Any]:
        return self.listed

    def get_job_info(self, job_id: str) -> Any:
        return SimpleNamespace(status=self.status, submission_id=job_id)

    def stop_job(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        self.status = "STOPPED"
        return True


def _cluster(client: FakeClient, monkeypatch: pytest.MonkeyPatch, slots: float | None = None) -> Cluster:
    monkeypatch.setattr(Cluster, "resource_total", lambda self, name: slots if name == STUDY_RESOURCE else None)
    return Cluster(address="http://head:8265", client=client)  # type: ignore[arg-type]


def _project(tmp_path: Path, **changes: Any) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "train.csv").write_text("sentence,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(20)))
    return write_yaml(root / "search.yaml", make_config(root, train="train.csv", tracking={"uri": SERVER},
                                                       **changes))


def _fake_autopeft(tmp_path: Path) -> Path:
    """A folder with an ``autopeft`` that writes where it ran and with which arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "autopeft"
    script.write_text('#!/usr/bin/env python3\nimport json, os, sys\n'
                      'json.dump({"cwd": os.getcwd(), "args": sys.argv[1:]}, open(os.environ["RAN"], "w"))\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_submit_study_sends_the_staged_folder_and_an_entrypoint_that_keeps_the_inputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    client = FakeClient(tmp_path)
    cluster = _cluster(client, monkeypatch)
    config = _project(tmp_path, study_name="s1", output_dir="~/study runs")
    job, staged = submit_study(cluster, config=config, submitter="alice")

    assert len(client.submitted) == 1
    sent = client.submitted[0]
    assert job.job_id == sent["submission_id"] and job.job_id.startswith("autopeft-s1-")
    assert not staged.directory.exists()  # the staged copy is removed once Ray has it
    assert sorted(p.name for p in client.uploaded.rglob("*") if p.is_file()) == ["search.yaml", "train-train.csv"]
    env = sent["runtime_env"]["env_vars"]
    assert env[JobEnv.SUBMITTER] == "alice" and env[JobEnv.JOB_ID] == job.job_id
    assert int(env["RAY_JOB_STOP_WAIT_TIME_S"]) == jobs.STOP_WAIT_S
    assert sent["entrypoint_num_cpus"] == 0 and sent["entrypoint_resources"] is None  # the cluster has no slots
    metadata = sent["metadata"]
    assert all(isinstance(v, str) for v in metadata.values())
    assert JobMetadata.from_metadata(metadata) == job.metadata == JobMetadata(
        study="s1", action="search", submitter="alice", tracking_uri=SERVER, experiment="autopeft",
        output_dir="~/study runs", trials=2, study_slot=False)

    # the entrypoint, run by a shell in Ray's copy of the folder, with a stand-in autopeft
    home, ran = tmp_path / "home", tmp_path / "ran.json"
    home.mkdir()
    env = {"HOME": str(home), "PATH": f"{_fake_autopeft(tmp_path)}:{os.environ['PATH']}", "RAN": str(ran)}
    subprocess.run(["bash", "-c", sent["entrypoint"]], cwd=client.uploaded, env=env, check=True)
    kept = home / "study runs" / "inputs" / "s1"
    assert json.loads(ran.read_text()) == {"cwd": str(kept), "args": ["search", "--config", "search.yaml"]}
    assert (kept / "data" / "train-train.csv").read_bytes() == (config.parent / "train.csv").read_bytes()


def test_a_request_submitted_runs_zero_config_with_its_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from autopeft.auto.infer import Request
    from autopeft.config import parse_override

    train = tmp_path / "reviews" / "train.csv"
    train.parent.mkdir()
    train.write_text("sentence,label\nok,1\nbad,0\n")
    client = FakeClient(tmp_path)
    job, staged = submit_study(_cluster(client, monkeypatch, slots=2.0), request=Request(model="minilm", train=str(train)),
                               overrides=[(["tracking", "uri"], SERVER)], study_name="zc", submitter="bob")
    sent = client.submitted[0]
    assert sent["entrypoint_resources"] == {STUDY_RESOURCE: 1}  # the cluster caps studies: this one takes a slot
    assert job.metadata.study_slot is True and job.metadata.experiment == "autopeft-reviews"
    assert job.metadata.output_dir == DEFAULT_OUTPUT_DIR and job.metadata.trials is None

    home, ran = tmp_path / "home", tmp_path / "ran.json"
    home.mkdir()
    env = {"HOME": str(home), "PATH": f"{_fake_autopeft(tmp_path)}:{os.environ['PATH']}", "RAN": str(ran)}
    subprocess.run(["bash", "-c", sent["entrypoint"]], cwd=client.uploaded, env=env, check=True)
    args = json.loads(ran.read_text())["args"]
    assert args == staged.args and args[:3] == ["search", "--train", "data/train-train.csv"]
    parsed = {".".join(k): v for k, v in (parse_override(args[i + 1]) for i, a in enumerate(args) if a == "--set")}
    assert parsed["study_name"] == "zc" and parsed["tracking.experiment"] == "autopeft-reviews"
    assert parsed["output_dir"] == DEFAULT_OUTPUT_DIR and parsed["tracking.uri"] == SERVER


def test_bad_input_sends_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    client = FakeClient(tmp_path)
    config = _project(tmp_path)
    write_yaml(config, {**make_config(config.parent, train="train.csv"), "tracking": {"uri": "sqlite:///mlflow.db"}})
    with pytest.raises(ClusterError, match=r"^tracking\.uri: "):
        submit_study(_cluster(client, monkeypatch), config=config)
    assert client.submitted == []


# --------------------------------------------------------------------------- finding and stopping jobs


def _listed(job_id: str | None, start: float, status: str = "SUCCEEDED", **metadata: Any) -> SimpleNamespace:
    # as Ray's JobDetails: every listed job has its status
    return SimpleNamespace(submission_id=job_id, start_time=start, status=status,
                           metadata=JobMetadata(**metadata).to_metadata() if metadata else {"owner": "someone"})


def test_study_jobs_are_autopeft_jobs_newest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    listed = [_listed("autopeft-a-1", 100, study="a"), _listed("raysubmit_x", 300),  # not autopeft's
              _listed("autopeft-b-1", 200, study="b", trials=4), _listed("autopeft-a-2", 400, study="a"),
              _listed(None, 500, study="driver-without-an-id")]
    cluster = _cluster(FakeClient(tmp_path, listed), monkeypatch)
    found = study_jobs(cluster)
    assert [j.job_id for j in found] == ["autopeft-a-2", "autopeft-b-1", "autopeft-a-1"]
    assert found[1].metadata.trials == 4
    assert [j.listed_state for j in found] == ["succeeded"] * 3  # the listing's state, no request per job
    assert find_job(cluster, "autopeft-a-1").job_id == "autopeft-a-1"
    assert find_job(cluster, "a").job_id == "autopeft-a-2"  # a study's latest job
    with pytest.raises(ClusterError, match=r"^JOB: no autopeft job or study 'c' .*autopeft-a-2"):
        find_job(cluster, "c")


def test_cancel_of_a_finished_job_stops_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    client = FakeClient(tmp_path, status="SUCCEEDED")
    job = StudyJob(cluster=_cluster(client, monkeypatch), job_id="autopeft-a-1", metadata=JobMetadata(study="a"))
    assert job.cancel() == "succeeded" and client.stopped == []


def test_cancel_stops_the_job_and_waits_for_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    client = FakeClient(tmp_path, status="RUNNING")
    job = StudyJob(cluster=_cluster(client, monkeypatch), job_id="autopeft-a-1", metadata=JobMetadata(study="a"))
    assert job.cancel(by="carol", wait_s=5) == "cancelled" and client.stopped == ["autopeft-a-1"]
