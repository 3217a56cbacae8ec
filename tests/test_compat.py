"""The private names of dependencies that ``autopeft._compat`` reaches into still exist and mean
what the helpers say (an upgrade that moves one fails here, by name)."""

from __future__ import annotations

import torch

from autopeft._compat import trainer_search_trial
from tests.tiny_models import tiny_model


def test_a_trainer_callback_sees_the_optuna_trial_of_a_hyperparameter_search(tmp_path) -> None:
    import optuna
    from transformers import Trainer, TrainerCallback, TrainingArguments

    rows = [{"input_ids": torch.tensor([1, 5, 6, 2]), "labels": i % 2} for i in range(8)]
    seen: list[object] = []

    class Spy(TrainerCallback):
        def on_evaluate(self, args, state, control, **kw) -> None:  # type: ignore[no-untyped-def]
            seen.append(trainer_search_trial(trainer))

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, report_to="none",
                             use_cpu=True, eval_strategy="no", save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model_init=lambda trial: tiny_model("bert"), args=args, train_dataset=rows, eval_dataset=rows,
                      callbacks=[Spy()])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trainer.hyperparameter_search(hp_space=lambda t: {"learning_rate": t.suggest_float("learning_rate", 1e-4, 1e-3)},
                                  compute_objective=lambda m: m["eval_loss"], n_trials=1, backend="optuna")
    assert len(seen) == 1 and isinstance(seen[0], optuna.Trial)
