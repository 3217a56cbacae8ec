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
from tests.conftest import make_config


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
    "unexpected label values": (lambda c, t: c["data"].update(test=_write_csv(t, pd.DataFrame({"sentence": ["x"], "label": ["meh"]}))),
                                "data.label_column: test has label 'meh' that train does not have"),
    "empty text": (lambda c, t: c["data"].update(train=_write_csv(t, pd.DataFrame({"sentence": ["ok", " ", "fine"], "label": ["a", "b", "a"]}))),
                   "data.text_columns: 'sentence' is empty in train row 1"),
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
}


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
    started = time.monotonic()
    result = CliRunner().invoke(app, ["search", "--config", str(path)])
    elapsed = time.monotonic() - started
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("study ")]
    assert len(lines) == 1 and message in " ".join(result.output.split()), result.output
    assert elapsed < 15, f"{case} took {elapsed:.1f}s to fail"
    assert not (workdir / "mlflow.db").exists() and not (workdir / "out").exists()


def test_a_config_file_that_is_not_utf8_is_one_line(workdir: Path):
    path = workdir / "search.yaml"
    path.write_bytes(yaml.safe_dump(make_config(workdir)).encode() + "# caf\xe9\n".encode("latin-1"))
    result = CliRunner().invoke(app, ["search", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "is not UTF-8 text (byte 0xe9 at offset" in " ".join(result.output.split())
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not (workdir / "mlflow.db").exists() and not (workdir / "out").exists()
