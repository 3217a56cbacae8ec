"""The learning-rate calibration through the real stack (Ray, MLflow, peft on MiniLM and short
reviews one word labels): each family without a rate of its own is probed before the search, the probes are on a
nested run and in the report, and the trials sample the calibrated ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.config import resolve
from autopeft.schema import CalibrationRun, RunTag
from autopeft.study import prepare, run_search

from ..conftest import write_config

pytestmark = pytest.mark.integration

STEPS = 16
IA3_RANGE = (3e-3, 3e-2)
SHARED_RANGE = (1e-4, 1e-2)


def polar_reviews(directory: Path, rows: int = 240) -> Path:
    """Short reviews whose label one word decides: a probe of a few steps sees the loss fall at a
    good rate (on an SST-2 slice 16 probe steps stay at the majority class's loss, and the
    space's range is kept: the branch this test would then not reach)."""
    import pandas as pd

    good, bad = ["great", "wonderful", "superb", "lovely"], ["awful", "terrible", "dreadful", "boring"]
    words = [(good if i % 2 else bad)[(i // 2) % 4] for i in range(rows)]
    path = directory / "polar.csv"
    pd.DataFrame({"sentence": [f"the film was {w} , review {i}" for i, w in enumerate(words)],
                  "label": [i % 2 for i in range(rows)]}).to_csv(path, index=False)
    return path


def test_a_study_searches_the_calibrated_range_of_each_family(tmp_path: Path, tracking_uri, minilm_path, local_ray):
    config = write_config(
        tmp_path, train=polar_reviews(tmp_path), study_name="calibrated", data__validation_fraction=0.2,
        space={"adapters": {"lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                            # set by hand: kept, not probed
                            "ia3": {"learning_rate": {"low": IA3_RANGE[0], "high": IA3_RANGE[1], "log": True}}},
               "placement": {"layers": "all", "roles": ["query", "value"]},
               "learning_rate": {"low": SHARED_RANGE[0], "high": SHARED_RANGE[1], "log": True}, "batch_size": 16},
        calibration={"enabled": True, "steps": STEPS, "lr_min": 1e-4, "lr_max": 1.0},
        # LoRA's one probe (16 steps) is a quarter of the trials' 64 steps: the most it may train
        budget={"trials": 4, "max_steps": 16, "eval_interval": 16, "cpus_per_trial": 2, "eval_batch_size": 96},
        pruning={"enabled": False}, warm_start={"prior": False},
        tracking={"uri": tracking_uri, "experiment": "calibrated", "registered_model": "calibrated"})
    prepared = prepare(resolve(config))
    result = run_search(prepared)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(result.parent_run_id)
    nested = client.search_runs([parent.info.experiment_id],
                                filter_string=f"tags.`{RunTag.PARENT_RUN}` = '{result.parent_run_id}'")
    calibration = [r for r in nested if r.data.tags.get(RunTag.KIND) == CalibrationRun.KIND]
    assert len(calibration) == 1 and calibration[0].info.status == "FINISHED"
    run = calibration[0]
    params = run.data.params
    assert params[CalibrationRun.outcome("ia3")] == CalibrationRun.SET_BY_HAND
    curve = client.get_metric_history(run.info.run_id, CalibrationRun.lr("lora"))
    assert 3 < len(curve) <= STEPS and curve[0].value == pytest.approx(1e-4)
    assert client.get_metric_history(run.info.run_id, CalibrationRun.loss("lora"))
    # the probe's cost is on the study run, and is a phase of the study's wall time
    assert parent.data.metrics[CalibrationRun.WALL_TIME] > 0
    assert parent.data.metrics[CalibrationRun.STEPS_TAKEN] == len(curve)  # lora's only: ia3 was not probed
    assert 0 < result.phase_times_s["calibration"] < result.wall_time_s

    assert params[CalibrationRun.outcome("lora")] == CalibrationRun.CALIBRATED, params
    lora = (float(params[CalibrationRun.low("lora")]), float(params[CalibrationRun.high("lora")]))
    assert lora != SHARED_RANGE
    ranges = {"lora": lora, "ia3": IA3_RANGE}
    assert {t.params["adapter"] for t in result.trials} == {"lora", "ia3"}
    for trial in result.trials:
        low, high = ranges[trial.params["adapter"]]
        assert low * (1 - 1e-9) <= float(trial.params["learning_rate"]) <= high * (1 + 1e-9), trial.params
    # each family's rate is its own parameter in the Optuna study, which TPE models apart
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=prepared.optuna_storage)
    assert {name for t in study.trials for name in t.params if "learning_rate" in name} == {
        f"{t.params['adapter']}.learning_rate" for t in result.trials}

    assert result.report_path is not None
    assert "Learning-rate calibration" in Path(result.report_path).read_text()


def test_the_portfolio_keeps_its_rate_and_widens_the_calibrated_range(tmp_path: Path, tracking_uri, minilm_path,
                                                                     local_ray):
    """The probe ramps from 5e-3, so its range lies above the built-in portfolio's LoRA rate (2e-3):
    the portfolio's trial keeps its rate, the range is widened to hold it (the probe's own range on
    the calibration run), and the sampler's trials draw from the widened range."""
    import optuna
    from mlflow import MlflowClient

    from autopeft.study.warmstart import ATTR_SOURCE, PORTFOLIO_PREFIX, load_portfolio

    portfolio_lora = next(e for e in load_portfolio().entries if e.config["adapter"] == "lora")
    rate = float(portfolio_lora.config["learning_rate"])
    config = write_config(
        tmp_path, train=polar_reviews(tmp_path), study_name="widened", data__validation_fraction=0.2,
        space={"adapters": {"lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
               "placement": {"layers": "all", "roles": ["query", "value"]},
               "learning_rate": {"low": SHARED_RANGE[0], "high": SHARED_RANGE[1], "log": True}, "batch_size": 16},
        calibration={"enabled": True, "steps": STEPS, "lr_min": 5e-3, "lr_max": 1.0},
        # the probe's 16 steps are a quarter of the trials' 64, the most it may take
        budget={"trials": 4, "max_steps": 16, "eval_interval": 16, "cpus_per_trial": 2, "eval_batch_size": 96},
        pruning={"enabled": False}, warm_start={"prior": True, "prior_max_trials": 1},
        tracking={"uri": tracking_uri, "experiment": "widened", "registered_model": "widened"})
    prepared = prepare(resolve(config))
    assert rate < 5e-3 and [p.source for p in prepared.warm_start] == [f"{PORTFOLIO_PREFIX}{portfolio_lora.name}"]
    result = run_search(prepared)

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(result.parent_run_id)
    (calibration,) = [r for r in client.search_runs([parent.info.experiment_id],
                                                    filter_string=f"tags.`{RunTag.PARENT_RUN}` = '{result.parent_run_id}'")
                      if r.data.tags.get(RunTag.KIND) == CalibrationRun.KIND]
    params = calibration.data.params
    assert params[CalibrationRun.outcome("lora")] == CalibrationRun.CALIBRATED, params
    low, high = float(params[CalibrationRun.low("lora")]), float(params[CalibrationRun.high("lora")])
    assert low == pytest.approx(rate) and high > 5e-3
    assert f"for {PORTFOLIO_PREFIX}{portfolio_lora.name} at {rate:.2e}" in params[CalibrationRun.probe_range("lora")]

    study = optuna.load_study(study_name=result.study_name, storage=prepared.optuna_storage)
    rates = {t.user_attrs.get(ATTR_SOURCE, "sampler"): [] for t in study.trials}
    for t in study.trials:
        rates[t.user_attrs.get(ATTR_SOURCE, "sampler")].append(t.params["learning_rate"])
    assert rates[f"{PORTFOLIO_PREFIX}{portfolio_lora.name}"] == [pytest.approx(rate)]
    assert len(rates["sampler"]) == 3 and all(low * (1 - 1e-9) <= lr <= high * (1 + 1e-9) for lr in rates["sampler"])
