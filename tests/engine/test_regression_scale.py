"""Regression on targets far from unit scale (1000 + 50x), on a tiny random BERT built offline:
the model trains on standardised targets, and every figure or prediction users see is in the
data's units (trial metrics, a reloaded adapter, the pyfunc model, the promotion gate's
re-evaluation). An adapter folder without a target scale predicts as before: unscaled."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from autopeft.config import ModelConfig
from autopeft.engine.training import StudySpec, build_adapter, evaluate, predict, train
from autopeft.schema import AdapterMetadata, Artifact
from autopeft.tasks import get_task
from tests.tiny_tasks import tokenized_kind

CPU = torch.device("cpu")
CONFIG: dict[str, Any] = {"adapter": "lora", "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0,
                          "learning_rate": 1e-2, "placement.layers": "all", "placement.roles": "all-linear"}


@pytest.fixture
def regression(task_models, tmp_path):
    """(model folder, RawData, TokenizedData, StudySpec) of a 40-row toy regression set."""
    location = task_models["regression"]
    raw, data = tokenized_kind("regression", location, tmp_path, n=40)
    spec = StudySpec(model=ModelConfig(name_or_path=location, max_length=32), location=location, task="regression",
                     label_names=data.label_names, max_steps=1, eval_interval=1, eval_batch_size=16, seed=0,
                     metric="pearson", mode="max")
    assert data.target_scale is not None and data.target_scale.mean > 1000
    return location, raw, data, spec


def _targets(raw, split: str) -> np.ndarray:
    return raw.frames[split]["label"].to_numpy(dtype=np.float64)


def test_training_sees_standardised_targets_and_reports_metrics_in_the_data_units(regression):
    location, raw, data, spec = regression
    train_split = data.splits["train"]
    built = build_adapter(spec, CONFIG)
    seen: list[np.ndarray] = []

    def record_labels(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if module.training:  # the training step, not the evaluation or the latency probe
            seen.append(kwargs["labels"].detach().double().numpy())

    built.model.register_forward_pre_hook(record_labels, with_kwargs=True)
    reports: list[dict[str, Any]] = []
    # one step whose batch is the whole training split
    train(built, spec, data, {**CONFIG, "batch_size": len(train_split)}, on_eval=lambda m, s: reports.append(m),
          device=CPU)
    labels = np.concatenate(seen)
    assert len(labels) == len(train_split)
    assert abs(labels.mean()) < 1e-4 and labels.std() == pytest.approx(1.0, abs=1e-4)

    scale = data.target_scale
    report = reports[-1]
    outputs, _ = predict(built.model, data.splits["validation"], data.pad_token_id, batch_size=16, device=CPU)
    val_y = _targets(raw, "validation")
    # predictions near the data (a one-step model stays near the mean), not near 0
    assert abs(outputs.mean() - scale.mean) < 3 * scale.std
    assert report["mse"] == pytest.approx(np.mean((outputs.reshape(-1) - val_y) ** 2), rel=1e-4)
    # the loss stays the model's own, on standardised targets: the MSE over the train variance
    assert report["loss"] == pytest.approx(report["mse"] / scale.std**2, rel=1e-3)


def test_an_output_of_zero_is_the_train_mean(regression):
    location, raw, data, spec = regression
    built = build_adapter(spec, CONFIG)
    with torch.no_grad():  # the head answers z = 0 for every input
        for name, param in built.model.named_parameters():
            if "classifier" in name:
                param.zero_()
    scale = data.target_scale
    val = data.splits["validation"]
    outputs, _ = predict(built.model, val, data.pad_token_id, batch_size=8, device=CPU)
    np.testing.assert_allclose(outputs, scale.mean, rtol=1e-6)
    unscaled, _ = predict(built.model, dataclasses.replace(val, target_scale=None), data.pad_token_id, batch_size=8,
                          device=CPU)
    assert np.all(unscaled == 0.0)

    metrics = evaluate(built.model, val, data.pad_token_id, "regression", batch_size=8, device=CPU)
    val_y = _targets(raw, "validation")
    assert metrics["mse"] == pytest.approx(np.mean((scale.mean - val_y) ** 2), rel=1e-4)
    assert metrics["loss"] == pytest.approx(metrics["mse"] / scale.std**2, rel=1e-4)


def _saved_adapter(regression, out_dir) -> tuple[Any, AdapterMetadata]:
    """(the built adapter, its metadata), saved to ``out_dir`` as a study saves its best adapter."""
    from autopeft.engine.predictor import write_metadata

    location, raw, data, spec = regression
    built = build_adapter(spec, CONFIG)  # untrained: the random head gives varied outputs
    built.model.save_pretrained(str(out_dir))
    get_task("regression").load_preprocessor(spec.model, location).save_pretrained(str(out_dir))
    meta = AdapterMetadata(task="regression", base_model={"config": spec.model.model_dump(mode="json")},
                           text_columns=raw.text_columns, label_column=raw.label_column, max_length=32,
                           target_scale=data.target_scale)
    write_metadata(out_dir, meta)
    return built, meta


def test_a_saved_adapter_predicts_in_the_data_units_and_an_older_folder_unscaled(regression, tmp_path):
    from autopeft.engine.predictor import AdapterPredictor, read_metadata, write_metadata
    from autopeft.registry.promotion import evaluate_on
    from autopeft.registry.serving import AdapterPyfunc

    location, raw, data, spec = regression
    scale = data.target_scale
    out_dir = tmp_path / "adapter"
    built, meta = _saved_adapter(regression, out_dir)
    assert read_metadata(out_dir).target_scale == scale

    frame = raw.frames["validation"]
    val = dataclasses.replace(data.splits["validation"], target_scale=None)
    z, _ = predict(built.model, val, data.pad_token_id, batch_size=8, device=CPU)
    z = z.reshape(-1).astype(np.float64)
    assert np.ptp(z) > 0
    expected = z * scale.std + scale.mean

    predictor = AdapterPredictor.load(out_dir, device=CPU)
    np.testing.assert_allclose(predictor.predict(frame[raw.text_columns])["value"], expected, rtol=1e-5)
    pyfunc = AdapterPyfunc()  # what mlflow.pyfunc.load_model runs for the registered version
    pyfunc.load_context(SimpleNamespace(artifacts={Artifact.ADAPTER: str(out_dir)}))
    np.testing.assert_allclose(pyfunc.predict(None, frame[raw.text_columns])["value"], expected, rtol=1e-5)
    # the promotion gate's re-evaluation on a labelled file
    metrics = evaluate_on(predictor, frame)
    assert metrics["mse"] == pytest.approx(np.mean((expected - _targets(raw, "validation")) ** 2), rel=1e-4)

    # a folder saved before standardisation has no target_scale: its outputs are used as they are
    write_metadata(out_dir, dataclasses.replace(meta, target_scale=None))
    assert "target_scale" not in json.loads((out_dir / Artifact.METADATA_FILE).read_text())
    older = AdapterPredictor.load(out_dir, device=CPU)
    np.testing.assert_allclose(older.predict(frame[raw.text_columns])["value"], z, rtol=1e-5, atol=1e-6)


def test_a_merged_export_outputs_the_data_units(regression, tmp_path):
    """``autopeft export --merged``: a plain transformers model that answers in the data's units,
    as the adapter does (its head carries the scale)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from autopeft.engine.predictor import AdapterPredictor, export_merged

    location, raw, data, spec = regression
    out_dir = tmp_path / "adapter"
    _saved_adapter(regression, out_dir)
    frame = raw.frames["validation"]
    expected = AdapterPredictor.load(out_dir, device=CPU).predict(frame[raw.text_columns])["value"].to_numpy()
    assert abs(expected.mean()) > 100  # in the data's units (1000 + 50x), far from z

    merged_dir = export_merged(out_dir, tmp_path / "merged")
    model = AutoModelForSequenceClassification.from_pretrained(str(merged_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    columns = [frame[c].astype(str).tolist() for c in raw.text_columns]
    encoded = tokenizer(*columns, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        values = model(**encoded).logits.reshape(-1).double().numpy()
    np.testing.assert_allclose(values, expected, rtol=1e-4)


def test_a_head_without_bias_cannot_carry_the_mean(regression):
    from autopeft.engine.predictor import fold_target_scale
    from autopeft.errors import ModelError
    from autopeft.schema import TargetScale

    location, raw, data, spec = regression
    model = get_task("regression").load_model(spec.model, location, data.label_names)
    model.classifier.bias = None  # as a decoder's `score` layer
    with pytest.raises(ModelError, match="has no bias to carry the regression targets' mean"):
        fold_target_scale(model, TargetScale(mean=5.0, std=2.0))
    probe = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        before = model(input_ids=probe).logits
        fold_target_scale(model, TargetScale(mean=0.0, std=2.0))  # a scale alone needs no bias
        assert torch.allclose(model(input_ids=probe).logits, 2.0 * before, rtol=1e-5)
