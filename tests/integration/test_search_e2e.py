"""A real search end to end (the session's finished study, tests/integration/conftest.py: Ray
Tune + Optuna + ASHA + MLflow + peft on MiniLM and SST-2): what it records, registers and times,
and that the registered adapter loads with plain peft and through MLflow's pyfunc flavour."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from autopeft.registry.versions import mlflow_uris
from autopeft.study import SEARCH_PHASES

from .conftest import (
    EVAL_INTERVAL,
    MAX_STEPS,
    MODEL,
    STUDY,
    TRIALS,
    TWENTY_EVAL_INTERVAL,
    TWENTY_MAX_STEPS,
    TWENTY_TRIALS,
)

pytestmark = pytest.mark.integration


def test_one_nested_mlflow_run_per_trial_under_the_parent_run(finished_study):
    result, client = finished_study.result, finished_study.client
    experiment = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([experiment.experiment_id])
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    children = [r for r in nested if r.data.tags.get("autopeft.run_kind") == "trial"]
    assert len(children) == TRIALS == len(result.trials)
    # and the final training's, nested beside them
    trial_ids = {r.info.run_id for r in children}
    assert [r.data.tags.get("autopeft.run_kind") for r in nested if r.info.run_id not in trial_ids] == ["final_training"]
    assert all(r.info.status in {"FINISHED", "KILLED"} for r in children)
    assert {r.data.tags["autopeft.trial_id"] for r in children} == {t.trial_id for t in result.trials}
    curve = client.get_metric_history(children[0].info.run_id, "accuracy")
    assert [m.step for m in curve] == sorted(m.step for m in curve) and curve[0].step == EVAL_INTERVAL


def test_trials_stopped_early_are_pruned_in_optuna_with_their_curve_in_mlflow(finished_study):
    # (ASHA's decisions on a single-objective study, where Optuna keeps the pruned trial's
    # curve too: the next test)
    client = finished_study.client
    study = optuna.load_study(study_name=STUDY, storage=finished_study.prepared.optuna_storage)
    assert len(study.trials) == TRIALS
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    # a trial that ran all its steps still at the majority class is PRUNED in Optuna too, with why
    ran_trivial = [t for t in pruned if "ran all" in t.user_attrs.get("autopeft.pruned_reason", "")]
    stopped = [t for t in pruned if t not in ran_trivial]
    assert stopped, [t.state for t in study.trials]
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) or ran_trivial
    runs = {t.trial_id: t.run_id for t in finished_study.result.trials}
    for t in ran_trivial:
        assert client.get_run(runs[t.user_attrs["autopeft.ray_trial_id"]]).data.tags["autopeft.trivial"] == "true"
    for t in stopped:  # two objectives: Optuna keeps no intermediate values; MLflow has the curve
        curve = client.get_metric_history(runs[t.user_attrs["autopeft.ray_trial_id"]], "loss")
        assert curve and max(m.step for m in curve) < MAX_STEPS
        assert client.get_run(runs[t.user_attrs["autopeft.ray_trial_id"]]).data.tags["autopeft.outcome"] == "PRUNED"


def test_asha_stops_trials_above_the_rung_median_loss_and_optuna_keeps_their_curve(twenty_trials):
    """Single objective (TPE), ASHA on validation loss with reduction factor 2, deciding once two
    other trials have reached the rung: a stopped trial's loss was above the median of the losses
    recorded there before it, and Optuna has it as PRUNED with the curve it reported."""
    from mlflow import MlflowClient

    client = MlflowClient(twenty_trials.uri)
    runs = client.search_runs([client.get_experiment_by_name("twenty").experiment_id])
    children = [r for r in runs if r.data.tags.get("autopeft.run_kind") == "trial"]
    assert len(children) == TWENTY_TRIALS
    study = optuna.load_study(study_name="twenty", storage=twenty_trials.prepared.optuna_storage)
    assert len(study.trials) == TWENTY_TRIALS
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    # a trial that ran all its steps still at the majority class is PRUNED in Optuna too, with why
    ran_trivial = [t for t in pruned if "ran all" in t.user_attrs.get("autopeft.pruned_reason", "")]
    stopped = [t for t in pruned if t not in ran_trivial]
    assert stopped, [t.state for t in study.trials]
    reports = TWENTY_MAX_STEPS // TWENTY_EVAL_INTERVAL
    assert all(t.intermediate_values and max(t.intermediate_values) < reports for t in stopped)
    pruned_runs = [r for r in children if r.data.tags["autopeft.outcome"] == "PRUNED"]
    assert len(pruned_runs) == len(stopped)
    by_ray_id = {r.data.tags["autopeft.trial_id"]: r for r in children}
    for t in ran_trivial:
        run = by_ray_id[t.user_attrs["autopeft.ray_trial_id"]]
        assert run.data.tags["autopeft.outcome"] == "COMPLETE" and run.data.tags["autopeft.trivial"] == "true"
    losses = {r.info.run_id: {m.step: (m.timestamp, m.value) for m in client.get_metric_history(r.info.run_id, "loss")}
              for r in children}
    for run in pruned_runs:
        curve = losses[run.info.run_id]
        step = max(curve)
        at, value = curve[step]
        before = [c[step][1] for rid, c in losses.items() if rid != run.info.run_id and step in c and c[step][0] < at]
        assert len(before) >= 2 and value > float(np.median(before)), (step, value, before)


def test_the_selected_adapter_is_registered_as_candidate_and_tested(finished_study):
    result, client = finished_study.result, finished_study.client
    version = client.get_model_version_by_alias(MODEL, "candidate")
    assert str(version.version) == result.model_version
    assert version.tags["autopeft.study"] == STUDY
    assert "test_accuracy" in client.get_run(result.parent_run_id).data.metrics


def test_every_phase_is_timed_and_logged_within_the_wall_time(finished_study):
    result = finished_study.result
    parent = finished_study.client.get_run(result.parent_run_id)
    assert set(result.phase_times_s) == set(SEARCH_PHASES)
    assert result.phase_times_s["trials"] > 0 and sum(result.phase_times_s.values()) <= result.wall_time_s
    assert result.phase_times_s["final_eval"] > 0 and result.phase_times_s["finalize"] > 0  # timed apart
    for name, seconds in result.phase_times_s.items():
        assert parent.data.metrics[f"phase_{name}_s"] == pytest.approx(seconds)


def test_the_registered_adapter_loads_with_plain_peft_and_as_pyfunc(finished_study, tmp_path: Path):
    result, client, uri = finished_study.result, finished_study.client, finished_study.uri
    parent = client.get_run(result.parent_run_id)
    # the downloaded adapter loads with plain peft and reproduces the validation metric logged
    # for it (the final training's last evaluation: that adapter is the one registered)
    with mlflow_uris(uri):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL}@candidate",
                                                         dst_path=str(tmp_path / "dl"), tracking_uri=uri))
    adapter_dir = local / "artifacts" / "adapter"
    meta = json.loads((adapter_dir / "autopeft.json").read_text())
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = AutoModelForSequenceClassification.from_pretrained(
        meta["base_model"]["reference"]["location"], num_labels=2)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    validation = finished_study.prepared.raw.frames["validation"]
    correct = 0
    with torch.no_grad():
        for start in range(0, len(validation), 32):
            chunk = validation.iloc[start:start + 32]
            enc = tokenizer(chunk["sentence"].tolist(), truncation=True, max_length=meta["max_length"], padding=True,
                            return_tensors="pt")
            preds = model(**enc).logits.argmax(-1).tolist()
            labels = [meta["label_names"].index(str(v)) for v in chunk["label"]]
            correct += sum(int(p == y) for p, y in zip(preds, labels, strict=True))
    accuracy = correct / len(validation)
    logged = result.final_kept["accuracy"]  # the final training's best evaluation, whose weights are registered
    assert abs(accuracy - logged) <= 1e-6
    assert abs(parent.data.metrics["best_val_accuracy"] - logged) <= 1e-6

    # and through MLflow's pyfunc flavour, by alias
    with mlflow_uris(uri):  # as a user does with MLFLOW_TRACKING_URI set
        pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@candidate")
    out = pyfunc.predict(pd.DataFrame({"sentence": validation["sentence"].tolist()[:8]}))
    assert list(out.columns) == ["label", "score"] and len(out) == 8
