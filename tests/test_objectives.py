"""Objectives, constraints, the Pareto set and the selection policies on synthetic trials."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pytest

from autopeft.objectives import (
    ConstraintsFunc,
    SamplerConfig,
    SelectionConfig,
    knee_index,
    make_sampler,
    pareto_mask,
    pareto_table,
    select,
)


@dataclass
class T:
    trial_id: str
    accuracy: float
    share: float
    outcome: str = "COMPLETE"
    latency: float = 1.0
    params: dict[str, Any] = field(default_factory=lambda: {"adapter": "lora", "lora.r": 8})
    run_id: str | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "trainable_share": self.share, "latency_ms": self.latency}


OBJ = [("accuracy", "max"), ("trainable_share", "min")]
# a front a-b-c-d (c is the knee: most of the accuracy for a tenth of b's share), e dominated by c
TRIALS = [T("a", 0.70, 0.0001), T("b", 0.90, 0.0100), T("c", 0.88, 0.0010), T("d", 0.80, 0.0005),
          T("e", 0.85, 0.0020), T("p", 0.95, 0.0001, outcome="PRUNED"), T("f", 0.99, 0.0001, outcome="FAIL")]


def test_pareto_mask_keeps_exactly_the_non_dominated_points():
    values = np.array([[t.accuracy, t.share] for t in TRIALS[:5]])
    assert pareto_mask(values, ["max", "min"]).tolist() == [True, True, True, True, False]
    # duplicates do not dominate each other; a point better in one and equal in the other does
    assert pareto_mask(np.array([[1, 1], [1, 1], [1, 2]]), ["max", "min"]).tolist() == [True, True, False]
    assert pareto_mask(np.zeros((0, 2)), ["max", "min"]).tolist() == []


def test_knee_is_nearest_the_ideal_point_after_scaling():
    front = np.array([[0.70, 0.0001], [0.90, 0.0100], [0.88, 0.0010], [0.80, 0.0005]])
    assert knee_index(front, ["max", "min"]) == 2
    assert knee_index(np.array([[0.5, 3.0]]), ["max", "min"]) == 0
    # orientation matters: minimising the first objective picks the other end
    assert knee_index(np.array([[1.0, 1.0], [0.0, 1.0]]), ["min", "min"]) == 1


def test_policies_pick_what_they_claim():
    best = select(TRIALS, OBJ, {}, SelectionConfig(policy="best"))
    assert best.best.trial_id == "b"  # pruned and failed trials are never candidates when one completed
    assert {t.trial_id for t in best.pareto} == {"a", "b", "c", "d"}
    within = select(TRIALS, OBJ, {}, SelectionConfig(policy="best-within", max_trainable_share=0.001))
    assert within.best.trial_id == "c"
    knee = select(TRIALS, OBJ, {}, SelectionConfig(policy="knee"))
    assert knee.best.trial_id == "c" and "knee" in knee.reason
    # sampler constraints shrink the candidates before any policy
    constrained = select(TRIALS, OBJ, {"trainable_share": 0.005}, SelectionConfig(policy="best"))
    assert constrained.best.trial_id == "c" and "b" not in {t.trial_id for t in constrained.feasible}


def test_policies_fall_back_and_say_so():
    nothing_within = select(TRIALS, OBJ, {}, SelectionConfig(policy="best-within", max_trainable_share=1e-6))
    assert nothing_within.best.trial_id == "b" and nothing_within.reason.startswith("no COMPLETE trial with")
    infeasible = select(TRIALS, OBJ, {"trainable_share": 1e-6}, SelectionConfig())
    assert infeasible.best.trial_id == "b" and "constraints" in infeasible.reason
    only_pruned = select([TRIALS[5]], OBJ, {}, SelectionConfig())
    assert only_pruned.best.trial_id == "p" and "no trial completed" in only_pruned.reason
    assert select([TRIALS[6]], OBJ, {}, SelectionConfig()).best is None


def test_single_objective_front_uses_trainable_share_as_the_cost_axis():
    chosen = select(TRIALS, [("accuracy", "max")], {}, SelectionConfig(policy="knee"))
    assert chosen.axes == [("accuracy", "max"), ("trainable_share", "min")]
    assert chosen.best.trial_id == "c"


def test_pareto_table_has_config_run_and_one_type_per_column(tmp_path):
    trials = [T("a", 0.7, 0.0001, params={"adapter": "ia3", "placement.layers": "all"}, run_id="r1"),
              T("b", 0.9, 0.01, params={"adapter": "lora", "lora.r": 8, "placement.layers": 3}, run_id="r2")]
    frame = pareto_table(select(trials, OBJ, {}, SelectionConfig(policy="best")))
    assert list(frame["trial_id"]) == ["a", "b"] and list(frame["run_id"]) == ["r1", "r2"]
    assert frame["registered"].tolist() == [False, True]
    assert frame["param.placement.layers"].tolist() == ["all", "3"]  # mixed: stored as text
    frame.to_parquet(tmp_path / "p.parquet")  # one type per column, so Parquet takes it


def test_constraints_func_reads_the_measurements():
    func = ConstraintsFunc({"trainable_share": 0.01, "latency_ms": 5.0})
    trial = optuna.trial.create_trial(values=[0.8, 0.02], user_attrs={"autopeft.trainable_share": 0.02,
                                                                       "autopeft.latency_ms": 4.0},
                                      distributions={}, params={})
    assert func(trial) == pytest.approx([1.0, -0.2])
    missing = optuna.trial.create_trial(values=[0.8, 0.02], distributions={}, params={})
    assert func(missing) == [1.0, 1.0]  # not measured: infeasible


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_every_sampler_runs_a_constrained_two_objective_study(name):
    limits = {} if name == "random" else {"trainable_share": 0.5}
    sampler = make_sampler(SamplerConfig(name=name, population_size=4, n_startup_trials=3), limits,
                           seed=0, trials=8, concurrent=1)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(6):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        trial.set_user_attr("autopeft.trainable_share", x)
        study.tell(trial, [x, x * x])
    assert len(study.best_trials) >= 1
    if limits:
        assert all("constraints" in t.system_attrs for t in study.trials)


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_every_sampler_survives_rays_pickling_and_goes_on_sampling(name):
    """Ray pickles the searcher with its sampler: cloudpickle for the tuner's state, plain pickle
    in ``OptunaSearch.save``. Optuna 5.1's NSGA-II holds a lock that failed both."""
    import pickle

    from ray import cloudpickle

    sampler = make_sampler(SamplerConfig(name=name, population_size=2, n_startup_trials=2), {"trainable_share": 0.5},
                           seed=0, trials=8, concurrent=1)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def run(trials: int) -> None:
        for _ in range(trials):
            trial = study.ask()
            x = trial.suggest_float("x", 0, 1)
            trial.set_user_attr("autopeft.trainable_share", x)
            study.tell(trial, [x, x * x])

    run(3)
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        restored = loads(dumps(study.sampler))
        assert type(restored) is type(study.sampler)
        study.sampler = restored
        run(2)  # the restored sampler works: a lock it held is made again
    assert len(study.trials) == 7


