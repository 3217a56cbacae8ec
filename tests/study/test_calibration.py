"""The calibration's half in the study (no Ray): which families are probed, the space rewritten
with their ranges (a family's hand-set rate kept), the config a family is probed with, and what
the driver records in MLflow and the report draws from it."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import optuna
import pytest

from autopeft.config import BudgetConfig, CalibrationConfig
from autopeft.engine.calibration import LrCurve, LrRange, lr_schedule
from autopeft.schema import Artifact, CalibrationRun, RunTag
from autopeft.space import RangeSpec, config_names, load_space
from autopeft.study.calibration import (
    FamilyCalibration,
    calibrated_space,
    families_to_calibrate,
    probe_config,
    record,
    step_aside_reason,
    warn_outside,
)
from autopeft.study.define_by_run import compile_space

SPACE = {
    "adapters": {"lora": {"r": {"choices": [4, 8, 16]}}, "ia3": {"learning_rate": {"low": 3e-3, "high": 3e-2, "log": True}}},
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": {"choices": [16, 32]},
}
ON = CalibrationConfig()


def test_a_family_that_sets_its_own_rate_is_not_probed() -> None:
    assert families_to_calibrate(load_space(SPACE), ON) == (["lora"], None)
    assert families_to_calibrate(load_space({**SPACE, "adapters": ["lora", "ia3"]}), ON) == (["lora", "ia3"], None)


@pytest.mark.parametrize("change", [{"learning_rate": 3e-4}, {"calibration": False}])
def test_nothing_is_probed_when_off_or_when_one_rate_is_fixed_for_all(change: dict) -> None:
    space = load_space({**SPACE, **{k: v for k, v in change.items() if k != "calibration"}})
    settings = CalibrationConfig(enabled=change.get("calibration", True))
    assert families_to_calibrate(space, settings) == ([], None)


@pytest.mark.parametrize("shared", [{"choices": [1e-3, 1e-2]}, {"low": 1e-4, "high": 1e-2}])
def test_a_shared_rate_that_is_not_a_log_range_stops_the_calibration_with_a_reason(shared: dict) -> None:
    # the calibration writes log ranges: a shared rate given in another form is the user's choice
    space = load_space({**SPACE, "learning_rate": shared, "adapters": {"lora": {}, "ia3": {"learning_rate": 1e-2}}})
    families, reason = families_to_calibrate(space, ON)
    assert families == [] and reason is not None and reason.startswith("space.learning_rate is not a log range")


def test_the_probes_step_aside_when_a_step_budget_would_keep_fewer_than_six_full_trials() -> None:
    families = ["lora", "dora"]
    # the bench's SST-2 search: 400 steps for trials of 100; 2 probes of 50 would leave 3 trials
    reason = step_aside_reason(BudgetConfig(search_steps=400, max_steps=100), families, ON)
    assert reason == ("the probes of lora, dora (100 steps) would leave budget.search_steps (400) room for 3 full "
                      "trials of 100 steps, fewer than 6: the space's learning-rate ranges are searched as given")
    assert step_aside_reason(BudgetConfig(search_steps=700, max_steps=100), families, ON) is None  # 6 trials left
    assert step_aside_reason(BudgetConfig(search_steps=699, max_steps=100), families, ON) is not None
    # shorter probes fit where longer ones do not
    assert step_aside_reason(BudgetConfig(search_steps=650, max_steps=100), families, CalibrationConfig(steps=20)) is None
    # probes longer than the whole budget: no trial would be left
    assert "room for 0 full trials" in step_aside_reason(BudgetConfig(search_steps=100, max_steps=100), families, ON)
    # no step budget: the probes' steps come on top of the trials (next test); nothing to probe: nothing to say
    assert step_aside_reason(BudgetConfig(trials=10, max_steps=100), families, ON) is None
    assert step_aside_reason(BudgetConfig(search_steps=400, max_steps=100), [], ON) is None


def test_on_top_of_a_count_of_trials_the_probes_step_aside_past_a_quarter_of_the_trials_steps() -> None:
    families = ["lora", "dora"]  # 2 probes of 50 steps
    assert step_aside_reason(BudgetConfig(trials=4, max_steps=100), families, ON) is None  # 100 of 400 steps
    assert step_aside_reason(BudgetConfig(trials=3, max_steps=100), families, ON) is not None  # 100 of 300
    # a smoke study: the probes alone would train six times what its trials do
    reason = step_aside_reason(BudgetConfig(trials=2, max_steps=8, eval_interval=4), families, ON)
    assert reason == ("the probes of lora, dora (100 steps) would take more than 25% of the trials' 16 steps (2 trials "
                      "of 8): the space's learning-rate ranges are searched as given")
    # shorter probes fit where longer ones do not: 10 trials of 20 steps hold 2 probes of 20, not of 50
    short_trials = BudgetConfig(trials=10, max_steps=20, eval_interval=10)
    assert step_aside_reason(short_trials, families, CalibrationConfig(steps=20)) is None
    assert step_aside_reason(short_trials, families, ON) is not None


def test_the_calibrated_family_samples_its_range_and_the_hand_set_one_keeps_its_own() -> None:
    space = load_space(SPACE)
    out = calibrated_space(space, {"lora": LrRange(low=2e-4, high=6e-3, suggested=2e-3)})
    assert out.adapters["lora"]["learning_rate"] == RangeSpec(low=2e-4, high=6e-3, log=True)
    assert out.adapters["lora"]["r"] == space.adapters["lora"]["r"]  # the family's own parameters stay
    assert out.adapters["ia3"] == space.adapters["ia3"]
    assert "learning_rate" not in space.adapters["lora"]  # the space given is not changed
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampled: dict[str, list[float]] = {"lora": [], "ia3": []}
    for _ in range(40):
        trial = study.ask()
        config = config_names({**compile_space(out)(trial), **trial.params})
        sampled[config["adapter"]].append(config["learning_rate"])
        study.tell(trial, 0.0)
    assert sampled["lora"] and all(2e-4 <= lr <= 6e-3 for lr in sampled["lora"])
    assert sampled["ia3"] and all(3e-3 <= lr <= 3e-2 for lr in sampled["ia3"])


def test_a_family_is_probed_at_the_middle_of_the_space() -> None:
    config = probe_config(load_space({**SPACE, "warmup_ratio": {"low": 0.0, "high": 0.1}}), "lora")
    assert config["adapter"] == "lora" and config["lora.r"] == 8 and config["batch_size"] == 16
    assert config["warmup_ratio"] == pytest.approx(0.05)


def _results() -> list[FamilyCalibration]:
    lrs = [float(v) for v in lr_schedule(1e-6, 1.0, 7)]
    losses = [0.7, 0.7, 0.69, 0.6, 0.4, 0.5, float("nan")]
    return [FamilyCalibration("lora", {}, LrCurve(lrs=lrs, losses=losses, stopped="non-finite", wall_s=1.5),
                              LrRange(low=1e-3, high=1e-2, suggested=5e-3), CalibrationRun.CALIBRATED),
            FamilyCalibration("dora", {}, LrCurve(lrs=lrs, losses=[0.7] * 7, wall_s=1.0), None, CalibrationRun.KEPT)]


def test_the_probes_are_recorded_on_a_nested_run_and_drawn_in_the_report(tracking_uri: str) -> None:
    from mlflow import MlflowClient

    from autopeft.report.sections import calibration_figures, calibration_probes

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment("calibration")
    parent = client.create_run(experiment_id, run_name="study")
    study = SimpleNamespace(client=client, parent_id=parent.info.run_id, experiment_id=experiment_id)
    prepared = SimpleNamespace(study_name="study", config=SimpleNamespace(calibration=ON))
    space = load_space({**SPACE, "adapters": {"lora": {}, "dora": {}, "ia3": SPACE["adapters"]["ia3"]}})
    calibrated = calibrated_space(space, {"lora": LrRange(low=1e-3, high=1e-2, suggested=5e-3)})
    note = "the probe's range 2.00e-03..1.00e-02 widened to 1.00e-03..1.00e-02 for portfolio:x at 1.00e-03"
    results = [dataclasses.replace(r, note=note) if r.family == "lora" else r for r in _results()]
    run_id = record(prepared, study, results, calibrated, wall_s=4.0)  # type: ignore[arg-type]

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[RunTag.PARENT_RUN] == parent.info.run_id and run.data.tags[RunTag.KIND] == "calibration"
    params = run.data.params
    assert params["lora.outcome"] == "calibrated" and float(params["lora.lr_low"]) == 1e-3
    assert params[CalibrationRun.probe_range("lora")] == note
    assert params["dora.outcome"] == "kept the space's range (loss never fell)" and "dora.lr_low" not in params
    assert CalibrationRun.probe_range("dora") not in params
    assert params["ia3.outcome"] == CalibrationRun.SET_BY_HAND
    assert params["lora.stopped"] == "non-finite" and params["steps"] == "50"
    lrs = client.get_metric_history(run_id, CalibrationRun.lr("lora"))
    losses = client.get_metric_history(run_id, CalibrationRun.loss("lora"))
    assert [m.step for m in lrs] == list(range(7)) and [m.step for m in losses] == list(range(6))  # NaN left out
    assert client.get_run(parent.info.run_id).data.metrics[CalibrationRun.WALL_TIME] == 4.0
    searched = client.download_artifacts(parent.info.run_id, Artifact.SPACE, str(tracking_uri.rsplit("/", 1)[0][10:]))
    assert "0.001" in open(searched).read()  # the study's space.json is the space searched

    data = SimpleNamespace(parent_run_id=parent.info.run_id)
    probes = {p.family: p for p in calibration_probes(client, parent.info.run_id)}
    assert set(probes) == {"lora", "dora", "ia3"}
    assert probes["lora"].low == 1e-3 and probes["lora"].losses[-1] is None and len(probes["lora"].lrs) == 7
    figure = calibration_figures(client, data)["calibration"]  # type: ignore[arg-type]
    assert figure.layout.xaxis.type == "log"
    assert any(t.name == "lora range 1.0e-03..1.0e-02" for t in figure.data)
    assert "ia3: set in the space" in figure.layout.title.text


def test_a_study_without_calibration_has_no_figure(tracking_uri: str) -> None:
    from mlflow import MlflowClient

    from autopeft.report.sections import calibration_figures

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.create_run(client.create_experiment("plain"), run_name="study")
    assert calibration_figures(client, SimpleNamespace(parent_run_id=parent.info.run_id)) == {}  # type: ignore[arg-type]


def test_the_portfolio_keeps_its_rate_and_widens_its_familys_range_and_the_users_configs_do_not(caplog) -> None:
    from autopeft.study.calibration import widen_to_portfolio
    from autopeft.study.warmstart import WarmPoint

    space = load_space(SPACE)
    probe = LrRange(low=1e-3, high=1e-2, suggested=5e-3)
    points = [WarmPoint({"adapter": "lora", "lora.r": 8, "learning_rate": 5e-4}, "portfolio:lora-all-linear"),
              WarmPoint({"adapter": "lora", "lora.r": 16, "learning_rate": 3e-2}, "portfolio:lora-top-attention"),
              WarmPoint({"adapter": "lora", "lora.r": 4, "learning_rate": 2e-3}, "portfolio:lora-qv"),  # inside
              WarmPoint({"adapter": "lora", "lora.r": 4, "learning_rate": 2e-4}, "study:earlier"),  # the user's
              WarmPoint({"adapter": "ia3", "learning_rate": 1e-2}, "portfolio:ia3-all-linear")]  # not calibrated
    ranges, widened = widen_to_portfolio({"lora": probe}, points, space)
    assert (ranges["lora"].low, ranges["lora"].high, ranges["lora"].suggested) == (5e-4, 3e-2, 5e-3)
    assert set(ranges) == {"lora"} and set(widened) == {"lora"}
    assert widened["lora"] == ("the probe's range 1.00e-03..1.00e-02 widened to 5.00e-04..3.00e-02 for "
                               "portfolio:lora-all-linear at 5.00e-04, portfolio:lora-top-attention at 3.00e-02")
    # nothing outside: nothing widened, the probe's range is searched as found
    assert widen_to_portfolio({"lora": probe}, points[2:4], space) == ({"lora": probe}, {})

    with caplog.at_level("WARNING", logger="autopeft"):
        warn_outside(points, ranges, space)
    assert [r.getMessage().split()[3] for r in caplog.records] == ["study:earlier"]


def test_a_resumed_study_reports_why_its_first_run_stepped_aside(tracking_uri: str) -> None:
    import dataclasses

    from mlflow import MlflowClient

    from autopeft.study.calibration import calibrate

    @dataclasses.dataclass
    class _Prepared:  # the fields calibrate reads of a Prepared
        config: SimpleNamespace
        resolved: SimpleNamespace
        calibration_skipped: str | None = None

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.create_run(client.create_experiment("resumed"), run_name="study")
    config = SimpleNamespace(calibration=ON, budget=BudgetConfig(max_steps=100, search_steps=400))
    prepared = _Prepared(config, SimpleNamespace(space=load_space(SPACE)))
    first = calibrate(prepared, SimpleNamespace(client=client, parent_id=parent.info.run_id, resumed=False),  # type: ignore[arg-type]
                      None, None)  # type: ignore[arg-type]  # steps aside before it needs the spec or the data
    assert first.calibration_skipped is not None and first.calibration_skipped.startswith("the probes of lora")
    again = calibrate(prepared, SimpleNamespace(client=client, parent_id=parent.info.run_id, resumed=True),  # type: ignore[arg-type]
                      None, None)  # type: ignore[arg-type]
    assert again.calibration_skipped == first.calibration_skipped
    assert client.get_run(parent.info.run_id).data.tags[RunTag.CALIBRATION_SKIPPED] == first.calibration_skipped
