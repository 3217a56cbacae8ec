"""The training's batch order: a training that continues a trial takes the batches after the
trial's (``data_offset``), not the trial's first batches again."""

from __future__ import annotations

import torch

from autopeft.config import ModelConfig
from autopeft.engine import training
from autopeft.engine.training import StudySpec, build_adapter, train
from autopeft.tasks import get_task
from tests.tiny_tasks import tokenized_kind


def _steps_drawn(monkeypatch, task_models, tmp_path, data_offset):
    location = task_models["causal_lm"]
    _, data = tokenized_kind("causal_lm", location, tmp_path)
    spec = StudySpec(model=ModelConfig(name_or_path=location, max_length=32), location=location, task="causal_lm",
                     label_names=data.label_names, max_steps=3, eval_interval=3, eval_batch_size=8, seed=0,
                     metric=get_task("causal_lm").default_metric, mode=get_task("causal_lm").default_mode)
    config = {"adapter": "lora", "learning_rate": 1e-3, "batch_size": 2, "placement.layers": "all",
              "placement.roles": "all-linear", "lora.r": 2, "lora.alpha": 4, "lora.dropout": 0.0}
    drawn: list[int] = []
    original = training.batch_indices

    def recording(n, batch_size, step, seed):
        drawn.append(step)
        return original(n, batch_size, step, seed)

    monkeypatch.setattr(training, "batch_indices", recording)
    train(build_adapter(spec, config), spec, data, config, on_eval=lambda m, s: None, device=torch.device("cpu"),
          data_offset=data_offset)
    return drawn


def test_a_continued_training_takes_the_batches_after_the_ones_it_follows(monkeypatch, task_models, tmp_path):
    assert _steps_drawn(monkeypatch, task_models, tmp_path, 0) == [0, 1, 2]
    assert _steps_drawn(monkeypatch, task_models, tmp_path, 5) == [5, 6, 7]
