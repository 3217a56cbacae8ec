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


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = env or {**os.environ, "HF_HUB_OFFLINE": "1"}
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


def test_a_hub_model_id_where_the_hub_does_not_answer_comes_from_the_cache_or_says_so(tmp_path, minilm_path):
    """A compute node without network and without HF_HUB_OFFLINE: each Hub load retried for about
    25 s ("Retrying in 8s" lines) before it read the cache or failed. The model now comes from the
    cache at once, and a model the cache lacks is one line, exit 2, before anything is written."""
    from tests.cli.test_bad_input import closed_port
    from tests.conftest import cache_model

    cache_model(tmp_path / "cache", "sentence-transformers/all-MiniLM-L6-v2", minilm_path)
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HUB_CACHE=str(tmp_path / "cache"))
    shown = run_cli("space", "lora-family", "--model", "sentence-transformers/all-MiniLM-L6-v2", cwd=tmp_path,
                    env={**env, "COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "(BertForSequenceClassification): 6 layers" in shown.stdout
    assert "Retrying" not in shown.stdout + shown.stderr

    (tmp_path / "reviews.csv").write_text("sentence,label\n" + "a fine film,pos\na dull film,neg\n" * 20)
    proc = run_cli("search", "--model", "org/absent", "--train", "reviews.csv", cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "model.name_or_path: 'org/absent' is not in the Hugging Face cache" in lines[0]
    assert "the Hub does not answer" in lines[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache", "reviews.csv"]
