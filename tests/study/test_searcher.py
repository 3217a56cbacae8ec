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


def judged(iteration, accuracy, at_trivial, rung_score, final=False):
    return {"accuracy": accuracy, "training_iteration": iteration, "final": final, "step": iteration * 10,
            "at_trivial": 1.0 if at_trivial else 0.0, "rung_score": rung_score}


def test_a_trial_still_at_the_trivial_level_is_pruned_with_its_reason():
    storage = optuna.storages.InMemoryStorage()
    searcher = make_searcher(storage)
    for tid in ("learnt", "tied-low-loss", "tied-high-loss"):
        assert searcher.suggest(tid) is not None
    searcher.on_trial_result("learnt", judged(1, 0.6, False, 0.1))
    searcher.on_trial_complete("learnt", judged(2, 0.7, False, 0.2, final=True))
    # both ran all their steps at the majority class: same accuracy, different validation loss
    searcher.on_trial_result("tied-low-loss", judged(1, 0.5, True, -0.95))
    searcher.on_trial_complete("tied-low-loss", judged(2, 0.5, True, -0.90, final=True))
    searcher.on_trial_result("tied-high-loss", judged(1, 0.5, True, -1.02))
    searcher.on_trial_complete("tied-high-loss", judged(2, 0.5, True, -1.05, final=True))

    learnt, low, high = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert learnt.state == optuna.trial.TrialState.COMPLETE and learnt.value == 0.7
    assert "autopeft.pruned_reason" not in learnt.user_attrs
    for trial in (low, high):
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert trial.user_attrs["autopeft.pruned_reason"].startswith("still at the trivial predictor's level: ran all")
    # the sampler ranks pruned trials by their last intermediate value: the rung score tells the tie apart
    assert low.intermediate_values == {1: -0.95, 2: -0.90}
    assert low.intermediate_values[2] > high.intermediate_values[2]


def test_rung_scores_are_oriented_to_a_minimised_objective():
    storage = optuna.storages.InMemoryStorage()
    space = load_space({"adapters": ["lora"]})
    searcher = PruningAwareOptunaSearch(space=compile_space(space), metric="loss", mode="min",
                                        sampler=optuna.samplers.RandomSampler(seed=0), study_name="m", storage=storage)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"loss": 3.0, "training_iteration": 1, "at_trivial": 0.0, "rung_score": 1.0})
    (trial,) = optuna.load_study(study_name="m", storage=storage).get_trials()
    # a higher rung score is better; Optuna minimises, so it is told the score negated
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values == {1: -1.0}


def test_a_step_budget_ends_the_search_once_another_full_trial_would_not_fit(tmp_path):
    from ray.tune.search import Searcher

    storage = optuna.storages.InMemoryStorage()
    space = load_space({"adapters": ["lora", "ia3"]})

    def searcher_with(budget):
        return PruningAwareOptunaSearch(space=compile_space(space), metric="accuracy", mode="max",
                                        sampler=optuna.samplers.RandomSampler(seed=0), study_name="b", storage=storage,
                                        step_budget=budget, trial_steps=100)

    searcher = searcher_with(250)
    # two trials of up to 100 steps fit 250; a third, with both running, would not: it waits
    # (None: Tune asks again), since a running trial may yet be stopped early
    assert searcher.suggest("a") is not None and searcher.suggest("b") is not None
    assert searcher.suggest("c") is None
    # ASHA stops a at step 25: its unused steps are room for another trial
    searcher.on_trial_result("a", {"accuracy": 0.5, "training_iteration": 1, "step": 25})
    searcher.on_trial_complete("a", {"accuracy": 0.5, "training_iteration": 1, "step": 25})
    assert searcher.steps_taken == 25
    assert searcher.suggest("c") is not None  # 25 taken + 100 for b + 100 for c <= 250
    # b runs all its steps; the step of its last report counts, whether or not the result has one
    searcher.on_trial_result("b", {"accuracy": 0.6, "training_iteration": 4, "step": 100})
    searcher.on_trial_complete("b", {"accuracy": 0.6, "training_iteration": 4, "final": True})
    assert searcher.steps_taken == 125
    assert searcher.suggest("d") is None  # 125 + 100 for c + 100 for d > 250, and c still runs

    # a resumed study goes on counting: Ray checkpoints the searcher's state and restores it
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = searcher_with(250)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.steps_taken == 125 and restored.suggest("d") is None
    # c runs all its steps: 225 taken, no room for another and nothing running: finished
    restored.on_trial_complete("c", {"accuracy": 0.7, "training_iteration": 4, "step": 100, "final": True})
    assert restored.steps_taken == 225 and restored.suggest("d") is Searcher.FINISHED
    # without a step budget the trial count alone ends the search
    assert searcher_with(None).suggest("e") is not None


