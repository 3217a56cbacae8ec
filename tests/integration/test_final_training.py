"""``budget.final_steps``: after a real search (Ray Tune + Optuna + MLflow + peft on MiniLM), the
selected config is trained again for longer, and that adapter (at its best evaluation), not the
trial's, is registered; a final training that diverges, crashes or never reaches the trial's
score leaves the trial's adapter to be registered."""

from __future__ import annotations

import dataclasses
import html
import json

import pytest
from mlflow import MlflowClient

from autopeft.config import resolve
from autopeft.registry.versions import Registry
from autopeft.study import prepare

from ..conftest import write_config
from .conftest import EVAL_INTERVAL, FINAL_STEPS, MAX_STEPS, MODEL

pytestmark = pytest.mark.integration


def test_the_selected_config_is_trained_again_and_that_adapter_registered(finished_study):
    # the session's finished study: trials of MAX_STEPS, a final training of FINAL_STEPS (longer)
    result, client = finished_study.result, finished_study.client
    parent = client.get_run(result.parent_run_id)
    final_steps = list(range(EVAL_INTERVAL, FINAL_STEPS + 1, EVAL_INTERVAL))
    assert FINAL_STEPS > MAX_STEPS

    # trials that ran to their end ran their MAX_STEPS; the final training its own FINAL_STEPS,
    # evaluated every EVAL_INTERVAL
    complete = [t for t in result.trials if t.outcome == "COMPLETE"]
    assert complete and all(t.metrics["step"] == MAX_STEPS for t in complete)
    assert [h["step"] for h in result.final_history] == final_steps
    curve = client.get_metric_history(result.parent_run_id, "final_accuracy")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == final_steps
    assert 0 < result.final_train_time_s + result.final_eval_time_s < result.phase_times_s["final_training"]
    assert parent.data.metrics["final_training_train_s"] == pytest.approx(result.final_train_time_s)
    assert parent.data.tags["autopeft.final_training_node"] == result.final_node_id != ""  # a Ray task's node
    prepared = finished_study.prepared
    assert not (prepared.output_dir / prepared.study_name / "final-training").exists()  # exported, then removed
    # it continued the selected trial's adapter (budget.final_from's default), and says so
    started = f"trial {result.best.trial_id}'s adapter, at 0.5 times its learning rate"  # budget.final_lr_scale
    assert result.final_start == started == parent.data.tags["autopeft.final_training_start"]
    # its run's parameters are what it trained with: the trial's config at half its learning rate
    trained = client.get_run(result.final_run_id).data.params
    assert float(trained["learning_rate"]) == pytest.approx(0.5 * result.best.params["learning_rate"])
    assert trained["adapter"] == result.best.params["adapter"]

    # the registered adapter is the final training's, at its best evaluation (the first of the
    # best, whatever its step): reloaded, it scores what that evaluation logged, and its metadata
    # and version tags say so
    accuracies = [h["accuracy"] for h in result.final_history]
    kept_step = final_steps[accuracies.index(max(accuracies))]
    assert result.final_kept_step == kept_step == parent.data.metrics["final_training_kept_step"]
    final_accuracy = result.final_kept["accuracy"]
    assert final_accuracy == max(accuracies)
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(final_accuracy, abs=1e-6)
    # and the study run's note says which of its evaluations that is
    note = parent.data.tags["mlflow.note.content"]
    assert f"the weights of its best evaluation, at step {kept_step}, are registered" in note
    assert f"trained for {FINAL_STEPS} more steps from {started}" in note
    assert html.escape(f"trained on from {started} before registration") in result.report_path.read_text()
    lineage = Registry.open(finished_study.uri).lineage(client.get_model_version(MODEL, result.model_version))
    meta = json.loads((result.adapter_dir / "autopeft.json").read_text())
    assert lineage.final_steps == FINAL_STEPS and lineage.trial_id == result.best.trial_id
    assert meta["final_steps"] == FINAL_STEPS and meta["validation"]["accuracy"] == pytest.approx(final_accuracy)
    assert meta["params"] == result.best.params
    assert "test_accuracy" in parent.data.metrics


PARAMS = {"adapter": "lora", "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0, "placement.layers": "last-2",
          "placement.roles": ["query", "value"], "learning_rate": 2e-3, "batch_size": 16}


