"""``BestWeights``: a training ends on the weights of its best evaluation, not its last. On tiny
random models with real peft adapters: the weights restored are those of the best evaluation (the
model's outputs, and the adapter saved and reloaded, match that evaluation's), in either mode; a
worse, missing or NaN value never replaces the kept one; and AdaLoRA, which rewrites its peft
config while training, saves the rank pattern of the kept weights, not of the last step."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from peft import get_peft_model

from autopeft.adapters import families, load_adapter
from autopeft.engine.training import BestWeights
from tests.adapters.test_families import _params, _target
from tests.tiny_models import inputs_for, tiny_model


def _adapter(name: str, params: dict, max_steps: int = 8):
    family = families()[name]
    base = tiny_model("bert")
    return family, get_peft_model(base, family.build({**_params(name), **params}, _target(base, family, max_steps)))


def _train(model, family, batch, steps: range, lr: float = 5e-2) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for step in steps:
        model(**batch).loss.backward()
        optimizer.step()
        if family.on_step is not None:
            family.on_step(model, step)
        optimizer.zero_grad()


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = model(**batch).logits.clone()
    model.train()
    return out


def test_the_best_evaluation_is_restored_and_saved_not_the_last(tmp_path):
    family, model = _adapter("lora", {"r": 4, "alpha": 8, "dropout": 0.0})
    batch = inputs_for("bert")
    best = BestWeights("accuracy", "max")
    best.restore(model)  # nothing kept yet: a no-op
    assert best.step is None

    _train(model, family, batch, range(1, 3))
    assert best.offer(model, {"accuracy": 0.7}, 2)
    at_best = _logits(model, batch)
    _train(model, family, batch, range(3, 7))
    # a worse evaluation, one without the metric and a NaN one are not kept
    assert not best.offer(model, {"accuracy": 0.6}, 4)
    assert not best.offer(model, {"loss": 0.1}, 5)
    assert not best.offer(model, {"accuracy": math.nan}, 6)
    at_last = _logits(model, batch)
    assert not torch.allclose(at_last, at_best)  # training moved the weights since the kept evaluation

    best.restore(model)
    assert best.step == 2 and best.value == 0.7
    torch.testing.assert_close(_logits(model, batch), at_best)
    model.save_pretrained(str(tmp_path))
    reloaded = load_adapter(tiny_model("bert"), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, at_best, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("mode", "values", "kept"), [
    ("max", [0.5, 0.8, 0.8, 0.7], 2),   # a tie keeps the earlier evaluation
    ("min", [0.9, 0.4, 0.6, 0.3], 4),
])
def test_the_objectives_mode_decides_which_evaluation_is_best(mode, values, kept):
    family, model = _adapter("lora", {"r": 4, "alpha": 8, "dropout": 0.0})
    best = BestWeights("loss", mode)
    for step, value in enumerate(values, start=1):
        best.offer(model, {"loss": value}, step)
    assert best.step == kept and best.value == values[kept - 1]


def test_adalora_saves_the_rank_pattern_of_the_kept_weights(tmp_path):
    # 8 steps: AdaLoRA rewrites rank_pattern in the peft config (and masks ranks) at each step
    # of its budgeting, down to target_r at its final allocation; the kept evaluation is before that
    family, model = _adapter("adalora", {"init_r": 4, "target_r": 1, "warmup_share": 0.0, "final_share": 0.5})
    batch = inputs_for("bert")
    best = BestWeights("accuracy", "max")
    _train(model, family, batch, range(1, 3))
    best.offer(model, {"accuracy": 0.9}, 2)
    at_best = _logits(model, batch)
    pattern_at_best = copy.deepcopy(model.peft_config["default"].rank_pattern)
    _train(model, family, batch, range(3, 9))
    assert model.peft_config["default"].rank_pattern != pattern_at_best  # the last step's allocation

    best.restore(model)
    assert model.peft_config["default"].rank_pattern == pattern_at_best
    model.save_pretrained(str(tmp_path))
    reloaded = load_adapter(tiny_model("bert"), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, at_best, atol=1e-5, rtol=1e-4)
