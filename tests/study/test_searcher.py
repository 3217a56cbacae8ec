"""The searcher tells Optuna the truth: stopped early is PRUNED, raised is FAIL."""

from __future__ import annotations

import optuna

from autopeft.space import load_space
from autopeft.study.define_by_run import compile_space
from autopeft.study.searcher import PruningAwareOptunaSearch


def make_searcher(storage):
    space = load_space({"adapters": ["lora", "ia3"]})
    return PruningAwareOptunaSearch(space=compile_space(space), metric="accuracy", mode="max",
                                    sampler=optuna.samplers.RandomSampler(seed=0), study_name="s", storage=storage)


def report(searcher, trial_id, iteration, value, final=False):
    result = {"accuracy": value, "training_iteration": iteration, "final": final}
    return result


def test_outcomes_reach_optuna():
    storage = optuna.storages.InMemoryStorage()
    searcher = make_searcher(storage)
    for tid in ("a", "b", "c"):
        assert searcher.suggest(tid) is not None
    # a: runs to the end
    searcher.on_trial_result("a", report(searcher, "a", 1, 0.6))
    searcher.on_trial_complete("a", report(searcher, "a", 2, 0.8, final=True))
    # b: ASHA stops it after its first report (Tune skips on_trial_result for that report)
    searcher.on_trial_complete("b", report(searcher, "b", 1, 0.55))
    # c: raises after one report
    searcher.on_trial_result("c", report(searcher, "c", 1, 0.7))
    searcher.on_trial_complete("c", report(searcher, "c", 1, 0.7), error=True)

    trials = optuna.load_study(study_name="s", storage=storage).get_trials()
    states = [t.state for t in trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL]
    assert trials[0].value == 0.8
    assert trials[1].intermediate_values == {1: 0.55}  # the stopping report is kept
    assert trials[2].value is None