def _final_training_setup(tmp_path, sst2_slice, tracking_uri):
    """A prepared 12-step study on an SST-2 slice with a 24-step final training, its tokenized
    data, its trials' spec, a client and a parent run: what ``train_final_adapter`` takes."""
    from autopeft.engine.training import StudySpec
    from autopeft.model.loading import load_tokenizer
    from autopeft.tasks import tokenize

    prepared = prepare(resolve(write_config(
        tmp_path, train=sst2_slice["train"], study_name="final",
        space={"adapters": {"lora": {"r": 4}}, "placement": {"layers": "last-2", "roles": ["query", "value"]},
               "learning_rate": {"low": 1e-3, "high": 3e-3, "log": True}, "batch_size": 16},
        budget={"trials": 1, "max_steps": 12, "eval_interval": 6, "cpus_per_trial": 2, "final_steps": 24},
        tracking={"uri": tracking_uri, "experiment": "final", "registered_model": "final-model"})))
    cfg = prepared.config
    data = tokenize(prepared.raw, load_tokenizer(cfg.model, prepared.location), cfg.model.max_length,
                    tokenizer_id=prepared.location)
    spec = StudySpec(model=cfg.model, location=prepared.location, task=cfg.task.kind, label_names=data.label_names,
                     max_steps=12, eval_interval=6, eval_batch_size=64, seed=0, metric="accuracy", mode="max",
                     faults=prepared.faults)
    client = MlflowClient(tracking_uri)
    parent = client.create_run(client.create_experiment("final-unit")).info.run_id
    return prepared, data, spec, client, parent


def test_the_final_training_continues_the_trial_adapter_unless_told_to_start_over(tmp_path, sst2_slice, tracking_uri,
                                                                                   minilm_path, local_ray):
    # a real 12-step trial saved as a trial saves its checkpoint, then the final training as a Ray
    # task at a rate too small to move any weight: continued, it registers the trial's weights
    # (LoRA's B, zero at its initialisation, is the trial's); from the initialisation
    # (budget.final_from: init), B is still zero
    import torch
    from ray import tune
    from safetensors.torch import load_file

    from autopeft.engine.training import build_adapter, checkpoint_step, save_checkpoint, train
    from autopeft.study import SearchResult, TrialSummary
    from autopeft.study.final_training import final_start, train_final_adapter

    prepared, data, spec, client, parent = _final_training_setup(tmp_path, sst2_slice, tracking_uri)
    built = build_adapter(spec, PARAMS)
    state = train(built, spec, data, PARAMS, on_eval=lambda m, s: None, device=torch.device("cpu"))
    save_checkpoint(built, state, tmp_path / "trial")
    assert checkpoint_step(tmp_path / "trial") == spec.max_steps  # the continued training's batches start there
    checkpoint = tune.Checkpoint.from_directory(tmp_path / "trial")
    trial_b = {k: v for k, v in load_file(tmp_path / "trial" / "adapter_model.safetensors").items() if "lora_B" in k}
    assert trial_b and all(v.abs().max() > 0 for v in trial_b.values())

    def final_b(prepared, parent: str) -> dict[str, torch.Tensor]:
        best = TrialSummary(trial_id="t0", outcome="COMPLETE", params={**PARAMS, "learning_rate": 1e-12}, metrics={},
                            run_id=None)
        result = SearchResult(study_name="final", parent_run_id=parent, trials=[], best=best)
        folder = train_final_adapter(prepared, spec, client, data, result, checkpoint)
        assert folder is not None
        assert client.get_run(parent).data.tags["autopeft.final_training_start"] == result.final_start
        weights = load_file(folder / "adapter_model.safetensors")
        return {k: weights[k] for k in trial_b}

    continued = final_b(prepared, parent)
    assert all(torch.allclose(continued[k], trial_b[k], atol=1e-6) for k in trial_b)
    assert client.get_run(parent).data.tags["autopeft.final_training_start"] == (
        "trial t0's adapter, at 0.5 times its learning rate")

    budget = prepared.config.budget.model_copy(update={"final_from": "init"})
    resolved = prepared.resolved.model_copy(update={"config": prepared.config.model_copy(update={"budget": budget})})
    restarted_prepared = dataclasses.replace(prepared, resolved=resolved)
    other = client.create_run(client.get_run(parent).info.experiment_id).info.run_id
    restarted = final_b(restarted_prepared, other)
    assert all(v.abs().max() < 1e-6 for v in restarted.values())
    assert client.get_run(other).data.tags["autopeft.final_training_start"] == (
        "initialisation (budget.final_from: init)")

    # AdaLoRA's rank budget runs on a schedule of its own: its final training starts over
    adalora = SearchResult(study_name="final", parent_run_id=parent, trials=[], best=TrialSummary(
        trial_id="t1", outcome="COMPLETE", params={"adapter": "adalora", "learning_rate": 1e-3}, metrics={},
        run_id=None))
    start, said = final_start(prepared, adalora, checkpoint)
    assert start is None and said.startswith("initialisation (adalora's training follows a schedule of its own")


