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


def test_the_job_service_address_pin_nests_in_one_thread_and_keeps_other_threads_out(monkeypatch) -> None:
    import os
    import threading

    from autopeft._compat import job_service_address_pinned

    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://before:8265")
    seen_by_other: list[str | None] = []

    def other() -> None:
        with job_service_address_pinned("http://other:8265"):
            seen_by_other.append(os.environ.get("RAY_API_SERVER_ADDRESS"))

    with job_service_address_pinned("http://outer:8265"):
        waiting = threading.Thread(target=other)
        waiting.start()
        with job_service_address_pinned("http://inner:8265"):  # the same thread: no deadlock
            assert os.environ["RAY_API_SERVER_ADDRESS"] == "http://inner:8265"
        assert os.environ["RAY_API_SERVER_ADDRESS"] == "http://outer:8265"
        waiting.join(timeout=0.2)
        assert waiting.is_alive() and not seen_by_other  # the other thread waits for the pin
    waiting.join(timeout=10)
    assert seen_by_other == ["http://other:8265"]
    assert os.environ["RAY_API_SERVER_ADDRESS"] == "http://before:8265"
