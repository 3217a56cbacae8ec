"""Trivial-baseline awareness through the real stack (Ray Tune + Optuna + ASHA + MLflow + peft on
MiniLM): on a task where nothing can be learnt, every trial ends at the majority class, and the
study says so instead of ranking ties."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import make_config, write_yaml

pytestmark = pytest.mark.integration


def _labels_unrelated_to_text(path, rows: int = 96, seed: int = 0):
    """Sentences whose label is drawn independently of them, 80% one class: the best any model
    can do is the majority class."""
    rng = np.random.default_rng(seed)
    words = ["river", "stone", "window", "garden", "paper", "cloud", "engine", "violet", "harbour", "lamp"]
    sentences = [" ".join(rng.choice(words, size=6)) for _ in range(rows)]
    labels = np.where(rng.random(rows) < 0.8, "common", "rare")
    pd.DataFrame({"sentence": sentences, "label": labels}).to_csv(path, index=False)
    return path


def test_trials_that_never_leave_the_majority_class_are_tagged_and_told_as_pruned(tmp_path, minilm_path, local_ray):
    from autopeft.config import resolve
    from autopeft.report.study_report import load_study_data
    from autopeft.study import prepare, run_search

    config = make_config(
        tmp_path, train=_labels_unrelated_to_text(tmp_path / "noise.csv"), study_name="noise",
        data__validation_fraction=0.25,
        # IA3 at a learning rate that cannot move it, LoRA at a usable one: neither can learn labels
        # drawn at random, so both stay at the majority class
        space={"adapters": {"ia3": {"learning_rate": 1e-7}, "lora": {"r": 4, "learning_rate": 1e-3}},
               "batch_size": 16},
        budget={"trials": 3, "max_steps": 10, "eval_interval": 5, "cpus_per_trial": 2},
        warm_start={"prior": False},
        objective={"metric": "accuracy", "mode": "max"},
    )
    prepared = prepare(resolve(write_yaml(tmp_path / "search.yaml", config)))
    result = run_search(prepared)

    client = MlflowClient(tracking_uri=config["tracking"]["uri"])
    parent = client.get_run(result.parent_run_id)
    validation = prepared.raw.frames["validation"]
    trivial = parent.data.metrics["trivial_accuracy"]
    # the majority class's share of the validation rows
    assert trivial == pytest.approx((validation["label"] == "common").mean()) and 0.5 < trivial < 1.0
    for trial in result.trials:
        run = client.get_run(trial.run_id)
        assert run.data.tags["autopeft.trivial"] == "true", run.data.tags
        assert run.data.metrics["at_trivial"] == 1.0
        # ranked by validation loss below any trial that left the level
        assert -1e3 < run.data.metrics["rung_score"] < 0
    study = optuna.load_study(study_name="noise", storage=prepared.optuna_storage)
    assert len(study.trials) == 3
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert trial.user_attrs["autopeft.pruned_reason"].startswith("still at the trivial predictor's level")
        assert trial.intermediate_values and all(v < 0 for v in trial.intermediate_values.values())

    data = load_study_data(client, "noise")
    assert data.trivial_value == pytest.approx(trivial)
    assert data.trivial_name == "majority class"
    assert list(data.trials["trivial"]) == [True, True, True]