def test_a_final_training_that_diverges_or_ends_worse_leaves_the_trial_adapter(tmp_path, sst2_slice, tracking_uri,
                                                                                 minilm_path, monkeypatch, local_ray):
    # the final training on its own, as a Ray task on local Ray: real MiniLM, peft and MLflow; the
    # loss turns NaN at step 13, past every 12-step trial, inside the 24-step final training. The
    # fault plan (read when the study is prepared) matches LR 2e-3 only; at LR 3e-3 the task
    # raises at its start instead.
    from autopeft.study import SearchResult, TrialSummary
    from autopeft.study.final_training import train_final_adapter

    monkeypatch.setenv("AUTOPEFT_FAULTS", json.dumps({"nan_when": {"learning_rate": 2e-3}, "nan_at_step": 13,
                                                      "raise_when": {"learning_rate": 3e-3}}))
    prepared, data, spec, client, parent = _final_training_setup(tmp_path, sst2_slice, tracking_uri)
    assert prepared.faults is not None
    params = PARAMS

    def select(learning_rate: float) -> SearchResult:
        best = TrialSummary(trial_id="t0", outcome="COMPLETE", params={**params, "learning_rate": learning_rate},
                            metrics={}, run_id=None)
        return SearchResult(study_name="final", parent_run_id=parent, trials=[], best=best)

    result = select(2e-3)
    assert train_final_adapter(prepared, spec, client, data, result) is None  # the trial's checkpoint is exported then
    assert "step 13" in client.get_run(parent).data.tags["autopeft.final_training_error"]
    assert result.final_history == []  # so nothing calls the trial's adapter a final training's
    # the evaluations before it diverged were logged: the curve shows where it went wrong
    assert [m.step for m in client.get_metric_history(parent, "final_accuracy")] == [6, 12]

    # a final training that crashes leaves the trial's adapter too, and says why in one line
    result = select(3e-3)
    assert train_final_adapter(prepared, spec, client, data, result) is None and result.final_history == []
    error = client.get_run(parent).data.tags["autopeft.final_training_error"]
    assert error.startswith("final training failed: InjectedFault: injected failure") and "\n" not in error

    parent = client.create_run(client.get_run(parent).info.experiment_id).info.run_id  # a run without those tags
    result = select(2.5e-3)
    folder = train_final_adapter(prepared, spec, client, data, result)
    assert folder is not None and (folder / "adapter_model.safetensors").is_file()
    assert [h["step"] for h in result.final_history] == [6, 12, 18, 24]
    final_best, kept_step = result.final_kept["accuracy"], result.final_kept_step
    assert "autopeft.final_training_error" not in client.get_run(parent).data.tags

    # a final training whose best evaluation is worse than the selected trial's own leaves the
    # trial's adapter: the longer training is no reason to register a worse adapter
    parent = client.create_run(client.get_run(parent).info.experiment_id).info.run_id
    result = select(2.5e-3)
    result.best.metrics["accuracy"] = 1.0  # no 24-step training on this slice reaches it
    assert final_best < 1.0
    assert train_final_adapter(prepared, spec, client, data, result) is None and result.final_history == []
    error = client.get_run(parent).data.tags["autopeft.final_training_error"]
    assert result.final_training_error == error  # for the study run's note
    # the same seed trains the same curve, so the message names the first run's best
    assert error == (f"the final training's best validation accuracy {final_best:.4f} (step {kept_step}) is "
                     "worse than the selected trial's 1.0000")
