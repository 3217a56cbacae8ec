"""The time budget's plan: a pure function of the config, the probe's timings and the data sizes."""

from __future__ import annotations

import pytest

from autopeft.auto.budget import FamilyTiming, ProbeResult, plan
from autopeft.config import resolve_mapping
from autopeft.errors import ConfigError

BASE = {
    "model": {"name_or_path": "minilm"},
    "data": {"train": "train.csv", "text_columns": ["sentence"]},
    "space": "lora-family",
}


def planned(time: str, *, step_s: float = 0.2, train_rows: int = 5000, validation_rows: int = 500,
            test_rows: int = 500, budget: dict | None = None, calibration: dict | None = None):
    resolved = resolve_mapping({**BASE, "budget": {"time": time, **(budget or {})}, "calibration": calibration or {}})
    probe = ProbeResult(timings={f: FamilyTiming(f, build_s=2.0, step_s=step_s, batch_size=32,
                                                 eval_s_per_example=0.002) for f in ("lora", "dora", "ia3")},
                        cost_s=20.0, device="cpu x2")
    return plan(resolved.config, resolved.space, probe, train_rows=train_rows, validation_rows=validation_rows,
                test_rows=test_rows)


@pytest.mark.parametrize("time", ["3m", "15m", "45m", "2h"])
def test_plan_fits_the_time(time: str) -> None:
    result = planned(time)
    budget = result.budget
    assert budget.time_s is not None
    assert result.estimated_s <= budget.time_s  # what the plan expects to take, set-up and registration included
    assert budget.max_steps % budget.eval_interval == 0 and budget.num_reports == 4
    assert budget.time_limit_s is not None and budget.time_limit_s < budget.time_s
    assert 4 <= budget.trials <= 32


def test_more_time_buys_longer_trials_and_a_final_training() -> None:
    short, long = planned("2m"), planned("1h")
    assert long.budget.max_steps > short.budget.max_steps
    assert long.budget.trials >= short.budget.trials
    assert long.budget.final_steps is not None and long.budget.final_steps >= 1.5 * long.budget.max_steps
    assert short.budget.final_steps is None
    assert short.reasons["final_steps"].startswith("off:")


def test_slower_machine_plans_fewer_steps() -> None:
    assert planned("20m", step_s=0.8).budget.max_steps < planned("20m", step_s=0.2).budget.max_steps


def test_trials_never_run_past_three_epochs() -> None:
    result = planned("2h", train_rows=400)  # a tiny data set: 3 epochs are ~50 steps at batch 24
    assert result.budget.max_steps <= 3 * 400 / 24 + result.budget.eval_interval


@pytest.mark.parametrize("train_rows", [1, 3, 4, 12])
def test_a_handful_of_rows_plans_no_final_training(train_rows: int) -> None:
    # 2 x 3 epochs of a few rows are no longer than a trial's minimal steps: the plan turns the final
    # training off and says why (it once planned final_steps = 0 and failed its own validation)
    result = planned("15m", train_rows=train_rows)
    assert result.budget.final_steps is None
    assert result.reasons["final_steps"] == f"off: 6 epochs of {train_rows} examples are no longer than a trial"


def test_fields_the_user_gave_are_kept() -> None:
    result = planned("30m", budget={"trials": 5, "eval_interval": 10})
    assert result.budget.trials == 5 and result.budget.eval_interval == 10
    assert "trials" not in result.reasons and "eval_interval" not in result.reasons
    assert "max_steps" in result.reasons


def test_large_validation_is_subsampled_for_evaluation() -> None:
    result = planned("10m", validation_rows=50_000, test_rows=300)
    assert result.max_validation_examples is not None and 500 <= result.max_validation_examples < 50_000
    assert "max_validation_examples" in result.reasons


def test_too_little_time_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"^budget.time: 1m cannot hold a study on this machine \(cpu x2\): 4 trials "
                                          r"of 40 steps need about .*; give at least that$"):
        planned("1m", step_s=0.5)


def test_same_inputs_same_plan() -> None:
    assert planned("20m").budget == planned("20m").budget