def test_a_trial_interrupted_by_its_driver_and_run_on_by_resume_is_recorded_once(tmp_path):
    """A cancelled (or Ctrl-C'd) driver closes its running trial as FAIL; the resumed study runs
    the trial on to its end. Optuna cannot reopen the FAIL trial, so the result is a new trial with
    the same parameters, the whole curve and the number it continues; a replayed end adds nothing."""
    from autopeft.schema import TrialAttr
    from autopeft.study.study_run import INTERRUPTED_REASON, fail_orphan_trials

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = make_searcher(optuna.storages.RDBStorage(url))
    assert searcher.suggest("done") is not None and searcher.suggest("cut") is not None
    searcher.on_trial_complete("done", report(searcher, "done", 2, 0.8, final=True))
    searcher.on_trial_result("cut", {**report(searcher, "cut", 1, 0.6), "family": "lora"})
    assert fail_orphan_trials(url, "s", reason=INTERRUPTED_REASON) == 1  # the driver ends mid-trial

    # the resumed search (Tune restores the searcher) runs "cut" on from its checkpoint
    searcher.on_trial_result("cut", report(searcher, "cut", 2, 0.7))
    searcher.on_trial_complete("cut", {**report(searcher, "cut", 3, 0.75, final=True), "family": "lora"})
    searcher.on_trial_complete("cut", {**report(searcher, "cut", 3, 0.75, final=True), "family": "lora"})  # replayed

    done, cut, continued = optuna.load_study(study_name="s", storage=url).get_trials()
    assert done.state == optuna.trial.TrialState.COMPLETE and TrialAttr.CONTINUES not in done.user_attrs
    assert cut.state == optuna.trial.TrialState.FAIL and "interrupted" in cut.user_attrs[TrialAttr.ORPHANED]
    assert continued.state == optuna.trial.TrialState.COMPLETE and continued.value == 0.75
    assert continued.params == cut.params and continued.distributions == cut.distributions
    assert continued.intermediate_values == {1: 0.6, 2: 0.7, 3: 0.75}
    assert continued.user_attrs[TrialAttr.CONTINUES] == cut.number
    assert continued.user_attrs[TrialAttr.RAY_TRIAL_ID] == "cut" and continued.user_attrs[TrialAttr.FAMILY] == "lora"
    assert TrialAttr.ORPHANED not in continued.user_attrs


def test_an_interrupted_trial_that_asha_stops_after_the_resume_is_recorded_pruned(tmp_path):
    from autopeft.schema import TrialAttr
    from autopeft.study.study_run import fail_orphan_trials

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = make_searcher(optuna.storages.RDBStorage(url))
    searcher.suggest("cut")
    searcher.on_trial_result("cut", judged(1, 0.5, True, -0.9))
    fail_orphan_trials(url, "s")
    searcher.on_trial_complete("cut", judged(2, 0.5, True, -0.8))  # stopped at the next rung, still trivial

    cut, continued = optuna.load_study(study_name="s", storage=url).get_trials()
    assert continued.state == optuna.trial.TrialState.PRUNED and continued.value is None
    assert continued.intermediate_values == {1: -0.9, 2: -0.8}
    assert continued.user_attrs[TrialAttr.PRUNED_REASON].startswith("still at the trivial predictor's level")


def test_a_family_own_rate_reaches_the_trial_under_the_key_training_reads():
    # Optuna samples IA3's own rate as ia3.learning_rate (modelled apart from LoRA's); the config
    # Tune hands the trial holds it as learning_rate, and no ia3.* key a family config would take
    space = load_space({"adapters": {"lora": {}, "ia3": {"learning_rate": {"low": 3e-3, "high": 3e-2, "log": True}}}})
    searcher = PruningAwareOptunaSearch(space=compile_space(space), metric="accuracy", mode="max",
                                        sampler=optuna.samplers.RandomSampler(seed=0), study_name="s",
                                        storage=optuna.storages.InMemoryStorage())
    configs = [searcher.suggest(str(i)) for i in range(12)]
    ia3 = [c for c in configs if c["adapter"] == "ia3"]
    assert ia3 and all(3e-3 <= c["learning_rate"] <= 3e-2 and "ia3.learning_rate" not in c for c in ia3)
    lora = [c for c in configs if c["adapter"] == "lora"]
    assert lora and all(1e-4 <= c["learning_rate"] <= 1e-2 for c in lora)
    assert {name for t in searcher.study.trials for name in t.params if "learning_rate" in name} == {
        "ia3.learning_rate", "learning_rate"}
