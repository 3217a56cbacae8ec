"""The ASHA scheduler: a rung stops trials only once enough other trials have reached it."""

from __future__ import annotations

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from autopeft.config import ObjectiveConfig, PruningConfig
from autopeft.study.scheduler import BootstrappedASHA
from tests.conftest import make_config

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def decisions(scheduler, values):
    """Each trial's first report (at rung 1) in turn; the scheduler's answer to each."""
    trials = [Trial("__fake", stub=True) for _ in values]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    results = [{"training_iteration": 1, "acc": v} for v in values]
    return [scheduler.on_trial_result(None, t, r) for t, r in zip(trials, results, strict=True)]


def asha(bootstrap_count, mode="max"):
    return BootstrappedASHA(bootstrap_count=bootstrap_count, time_attr="training_iteration", metric="acc", mode=mode,
                            max_t=4, grace_period=1, reduction_factor=2)


def test_a_trial_below_the_only_one_before_it_goes_on():
    # Ray's ASHA (bootstrap 1) stops the second trial because it is below the first
    assert decisions(asha(1), [0.8, 0.6]) == [CONTINUE, STOP]
    assert decisions(asha(2), [0.8, 0.6]) == [CONTINUE, CONTINUE]


def test_once_enough_trials_reached_the_rung_it_cuts_at_the_median():
    # third trial: 0.5 < median(0.8, 0.6) stops; 0.9 and 0.75 (above 0.7) go on
    assert decisions(asha(2), [0.8, 0.6, 0.5, 0.9, 0.75]) == [CONTINUE, CONTINUE, STOP, CONTINUE, CONTINUE]


def test_minimising_metrics_are_cut_from_the_other_side():
    assert decisions(asha(2, mode="min"), [0.8, 0.6, 0.9, 0.5]) == [CONTINUE, CONTINUE, STOP, CONTINUE]


def test_bootstrap_count_is_configured_and_checked():
    assert PruningConfig().bootstrap_count == 2
    with pytest.raises(ValueError, match="bootstrap_count"):
        PruningConfig(bootstrap_count=0)


def test_rungs_compare_the_objective_unless_told_otherwise():
    accuracy = ObjectiveConfig(metric="accuracy", mode="max")
    assert PruningConfig().rung_target(accuracy) == ("accuracy", "max")
    assert PruningConfig(metric="loss").rung_target(accuracy) == ("loss", "min")  # lower loss is better
    assert PruningConfig(metric="f1").rung_target(accuracy) == ("f1", "max")
    assert PruningConfig(metric="mcc", mode="min").rung_target(accuracy) == ("mcc", "min")