def test_the_calibration_probes_are_planned_before_the_trials() -> None:
    on, off = planned("30m"), planned("30m", calibration={"enabled": False})
    # lora and dora are probed (lora-family's ia3 sets its own rate): 2 x (build 2s + 3s + 50 steps
    # of 0.2s at batch 32, scaled to the mean batch 24)
    assert on.calibration_s == pytest.approx(2 * (2.0 + 3.0 + 50 * 0.2 * 24 / 32))
    assert off.calibration_s == 0.0 and on.calibration is None  # left as configured
    assert on.budget.time_limit_s == pytest.approx(off.budget.time_limit_s - on.calibration_s, abs=1.0)
    assert on.estimated_s <= on.budget.time_s


def test_a_budget_without_room_for_the_probes_turns_the_calibration_off() -> None:
    result = planned("3m", step_s=0.35)  # a minimal study fits, the probes beside it do not
    assert result.calibration is not None and result.calibration.enabled is False
    assert result.calibration_s == 0.0
    assert any(line.startswith("calibration.enabled = False: off: the learning-rate probes of lora, dora")
               for line in result.lines())


def test_probes_that_would_take_over_a_quarter_of_the_trials_time_are_left_out() -> None:
    from autopeft.auto.budget import CALIBRATION_MAX_SHARE

    # the probes fit beside a minimal study, but 400 steps per family (2 x 65 s) would eat half
    # of the trials' time in 10 minutes
    result = planned("10m", calibration={"steps": 400})
    assert result.calibration is not None and result.calibration.enabled is False and result.calibration_s == 0.0
    assert any(f"more than {CALIBRATION_MAX_SHARE:.0%} of the time the trials have" in line for line in result.lines())
    assert planned("30m").calibration is None  # 50 steps in 30 minutes: kept as configured


def test_a_step_budget_shortens_the_planned_trials_to_hold_a_minimal_study() -> None:
    from autopeft.auto.budget import MIN_TRIALS

    free = planned("30m")
    result = planned("30m", budget={"search_steps": 300})
    assert free.budget.max_steps > 300 // MIN_TRIALS  # without the step budget the trials are longer
    assert result.budget.max_steps <= 300 // MIN_TRIALS and result.budget.search_steps == 300
    assert result.budget.max_steps % result.budget.eval_interval == 0 and "eval_interval" in result.reasons
    assert result.reasons["max_steps"].endswith(f"budget.search_steps (300) holds {300 // result.budget.max_steps} "
                                                "full trials")
    # a step budget below a minimal trial: one trial of it, not a validation error
    tiny = planned("30m", budget={"search_steps": 11})
    assert tiny.budget.max_steps <= 11 and tiny.reasons["max_steps"].endswith("holds 1 full trial")


def test_a_step_budget_without_room_for_the_probes_plans_no_time_for_them() -> None:
    # 2,000 steps hold 3 trials of the planned length beside the probes, fewer than the 6 the
    # step rule asks for: calibrate() would step aside, so the plan keeps no seconds for it
    result, off = planned("30m", budget={"search_steps": 2000}), planned("30m", calibration={"enabled": False})
    assert result.calibration is not None and result.calibration.enabled is False and result.calibration_s == 0.0
    assert result.reasons["calibration.enabled"].startswith("off: the probes of lora, dora (100 steps) would leave "
                                                            "budget.search_steps (2000) room for 3 full trials")
    assert result.budget.time_limit_s == off.budget.time_limit_s
    # a step budget with room for them keeps them as configured
    assert planned("30m", budget={"search_steps": 20000}).calibration is None


def test_trials_the_user_gave_too_short_for_the_probes_plan_no_time_for_them() -> None:
    # 30 minutes hold the probes' seconds easily, but the 4 trials of 40 steps the user fixed
    # train 160 steps, and 2 probes of 50 would add 62% to that: calibrate() would step aside
    result = planned("30m", budget={"trials": 4, "max_steps": 40, "eval_interval": 10})
    assert result.calibration is not None and result.calibration.enabled is False and result.calibration_s == 0.0
    assert result.reasons["calibration.enabled"] == (
        "off: the probes of lora, dora (100 steps) would take more than 25% of the trials' 160 steps (4 trials of "
        "40): the space's learning-rate ranges are searched as given")
    assert planned("30m", budget={"trials": 10, "max_steps": 40, "eval_interval": 10}).calibration is None  # 100 of 400
