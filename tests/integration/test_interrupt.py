"""Once compute has started, nothing a study opened is left running: Ctrl-C makes `autopeft search`
exit 130 with the study run and its trial runs KILLED in MLflow and the running Optuna trials FAIL;
a search that fails leaves its study run FAILED with the cause as a tag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from autopeft.config import resolve
from autopeft.errors import SearchError
from autopeft.schema import RunKind, RunTag, TrialAttr
from autopeft.study import prepare, run_search

from ..conftest import make_config, write_yaml

pytestmark = pytest.mark.integration

EXPERIMENT, STUDY = "interrupt", "ctrl-c"


def runs_by_kind(uri: str) -> dict[str, list]:
    """The experiment's runs by kind (study, trial); empty while it does not exist yet."""
    client = MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
    except Exception:  # noqa: BLE001 - the driver holds the SQLite lock for a moment: ask again
        return {}
    found: dict[str, list] = {}
    for run in runs:
        found.setdefault(run.data.tags.get(RunTag.KIND, ""), []).append(run)
    return found


def test_ctrl_c_exits_130_and_leaves_no_run_running(tmp_path: Path, sst2_slice, minilm_path, tracking_uri,
                                                    no_shared_ray):
    # one trial long enough to be caught mid-run (~0.3 s a step on one CPU), the second never starts
    config = make_config(tmp_path, train=sst2_slice["train"], study_name=STUDY,
                         data__max_train_examples=128, data__max_eval_examples=32,
                         space={"adapters": {"lora": {"r": {"choices": [4]}}}, "batch_size": 8},
                         budget={"trials": 2, "max_steps": 2000, "eval_interval": 1000, "cpus_per_trial": 1,
                                 "concurrent_trials": 1},
                         tracking__experiment=EXPERIMENT, tracking__registered_model="interrupt-model")
    path = write_yaml(tmp_path / "search.yaml", config)
    # RAY_ADDRESS=local: a Ray of its own, never a cluster another test or session started
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": "local"}
    log = (tmp_path / "search.log").open("w")
    driver = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "search", "--config", str(path)], cwd=tmp_path,
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            trials = runs_by_kind(tracking_uri).get(RunKind.TRIAL, [])
            if any(run.info.status == "RUNNING" for run in trials):
                break
            time.sleep(0.5)
        assert driver.poll() is None, f"the search ended before a trial ran:\n{(tmp_path / 'search.log').read_text()[-3000:]}"
        assert time.monotonic() < deadline, "no trial run started within 240 s"

        driver.send_signal(signal.SIGINT)  # what Ctrl-C sends the driver
        started = time.monotonic()
        code = driver.wait(timeout=60)
        took = time.monotonic() - started
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        log.close()
    output = (tmp_path / "search.log").read_text()
    assert code == 130, output[-3000:]
    assert took < 60
    assert "interrupted" in output and f"autopeft resume {STUDY}" in output

    runs = runs_by_kind(tracking_uri)
    assert not [r.info.run_id for kind in runs.values() for r in kind if r.info.status == "RUNNING"]
    (study,) = runs[RunKind.STUDY]
    assert study.info.status == "KILLED" and study.data.tags[RunTag.ERROR] == "interrupted (Ctrl-C)"
    trials = runs[RunKind.TRIAL]
    assert trials and all(run.info.status == "KILLED" for run in trials)
    assert all(run.data.tags[RunTag.OUTCOME] == "INTERRUPTED" for run in trials)

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna_trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert optuna_trials and all(t.state == optuna.trial.TrialState.FAIL for t in optuna_trials)
    assert all("interrupted" in t.user_attrs[TrialAttr.ORPHANED] for t in optuna_trials)


def test_a_failed_search_leaves_its_study_run_failed_with_the_cause(tmp_path: Path, sst2_slice, minilm_path,
                                                                     tracking_uri, monkeypatch, local_ray):
    monkeypatch.setenv("AUTOPEFT_FAULTS", json.dumps({"raise_when": {"adapter": "lora"}}))  # every trial raises
    config = make_config(tmp_path, train=sst2_slice["train"], study_name="crash", data__max_train_examples=64,
                         data__max_eval_examples=32, space={"adapters": ["lora"], "batch_size": 8},
                         warm_start={"prior": False}, pruning={"enabled": False},
                         budget={"trials": 1, "max_steps": 2, "eval_interval": 2, "cpus_per_trial": 1},
                         tracking__experiment=EXPERIMENT)
    prepared = prepare(resolve(write_yaml(tmp_path / "search.yaml", config)))
    with pytest.raises(SearchError, match="no trial produced a result"):
        run_search(prepared)
    runs = runs_by_kind(tracking_uri)
    (study,) = runs[RunKind.STUDY]
    assert study.info.status == "FAILED"
    assert study.data.tags[RunTag.ERROR].startswith("SearchError: search: no trial produced a result")
    assert "Study failed before it registered an adapter" in study.data.tags[RunTag.NOTE]
    assert [run.info.status for run in runs[RunKind.TRIAL]] == ["FAILED"]