def test_rungs_on_loss_tell_apart_trials_whose_accuracy_ties(tmp_path):
    from autopeft.config import SearchConfig
    from autopeft.study.scheduler import make_scheduler

    cfg = SearchConfig.model_validate(make_config(tmp_path, budget={"trials": 4, "max_steps": 100, "eval_interval": 25},
                                                  pruning={"metric": "loss"}))
    scheduler = make_scheduler(cfg)
    trials = [Trial("__fake", stub=True) for _ in range(3)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    # all three still predict the majority class at the first rung; the third's loss is highest
    results = [{"training_iteration": 1, "accuracy": 0.523, "loss": loss} for loss in (0.69, 0.62, 0.71)]
    assert [scheduler.on_trial_result(None, t, r) for t, r in zip(trials, results, strict=True)] == [
        CONTINUE, CONTINUE, STOP]


def test_a_stopped_trial_carries_why_for_the_recorder():
    from autopeft.registry.tracking import RUNG_STOP_ATTR

    scheduler = asha(2)
    trials = [Trial("__fake", stub=True) for _ in range(3)]
    for trial, value in zip(trials, [0.8, 0.6, 0.5], strict=True):
        scheduler.on_trial_add(None, trial)
        scheduler.on_trial_result(None, trial, {"training_iteration": 1, "step": 25, "acc": value})
    stop = getattr(trials[2], RUNG_STOP_ATTR)
    assert (stop.rung, stop.report, stop.step, stop.metric, stop.value, stop.compared) == (1, 1, 25, "acc", 0.5, 2)
    assert stop.cutoff == pytest.approx(0.7)  # the median of the two trials before it
    assert "rung 1" in stop.describe() and "below the rung's cutoff 0.7000" in stop.describe()
    assert not hasattr(trials[0], RUNG_STOP_ATTR) and not hasattr(trials[1], RUNG_STOP_ATTR)
    # a minimised metric: stopped for being above the cutoff, reported in its own units
    scheduler = asha(2, mode="min")
    trials = [Trial("__fake", stub=True) for _ in range(3)]
    for trial, value in zip(trials, [0.6, 0.8, 0.9], strict=True):
        scheduler.on_trial_add(None, trial)
        scheduler.on_trial_result(None, trial, {"training_iteration": 1, "step": 25, "acc": value})
    stop = getattr(trials[2], RUNG_STOP_ATTR)
    assert stop.cutoff == pytest.approx(0.7) and "above" in stop.describe()


def test_rungs_judge_trials_against_the_trivial_level_where_trials_report_it(tmp_path):
    from autopeft.config import SearchConfig
    from autopeft.registry.tracking import RUNG_STOP_ATTR
    from autopeft.study.scheduler import make_scheduler, rung_target

    cfg = SearchConfig.model_validate(make_config(tmp_path, budget={"trials": 4, "max_steps": 100, "eval_interval": 25}))
    assert rung_target(cfg, judged=True) == ("rung_score", "max")
    assert rung_target(cfg, judged=False) == ("accuracy", "max")
    told = SearchConfig.model_validate(make_config(tmp_path, pruning={"metric": "loss"}))
    assert rung_target(told, judged=True) == ("loss", "min")  # the config's word wins

    scheduler = make_scheduler(cfg, judged=True)
    trials = [Trial("__fake", stub=True) for _ in range(4)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    # three trials tie at the majority class (their rung scores: minus loss over the trivial loss);
    # one left it. The last trivial trial arrives after the one that learnt: stopped, whatever its loss.
    results = [{"training_iteration": 1, "step": 25, "accuracy": acc, "at_trivial": float(trivial), "rung_score": score}
               for acc, trivial, score in ((0.52, True, -0.97), (0.61, False, 0.09), (0.52, True, -0.95),
                                           (0.52, True, -0.90))]
    actions = [scheduler.on_trial_result(None, t, r) for t, r in zip(trials, results, strict=True)]
    assert actions == [CONTINUE, CONTINUE, STOP, STOP]
    stop = getattr(trials[3], RUNG_STOP_ATTR)
    assert stop.at_trivial and "still at the trivial predictor's level" in stop.describe()


def _judged_scheduler(tmp_path):
    from autopeft.config import SearchConfig
    from autopeft.study.scheduler import make_scheduler

    cfg = SearchConfig.model_validate(make_config(tmp_path, budget={"trials": 6, "max_steps": 100, "eval_interval": 25}))
    return make_scheduler(cfg, judged=True)


def _report(scheduler, trial, iteration, *, trivial, score):
    return scheduler.on_trial_result(None, trial, {"training_iteration": iteration, "step": 25 * iteration,
                                                   "accuracy": 0.5 if trivial else 0.6,
                                                   "at_trivial": float(trivial), "rung_score": score})


def _new_trials(scheduler, count):
    trials = [Trial("__fake", stub=True) for _ in range(count)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    return trials


def test_before_any_trial_leaves_the_trivial_level_a_rung_stops_no_trivial_trial(tmp_path):
    from autopeft.registry.tracking import RUNG_STOP_ATTR

    scheduler = _judged_scheduler(tmp_path)
    trials = _new_trials(scheduler, 4)
    # all still at the majority class after 25 steps; the later two have the worse losses, which a
    # plain quantile would stop, but nothing says yet that any trial learns this early
    actions = [_report(scheduler, t, 1, trivial=True, score=s) for t, s in zip(trials, (-0.90, -0.92, -0.97, -0.99), strict=True)]
    assert actions == [CONTINUE] * 4
    assert not any(hasattr(t, RUNG_STOP_ATTR) for t in trials)


def test_a_trivial_trial_is_judged_from_the_rung_where_the_first_trial_left_the_level(tmp_path):
    from autopeft.registry.tracking import RUNG_STOP_ATTR

    scheduler = _judged_scheduler(tmp_path)
    first, second, late = _new_trials(scheduler, 3)
    # the first trial leaves the trivial level at its second report (50 steps), not its first
    assert _report(scheduler, first, 1, trivial=True, score=-0.90) == CONTINUE
    assert _report(scheduler, first, 2, trivial=False, score=0.10) == CONTINUE
    assert _report(scheduler, second, 1, trivial=True, score=-0.91) == CONTINUE
    # the later trial: worst loss at 25 steps, yet not stopped there, since no trial had learnt by then
    assert _report(scheduler, late, 1, trivial=True, score=-0.99) == CONTINUE
    # at 50 steps, where the first trial had left the level, the one still at it is stopped
    assert _report(scheduler, late, 2, trivial=True, score=-0.95) == STOP
    stop = getattr(late, RUNG_STOP_ATTR)
    assert (stop.rung, stop.at_trivial) == (2, True)


def test_once_a_trial_ends_at_the_trivial_level_ties_are_decided_on_loss_from_the_first_rung(tmp_path):
    from autopeft.registry.tracking import RUNG_STOP_ATTR

    scheduler = _judged_scheduler(tmp_path)
    first, second, third = _new_trials(scheduler, 3)
    for report in (1, 2, 3):
        _report(scheduler, first, report, trivial=True, score=-0.90)
    _report(scheduler, first, 4, trivial=True, score=-0.90)  # its last report, still at the level
    assert _report(scheduler, second, 1, trivial=True, score=-0.92) == CONTINUE
    # the task does not leave the trivial level within a trial: the worse loss is stopped at 25 steps
    assert _report(scheduler, third, 1, trivial=True, score=-0.99) == STOP
    assert getattr(third, RUNG_STOP_ATTR).at_trivial
