"""Reliability promises, each with an injected fault, through the real stack."""

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
from typer.testing import CliRunner

from autopeft.cli.app import app
from autopeft.config import resolve
from autopeft.schema import TrialAttr
from autopeft.study import prepare, run_search

from ..conftest import make_config, write_yaml
from .conftest import TWENTY_TRIALS

pytestmark = pytest.mark.integration
optuna.logging.set_verbosity(optuna.logging.WARNING)


def small_config(tmp_path: Path, sst2_slice, **changes) -> dict:
    """LoRA (r 4 or 8) or IA3 on 240 SST-2 sentences, 5 trials of 10 steps (one evaluation)."""
    return make_config(tmp_path, train=sst2_slice["train"], data__max_train_examples=240, data__max_eval_examples=80,
                       budget={"trials": 5, "max_steps": 10, "eval_interval": 10, "cpus_per_trial": 2},
                       tracking__experiment="rel", tracking__registered_model="rel-model", **changes)


def trial_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("autopeft.run_kind") == "trial"]


def test_failing_and_diverging_trials_are_recorded_and_the_study_goes_on(tmp_path, sst2_slice, minilm_path, monkeypatch,
                                                                         tracking_uri, local_ray):
    faults = {"raise_when": {"adapter": "ia3"}, "nan_when": {"adapter": "lora", "lora.r": 4}, "nan_at_step": 2}
    monkeypatch.setenv("AUTOPEFT_FAULTS", json.dumps(faults))  # read when the study is prepared
    # one trial of each: IA3 raises, LoRA r=4 diverges, LoRA r=8 trains (warm-started, in this order)
    warm = tmp_path / "warm.yaml"
    warm.write_text(json.dumps([{"adapter": "ia3"}, {"adapter": "lora", "lora.r": 4}, {"adapter": "lora", "lora.r": 8}]))
    path = write_yaml(tmp_path / "s.yaml", small_config(tmp_path, sst2_slice, study_name="faults", budget__trials=3,
                                                         warm_start={"sources": [str(warm)], "prior": False},
                                                         pruning={"enabled": False}))
    prepared = prepare(resolve(path))
    result = run_search(prepared)

    families = [(t.params["adapter"], t.params.get("lora.r")) for t in result.trials]
    assert ("ia3", None) in families and ("lora", 4) in families and ("lora", 8) in families, families
    runs = {r.data.tags["autopeft.trial_id"]: r for r in trial_runs(prepared.config.tracking.uri, "rel")}
    for trial in result.trials:
        run = runs[trial.trial_id]
        if trial.params["adapter"] == "ia3":
            assert run.info.status == "FAILED" and "InjectedFault" in run.data.tags["autopeft.error"]
        elif trial.params.get("lora.r") == 4:
            # NaN is caught at the step it appears, before any evaluation
            assert run.info.status == "FAILED"
            assert "loss became nan at step 2" in run.data.tags["autopeft.error"]
            assert "accuracy" not in run.data.metrics
        else:
            assert run.info.status == "FINISHED" and run.data.tags["autopeft.outcome"] == "COMPLETE"
    study = optuna.load_study(study_name="faults", storage=prepared.optuna_storage)
    failed = sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
    assert failed == sum(1 for f in families if f != ("lora", 8))
    assert result.best.params.get("lora.r") == 8 and result.model_version == "1"


def _progress(storage: str, study: str) -> tuple[int, bool]:
    """(trials finished, whether a running trial has reported) in the Optuna storage."""
    try:
        trials = optuna.load_study(study_name=study, storage=storage).trials
    except Exception:  # not created yet
        return 0, False
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values]
    return sum(t.state.is_finished() for t in trials), bool(running)


def test_driver_killed_mid_search_resumes_to_a_consistent_study(tmp_path, sst2_slice, minilm_path, tracking_uri,
                                                                 monkeypatch):
    trials = 2
    config = small_config(tmp_path, sst2_slice, study_name="crash")
    config["budget"].update(trials=trials, max_steps=20, eval_interval=10)
    path = write_yaml(tmp_path / "s.yaml", config)
    uri, storage = config["tracking"]["uri"], f"sqlite:///{tmp_path / 'optuna.db'}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "autopeft.cli"]
    driver = subprocess.Popen([*cli, "search", "--config", str(path)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # killed mid-trial: once a trial has finished and the next one has reported, before it ends
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and driver.poll() is None:
            finished, reporting = _progress(storage, "crash")
            if finished >= 1 and reporting:
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the search ended before it could be killed"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, like a lost machine
        driver.wait()
    assert _progress(storage, "crash")[0] < trials

    proc = subprocess.run([*cli, "resume", "crash", "--output-dir", str(tmp_path / "out")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    study = optuna.load_study(study_name="crash", storage=storage)
    real = [t for t in study.trials if TrialAttr.ORPHANED not in t.user_attrs]  # orphans: asked for, never run
    assert len(real) == trials and all(t.state.is_finished() for t in study.trials)
    runs = trial_runs(uri, "rel")
    ran = [r for r in runs if r.data.tags.get("autopeft.outcome") != "INTERRUPTED"]
    assert len(ran) == trials
    assert len({r.data.tags["autopeft.trial_id"] for r in runs}) == len(runs)  # no duplicate run per trial
    assert not [r for r in runs if r.info.status == "RUNNING"]
    client = MlflowClient(uri)
    versions = client.search_model_versions("name = 'rel-model'")
    assert [v.tags["autopeft.study"] for v in versions] == ["crash"]  # registered exactly once
    parent = [r for r in client.search_runs([client.get_experiment_by_name("rel").experiment_id])
              if r.data.tags.get("autopeft.run_kind") == "study"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"

    # resumed again: it says so and runs nothing (in this process: a third interpreter would only
    # import the same modules again)
    monkeypatch.chdir(tmp_path)
    again = CliRunner().invoke(app, ["resume", "crash", "--output-dir", str(tmp_path / "out")])
    assert again.exit_code == 0 and "already finished" in again.stdout, again.output
    assert len(client.search_model_versions("name = 'rel-model'")) == 1


def test_memory_does_not_grow_over_20_trials_in_one_worker(twenty_trials):
    result = twenty_trials.result
    reports = [t.metrics for t in result.trials]  # in the order the trials ran (one at a time)
    pids = {m["worker_pid"] for m in reports}
    assert len(result.trials) == TWENTY_TRIALS and len(pids) == 1  # every trial ran in the same reused worker
    rss = [m["worker_rss_mb"] for m in reports]
    # freed memory goes back to the system after each trial (engine.memory): without that the
    # worker grew 4-5 MiB a trial (65-69 MiB here); with it, about 15 MiB in all
    growth = max(rss[5:]) - rss[4]
    assert growth < 40, f"worker memory grew by {growth:.0f} MiB over trials 5..20: {[round(r) for r in rss]}"
