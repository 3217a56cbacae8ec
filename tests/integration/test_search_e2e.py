"""A real search: Ray Tune + Optuna (TPE, RDB storage) + ASHA + MLflow + peft on MiniLM and SST-2."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from autopeft.config import resolve
from autopeft.registry.versions import mlflow_uris
from autopeft.search import SEARCH_PHASES, prepare, run_search

from ..conftest import write_yaml

pytestmark = pytest.mark.integration


@pytest.fixture
def search_config(tmp_path: Path, sst2_slice, tracking_uri, minilm_path) -> Path:
    return write_yaml(tmp_path / "search.yaml", {
        "study_name": "e2e",
        "model": {"name_or_path": "minilm", "max_length": 48},
        "data": {"train": str(sst2_slice["train"]), "test": str(sst2_slice["test"]),
                 "text_columns": ["sentence"], "label_column": "label", "validation_fraction": 0.25},
        "space": {
            "adapters": {"lora": {"r": {"choices": [4, 8]}}, "dora": {"r": 4}, "ia3": {}},
            "placement": {"layers": {"choices": ["all", "last-2"]}, "roles": {"choices": [["query", "value"], "all-linear"]}},
            "learning_rate": {"low": 1e-4, "high": 5e-3, "log": True},
            "batch_size": 16,
        },
        "budget": {"trials": 6, "max_steps": 48, "eval_interval": 12, "cpus_per_trial": 2},
        # rungs compare validation loss (the objective stays accuracy)
        "pruning": {"grace_period": 1, "reduction_factor": 2, "metric": "loss"},
        "tracking": {"uri": tracking_uri, "experiment": "e2e", "registered_model": "e2e-model"},
        "output_dir": str(tmp_path / "out"),
    })


def test_search_end_to_end(search_config, tracking_uri, tmp_path):
    prepared = prepare(resolve(search_config))
    result = run_search(prepared)
    client = MlflowClient(tracking_uri)

    # one nested MLflow run per trial under the study's parent run
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert len(children) == 6 == len(result.trials)
    assert all(r.info.status in {"FINISHED", "KILLED"} for r in children)
    assert {r.data.tags["autopeft.trial_id"] for r in children} == {t.trial_id for t in result.trials}
    curve = client.get_metric_history(children[0].info.run_id, "accuracy")
    assert [m.step for m in curve] == sorted(m.step for m in curve) and curve[0].step == 12

    # ASHA stopped at least one trial early, and Optuna's storage has it as PRUNED with its curve
    study = optuna.load_study(study_name="e2e", storage=prepared.optuna_storage)
    states = [t.state for t in study.trials]
    assert len(states) == 6
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, states
    assert all(t.intermediate_values and max(t.intermediate_values) < 4 for t in pruned)
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    pruned_runs = [r for r in children if r.data.tags["autopeft.outcome"] == "PRUNED"]
    assert len(pruned_runs) == len(pruned)
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

    # the best adapter is registered with alias candidate
    version = client.get_model_version_by_alias("e2e-model", "candidate")
    assert str(version.version) == result.model_version
    assert version.tags["autopeft.study"] == "e2e"
    assert "test_accuracy" in parent.data.metrics

    # where the study's time went: every phase timed, logged on the parent run, within the wall time
    assert set(result.phase_times_s) == set(SEARCH_PHASES)
    assert result.phase_times_s["trials"] > 0 and sum(result.phase_times_s.values()) <= result.wall_time_s
    assert result.phase_times_s["final_eval"] > 0 and result.phase_times_s["finalize"] > 0  # timed apart
    for name, seconds in result.phase_times_s.items():
        assert parent.data.metrics[f"phase_{name}_s"] == pytest.approx(seconds)

    # the downloaded adapter loads with plain peft and reproduces the logged validation metric
    with mlflow_uris(tracking_uri):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/e2e-model@candidate",
                                                         dst_path=str(tmp_path / "dl"), tracking_uri=tracking_uri))
    adapter_dir = local / "artifacts" / "adapter"
    meta = json.loads((adapter_dir / "autopeft.json").read_text())
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = AutoModelForSequenceClassification.from_pretrained(
        meta["base_model"]["reference"]["location"], num_labels=2)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    validation = prepared.raw.frames["validation"]
    import torch

    correct = 0
    with torch.no_grad():
        for start in range(0, len(validation), 32):
            chunk = validation.iloc[start:start + 32]
            enc = tokenizer(chunk["sentence"].tolist(), truncation=True, max_length=48, padding=True, return_tensors="pt")
            preds = model(**enc).logits.argmax(-1).tolist()
            labels = [meta["label_names"].index(str(v)) for v in chunk["label"]]
            correct += sum(int(p == y) for p, y in zip(preds, labels, strict=True))
    accuracy = correct / len(validation)
    logged = client.get_run(result.best.run_id).data.metrics["accuracy"]
    assert abs(accuracy - logged) <= 1e-6
    assert abs(parent.data.metrics["best_val_accuracy"] - logged) <= 1e-6

    # and through MLflow's pyfunc flavour, by alias
    with mlflow_uris(tracking_uri):  # as a user does with MLFLOW_TRACKING_URI set
        pyfunc = mlflow.pyfunc.load_model("models:/e2e-model@candidate")
    out = pyfunc.predict(pd.DataFrame({"sentence": validation["sentence"].tolist()[:8]}))
    assert list(out.columns) == ["label", "score"] and len(out) == 8
