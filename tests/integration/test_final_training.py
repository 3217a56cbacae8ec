"""``budget.final_steps``: after a real search (Ray Tune + Optuna + MLflow + peft on MiniLM), the
selected config is trained again for longer, and that adapter, not the trial's, is registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from autopeft.config import resolve
from autopeft.search import prepare, run_search

from ..conftest import write_yaml

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, sst2_slice: dict[str, Path], tracking_uri: str, *, trials: int) -> Path:
    return write_yaml(tmp_path / "search.yaml", {
        "study_name": "final",
        "model": {"name_or_path": "minilm", "max_length": 48},
        "data": {"train": str(sst2_slice["train"]), "test": str(sst2_slice["test"]),
                 "text_columns": ["sentence"], "label_column": "label", "validation_fraction": 0.25},
        "space": {"adapters": {"lora": {"r": 4}}, "placement": {"layers": "last-2", "roles": ["query", "value"]},
                  "learning_rate": {"low": 1e-3, "high": 3e-3, "log": True}, "batch_size": 16},
        "budget": {"trials": trials, "max_steps": 12, "eval_interval": 6, "cpus_per_trial": 2, "final_steps": 24},
        "pruning": {"enabled": False},
        "tracking": {"uri": tracking_uri, "experiment": "final", "registered_model": "final-model"},
        "output_dir": str(tmp_path / "out"),
    })


def _registered(client: MlflowClient, result) -> tuple[dict, dict]:
    version = client.get_model_version("final-model", result.model_version)
    meta = json.loads((result.adapter_dir / "autopeft.json").read_text())
    return dict(version.tags), meta


def test_the_selected_config_is_trained_again_and_that_adapter_registered(tmp_path, sst2_slice, tracking_uri):
    result = run_search(prepare(resolve(_config(tmp_path, sst2_slice, tracking_uri, trials=1))))
    client = MlflowClient(tracking_uri)
    parent = client.get_run(result.parent_run_id)

    # trials ran their 12 steps; the final training its own 24, evaluated every 6
    assert all(t.metrics["step"] == 12 for t in result.trials)
    assert [h["step"] for h in result.final_history] == [6, 12, 18, 24]
    curve = client.get_metric_history(result.parent_run_id, "final_accuracy")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [6, 12, 18, 24]
    assert 0 < result.final_train_time_s + result.final_eval_time_s < result.phase_times_s["final_training"]
    assert parent.data.metrics["final_training_train_s"] == pytest.approx(result.final_train_time_s)
    assert parent.data.tags["autopeft.final_training_node"] == result.final_node_id != ""  # a Ray task's node
    assert not (tmp_path / "out" / "final" / "final-training").exists()  # exported, then removed

    # the registered adapter is the final training's: reloaded, it scores what that training's
    # last evaluation logged, and its metadata and version tags say so
    final_accuracy = result.final_history[-1]["accuracy"]
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(final_accuracy, abs=1e-6)
    tags, meta = _registered(client, result)
    assert tags["autopeft.final_steps"] == "24" and tags["autopeft.trial_id"] == result.best.trial_id
    assert meta["final_steps"] == 24 and meta["validation"]["accuracy"] == pytest.approx(final_accuracy)
    assert meta["params"] == result.best.params
    assert "test_accuracy" in parent.data.metrics


def test_a_final_training_that_diverges_leaves_the_trial_adapter_to_be_registered(tmp_path, sst2_slice, tracking_uri,
                                                                                 monkeypatch):
    # the final training on its own, as a Ray task on local Ray: real MiniLM, peft and MLflow; the
    # loss turns NaN at step 13, past every 12-step trial, inside the 24-step final training. The
    # fault matches LR 2e-3 only, since Ray's workers keep the environment they started with; at
    # LR 3e-3 the task raises at its start instead.
    import ray

    from autopeft.data import tokenize
    from autopeft.engine.training import StudySpec
    from autopeft.model.loading import load_tokenizer
    from autopeft.search import SearchResult, TrialSummary
    from autopeft.search.final_training import train_final_adapter

    monkeypatch.setenv("AUTOPEFT_FAULTS", json.dumps({"nan_when": {"learning_rate": 2e-3}, "nan_at_step": 13,
                                                      "raise_when": {"learning_rate": 3e-3}}))
    prepared = prepare(resolve(_config(tmp_path, sst2_slice, tracking_uri, trials=1)))
    cfg = prepared.config
    data = tokenize(prepared.raw, load_tokenizer(cfg.model, prepared.location), cfg.model.max_length,
                    tokenizer_id=prepared.location)
    spec = StudySpec(model=cfg.model, location=prepared.location, task=cfg.task.kind, label_names=data.label_names,
                     max_steps=12, eval_interval=6, eval_batch_size=64, seed=0, metric="accuracy", mode="max")
    client = MlflowClient(tracking_uri)
    parent = client.create_run(client.create_experiment("final-unit")).info.run_id
    params = {"adapter": "lora", "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0, "placement.layers": "last-2",
              "placement.roles": ["query", "value"], "learning_rate": 2e-3, "batch_size": 16}

    def select(learning_rate: float) -> SearchResult:
        best = TrialSummary(trial_id="t0", outcome="COMPLETE", params={**params, "learning_rate": learning_rate},
                            metrics={}, run_id=None)
        return SearchResult(study_name="final", parent_run_id=parent, trials=[], best=best)

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        result = select(2e-3)
        assert train_final_adapter(prepared, spec, client, data, result) is None  # _finalize then exports the trial's checkpoint
        assert "step 13" in client.get_run(parent).data.tags["autopeft.final_training_error"]
        assert result.final_history == []  # so nothing calls the trial's adapter a final training's
        # the evaluations before it diverged were logged: the curve shows where it went wrong
        assert [m.step for m in client.get_metric_history(parent, "final_accuracy")] == [6, 12]

        # a final training that crashes leaves the trial's adapter too, and says why in one line
        result = select(3e-3)
        assert train_final_adapter(prepared, spec, client, data, result) is None and result.final_history == []
        error = client.get_run(parent).data.tags["autopeft.final_training_error"]
        assert error.startswith("final training failed: InjectedFault: injected failure") and "\n" not in error

        result = select(2.5e-3)
        folder = train_final_adapter(prepared, spec, client, data, result)
    finally:
        ray.shutdown()
    assert folder is not None and (folder / "adapter_model.safetensors").is_file()
    assert [h["step"] for h in result.final_history] == [6, 12, 18, 24]
