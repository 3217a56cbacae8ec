"""``budget.time`` in a config file: the probe runs on this machine (real training steps on a tiny
BERT), the plan fills the budget fields the file left open, and a second run reads the cache."""

from __future__ import annotations

from pathlib import Path

from autopeft.auto.flow import prepare_request
from tests.conftest import write_config


def test_time_budget_in_a_config_file(task_models: dict[str, str], tmp_path: Path) -> None:
    path = write_config(tmp_path, model={"name_or_path": task_models["token_classification"], "max_length": 16},
                        space={"adapters": {"lora": {"r": 4}, "ia3": {}}, "batch_size": 8},
                        budget={"time": "10m", "cpus_per_trial": 1, "trials": 6})
    said: list[str] = []
    prepared = prepare_request(config=path, say=said.append)
    budget = prepared.config.budget
    assert budget.trials == 6  # given in the file: kept
    assert budget.max_steps >= 40 and budget.max_steps % budget.eval_interval == 0
    assert budget.time_limit_s is not None and budget.time_limit_s < 600
    notes = prepared.resolved.notes
    assert {"budget.max_steps", "budget.eval_interval", "budget.time_limit_s", "budget.final_steps"} <= set(notes)
    assert "budget.trials" not in notes
    assert any(line.startswith("probe (") and "lora " in line and "ia3 " in line for line in said), said
    assert list((tmp_path / "out" / "cache").glob("probe-*.json"))

    again: list[str] = []
    replanned = prepare_request(config=path, say=again.append)
    assert any(line.startswith("probe (cached") for line in again), again
    assert replanned.config.budget == budget  # same machine, same data: the same plan
    # what a study logs (config.yaml) carries the plan's reasons as comments
    assert "# 4 evaluations per trial" in replanned.resolved.to_yaml()
