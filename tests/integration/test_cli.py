"""`autopeft search` as users run it, on bad input: a subprocess that exits 2 with one line and
records nothing. (A search that succeeds as a subprocess and records no secret of its
environment: tests/integration/test_zero_config.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import write_config, write_yaml

pytestmark = pytest.mark.integration


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "autopeft.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def cli_config(tmp_path: Path, **changes) -> Path:
    return write_config(tmp_path, model={"name_or_path": "minilm", "max_length": 40},
                        space={"adapters": ["lora", "ia3"], "batch_size": 16},
                        tracking__experiment="cli", tracking__registered_model="cli-model", **changes)


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c.update(budget={"trails": 3}), "budget.trails: unknown key; did you mean 'trials'?"),
    (lambda c: c["space"].update(adapters=["lorra"]), "unknown adapter family 'lorra'"),
    (lambda c: c["data"].update(label_column="sentiment"), "data.label_column: column 'sentiment' is not in the train data"),
])
def test_bad_config_exits_2_with_one_line_and_records_nothing(tmp_path, minilm_path, mutate, message):
    import yaml

    path = cli_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    mutate(data)
    write_yaml(path, data)
    proc = run_cli("search", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert "Traceback" not in proc.stderr
