"""Task kinds on tiny random models built offline: the registry of kinds, each kind's metrics on
hand-made inputs and against the model's own loss, and the promise that every adapter family
claiming a kind trains on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autopeft.config import ModelConfig
from autopeft.data import IGNORE
from autopeft.engine.training import StudySpec, build_adapter
from autopeft.errors import ConfigError
from autopeft.tasks import collate, get_task, task_names
from tests.tiny_models import train_two_steps
from tests.tiny_tasks import tokenized_kind


def test_registry_knows_each_kind():
    assert set(task_names()) >= {"sequence_classification", "regression", "causal_lm", "token_classification",
                                 "image_classification"}
    assert get_task("causal_lm").peft_task_type == "CAUSAL_LM"
    assert get_task("token_classification").peft_task_type == "TOKEN_CLS"
    assert get_task("image_classification").auto_class == "AutoModelForImageClassification"
    with pytest.raises(ConfigError, match=r"task\.kind: unknown task 'ner'"):
        get_task("ner")



def test_lm_metrics_and_outputs_match_the_model_loss(task_models, tmp_path):
    metrics = get_task("causal_lm").compute_metrics(np.array([[2.0, 2.0], [4.0, 2.0]]), None)
    assert metrics["loss"] == pytest.approx(1.5) and metrics["perplexity"] == pytest.approx(math.exp(1.5))

    from transformers import AutoModelForCausalLM

    _, data = tokenized_kind("causal_lm", task_models["causal_lm"], tmp_path)
    model = AutoModelForCausalLM.from_pretrained(task_models["causal_lm"]).eval()
    split = data.splits["validation"]
    batch = collate(split, list(range(len(split))), data.pad_token_id)
    with torch.no_grad():
        out = model(**batch)
    rows = get_task("causal_lm").batch_outputs(out, batch)
    # transformers' loss: the mean over every labelled (response) token of the batch
    assert rows[:, 0].sum() / rows[:, 1].sum() == pytest.approx(float(out.loss), rel=1e-5)
    assert rows[:, 1].sum() == sum(sum(1 for t in lab[1:] if t != IGNORE) for lab in split.labels)


def test_token_metrics_count_labelled_tokens_only():
    outputs = np.empty(2, dtype=object)
    outputs[0], outputs[1] = np.array([5, 0, 1, 5]), np.array([5, 1, 1])
    labels = [[IGNORE, 0, 1, IGNORE], [IGNORE, 0, 1]]
    metrics = get_task("token_classification").compute_metrics(outputs, labels)
    assert metrics["accuracy"] == pytest.approx(0.75)
    # class 0: P=1, R=0.5 → F1 2/3; class 1: P=2/3, R=1 → F1 0.8
    assert metrics["f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_classification_metrics_on_hand_made_logits():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 2.0]])
    metrics = get_task("image_classification").compute_metrics(logits, np.array([0, 1, 1, 1]))
    assert metrics["accuracy"] == 0.75 and metrics["f1"] == pytest.approx(0.8)


@pytest.mark.parametrize("kind,model_key", [("causal_lm", "llama"), ("token_classification", "token_classification"),
                                            ("image_classification", "image_classification")])
def test_every_family_that_claims_a_kind_trains_on_it(kind, model_key, task_models, tmp_path):
    """``task_kinds`` is a promise: each family that lists the kind (and is not excluded for the
    architecture) builds and trains on it, with the loss changing."""
    from autopeft.adapters import families
    from autopeft.model.placement import scan
    from autopeft.space import ChoiceSpec, RangeSpec

    location = task_models[model_key]
    _, data = tokenized_kind(kind, location, tmp_path, n=16)
    spec = StudySpec(model=ModelConfig(name_or_path=location, max_length=32), location=location, task=kind,
                     label_names=data.label_names, max_steps=2, eval_interval=2, eval_batch_size=8, seed=0,
                     metric=get_task(kind).default_metric, mode=get_task(kind).default_mode)
    structure = scan(get_task(kind).load_model(spec.model, location, data.label_names))
    batch = collate(data.splits["train"], list(range(8)), data.pad_token_id)
    ran = []
    for name, family in sorted(families().items()):
        if kind not in family.task_kinds or family.exclusion_reason(structure):
            continue
        params = {f"{name}.{k}": (v.choices[0] if isinstance(v, ChoiceSpec) else v.low if isinstance(v, RangeSpec) else v)
                  for k, v in family.defaults.items()}
        if name == "autopeft_adapter":
            params.update({"autopeft_adapter.serial_size": 8, "autopeft_adapter.parallel_size": 8})
        built = build_adapter(spec, {"adapter": name, "placement.layers": "all", "placement.roles": "all-linear", **params})
        losses = train_two_steps(built.model, family, batch, lr=5e-2)
        assert math.isfinite(losses[1]) and losses[0] != losses[1], (name, losses)
        ran.append(name)
    assert "lora" in ran and len(ran) >= 10, ran
