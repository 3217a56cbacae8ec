"""`autopeft search` as users run it: a subprocess, exit codes, nothing recorded on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ..conftest import write_yaml

pytestmark = pytest.mark.integration


#: Credentials planted in the environment of a search; none may end up in what it records.
PLANTED = {"HF_TOKEN": "hf_PLANTEDsecret0001", "AWS_SECRET_ACCESS_KEY": "PLANTEDsecret0002",
           "MLFLOW_TRACKING_PASSWORD": "PLANTEDsecret0003"}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **PLANTED}
    return subprocess.run([sys.executable, "-m", "autopeft.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def cli_config(tmp_path: Path, sst2_slice, **extra) -> Path:
    data = {
        "model": {"name_or_path": "minilm", "max_length": 40},
        "data": {"train": str(sst2_slice["train"]), "text_columns": ["sentence"], "label_column": "label"},
        "space": {"adapters": ["lora", "ia3"], "batch_size": 16},
        "budget": {"trials": 3, "max_steps": 20, "eval_interval": 10, "cpus_per_trial": 2},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "cli", "registered_model": "cli-model"},
        "output_dir": str(tmp_path / "out"),
        **extra,
    }
    return write_yaml(tmp_path / "search.yaml", data)


def test_search_succeeds_with_exit_code_0(tmp_path, sst2_slice, minilm_path):
    proc = run_cli("search", "--config", str(cli_config(tmp_path, sst2_slice)), "--study-name", "cli-ok", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "registered: models:/cli-model/1 (alias 'candidate')" in proc.stdout
    assert "COMPLETE" in proc.stdout
    version = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_model_version_by_alias("cli-model", "candidate")
    assert str(version.version) == "1"
    # nothing recorded (MLflow store and artifacts, Optuna storage, outputs) holds a planted secret
    recorded = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in recorded) and any("mlartifacts" in p.parts for p in recorded)
    for path in recorded:
        blob = path.read_bytes()
        assert not any(secret.encode() in blob for secret in PLANTED.values()), path


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c.update(budget={"trails": 3}), "budget.trails: unknown key; did you mean 'trials'?"),
    (lambda c: c["space"].update(adapters=["lorra"]), "unknown adapter family 'lorra'"),
    (lambda c: c["data"].update(label_column="sentiment"), "data.label_column: column 'sentiment' is not in the train data"),
])
def test_bad_config_exits_2_with_one_line_and_records_nothing(tmp_path, sst2_slice, minilm_path, mutate, message):
    import yaml

    path = cli_config(tmp_path, sst2_slice)
    data = yaml.safe_load(path.read_text())
    mutate(data)
    write_yaml(path, data)
    proc = run_cli("search", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert "Traceback" not in proc.stderr