@pytest.mark.parametrize(("trials", "warm", "given", "expected"), [
    (8, 0, None, 2),     # the default study: the model steers trials 3..8 (Optuna's own default, 10, never would)
    (20, 0, None, 5),
    (200, 0, None, 10),  # Optuna's default for large studies
    (8, 2, None, 4),     # the prior's 2 configs, then 2 random ones, before the model
    (8, 2, 6, 6),        # set by the user: kept, counting every trial as Optuna does
])
@pytest.mark.parametrize("name", ["tpe", "gp"])
def test_model_based_samplers_start_after_warm_start_and_a_quarter_of_the_trials(name, trials, warm, given, expected):
    sampler = make_sampler(SamplerConfig(name=name, n_startup_trials=given), {}, seed=0, trials=trials, concurrent=1,
                           warm_started=warm)
    assert sampler._n_startup_trials == expected


def test_tpe_draws_at_random_after_the_warm_start():
    """Two enqueued configs do not make TPE's model: the next two trials are random draws."""
    def objective(trial):
        return -abs(trial.suggest_float("x", 0.0, 1.0) - 0.5)

    def third_and_fourth(warm_started):
        sampler = make_sampler(SamplerConfig(name="tpe"), {}, seed=3, trials=8, concurrent=1, warm_started=warm_started)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for x in (0.5, 0.51):  # a tight warm start, as the built-in prior is
            study.enqueue_trial({"x": x})
        study.optimize(objective, n_trials=4)
        return [t.params["x"] for t in study.trials[2:]]

    random_draws = [t.params["x"] for t in _random_study(seed=3).trials[:2]]
    assert third_and_fourth(warm_started=2) == pytest.approx(random_draws)
    assert third_and_fourth(warm_started=0) != pytest.approx(random_draws)  # the model fitted on the warm start


def _random_study(seed: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2)
    return study
