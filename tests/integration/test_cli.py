"""`autopeft search` as users run it: a subprocess, exit codes, no secret in what it records, nothing\nrecorded on bad input; and what a single-objective search records of the trials ASHA stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient

from ..conftest import new_mlflow_store, write_config, write_sst2_slice, write_yaml

pytestmark = pytest.mark.integration


#: Credentials planted in the environment of a search; none may end up in what it records.
PLANTED = {"HF_TOKEN": "hf_PLANTEDsecret0001", "AWS_SECRET_ACCESS_KEY": "PLANTEDsecret0002",
           "MLFLOW_TRACKING_PASSWORD": "PLANTEDsecret0003"}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **PLANTED}
    return subprocess.run([sys.executable, "-m", "autopeft.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def cli_config(tmp_path: Path, **changes) -> Path:
    return write_config(tmp_path, model={"name_or_path": "minilm", "max_length": 40},
                        space={"adapters": ["lora", "ia3"], "batch_size": 16},
                        tracking__experiment="cli", tracking__registered_model="cli-model", **changes)


TRIALS, MAX_STEPS, EVAL_INTERVAL = 4, 20, 10


@pytest.fixture(scope="module")
def cli_search(tmp_path_factory, glue_dir, minilm_path, mlflow_db_template) -> tuple[subprocess.CompletedProcess, Path]:
    """One `autopeft search` on an SST-2 slice with the planted credentials in its environment;
    single objective (TPE), ASHA on validation loss. (The process, the folder it recorded in.)"""
    folder = tmp_path_factory.mktemp("cli")
    data = write_sst2_slice(glue_dir, folder)
    new_mlflow_store(mlflow_db_template, folder / "mlflow.db")
    config = cli_config(folder, train=data["train"], data__validation_fraction=0.25,
                        budget={"trials": TRIALS, "max_steps": MAX_STEPS, "eval_interval": EVAL_INTERVAL,
                                "cpus_per_trial": 2},
                        # rungs compare validation loss (the objective stays accuracy)
                        pruning={"grace_period": 1, "reduction_factor": 2, "metric": "loss"})
    return run_cli("search", "--config", str(config), "--study-name", "cli-ok", cwd=folder), folder


def test_search_succeeds_with_exit_code_0(cli_search):
    proc, folder = cli_search
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "registered: models:/cli-model/1 (alias 'candidate')" in proc.stdout
    assert "COMPLETE" in proc.stdout
    version = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").get_model_version_by_alias("cli-model", "candidate")
    assert str(version.version) == "1"
    # nothing recorded (MLflow store and artifacts, Optuna storage, outputs) holds a planted secret
    recorded = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in recorded) and any("mlartifacts" in p.parts for p in recorded)
    for path in recorded:
        blob = path.read_bytes()
        assert not any(secret.encode() in blob for secret in PLANTED.values()), path


def test_asha_stops_trials_above_the_rung_median_loss_and_optuna_keeps_their_curve(cli_search):
    proc, folder = cli_search
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cli").experiment_id])
    children = [r for r in runs if r.data.tags.get("autopeft.run_kind") == "trial"]
    assert len(children) == TRIALS

    # ASHA stopped at least one trial early, and Optuna's storage has it as PRUNED with its curve
    study = optuna.load_study(study_name="cli-ok", storage=f"sqlite:///{folder / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == TRIALS
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    # a trial that ran all its steps still at the majority class is PRUNED in Optuna too, with why
    ran_trivial = [t for t in pruned if "ran all" in t.user_attrs.get("autopeft.pruned_reason", "")]
    stopped = [t for t in pruned if t not in ran_trivial]
    assert stopped, states
    assert all(t.intermediate_values and max(t.intermediate_values) < MAX_STEPS // EVAL_INTERVAL for t in stopped)
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) or ran_trivial
    pruned_runs = [r for r in children if r.data.tags["autopeft.outcome"] == "PRUNED"]
    assert len(pruned_runs) == len(stopped)
    by_ray_id = {r.data.tags["autopeft.trial_id"]: r for r in children}
    for t in ran_trivial:
        run = by_ray_id[t.user_attrs["autopeft.ray_trial_id"]]
        assert run.data.tags["autopeft.outcome"] == "COMPLETE" and run.data.tags["autopeft.trivial"] == "true"
    # each was stopped for a loss above the median loss of the trials that reached its rung
    # before it (ASHA, reduction factor 2, deciding once 2 others are there)
    losses = {r.info.run_id: {m.step: (m.timestamp, m.value) for m in client.get_metric_history(r.info.run_id, "loss")}
              for r in children}
    for run in pruned_runs:
        curve = losses[run.info.run_id]
        step = max(curve)
        at, value = curve[step]
        before = [c[step][1] for rid, c in losses.items() if rid != run.info.run_id and step in c and c[step][0] < at]
        assert len(before) >= 2 and value > float(np.median(before)), (step, value, before)


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
