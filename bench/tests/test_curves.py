"""The ASHA replay on full learning curves (bench/curves.py) drives autopeft's real scheduler."""

from __future__ import annotations

import pytest

from bench.curves import analyse, rank_agreement, replay


def _curve(name, accuracy, loss):
    steps = (25, 50, 75, 100)
    return {"trial": name, "accuracy": dict(zip(steps, accuracy, strict=True)), "loss": dict(zip(steps, loss, strict=True))}


# three trials still at the majority class at the first rung; only their losses differ there
CURVES = [
    _curve("a", (0.53, 0.75, 0.79, 0.80), (0.60, 0.50, 0.45, 0.44)),
    _curve("b", (0.53, 0.70, 0.76, 0.78), (0.65, 0.55, 0.50, 0.48)),
    _curve("c", (0.53, 0.78, 0.81, 0.82), (0.69, 0.45, 0.42, 0.40)),
]


def test_rungs_on_loss_stop_the_trial_whose_accuracy_only_ties():
    # c's loss at 25 steps (0.69) is above the median of a and b (0.625): stopped there
    assert replay(CURVES, "loss") == {2: 25}
    # on accuracy, c ties the cutoff at 25 steps and leads at 50: it runs to the end
    assert replay(CURVES, "accuracy") == {}


def test_analysis_says_whether_the_best_trial_survived():
    out = analyse(CURVES)
    assert out["best_final_accuracy"] == pytest.approx(0.82)
    assert out["rungs_on_loss"]["best_trial_kept"] is False
    assert out["rungs_on_loss"]["stopped"] == {"c": {"at_step": 25, "final_accuracy": 0.82}}
    assert out["rungs_on_loss"]["steps_used"] == 225
    assert out["rungs_on_accuracy"]["best_trial_kept"] is True and out["rungs_on_accuracy"]["steps_used"] == 300


def test_rank_agreement_signs_loss_so_higher_is_better():
    assert rank_agreement(CURVES, "loss", 50) == pytest.approx(1.0)  # lowest loss at 50 ends best
    # at 25 steps the order is a, b, c by loss but c, a, b by final accuracy
    assert rank_agreement(CURVES, "loss", 25) == pytest.approx(-0.5)
