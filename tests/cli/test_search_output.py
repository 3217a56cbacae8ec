"""What `autopeft search` says after a study, beyond the table."""

from __future__ import annotations

from autopeft.cli.search import learnt_nothing


def test_a_best_trial_at_the_trivial_level_is_a_warning_with_what_to_change():
    said = learnt_nothing({"accuracy": 0.51, "at_trivial": 1.0})
    assert said is not None and "nothing was learnt" in said and "budget.max_steps" in said
    assert learnt_nothing({"accuracy": 0.81, "at_trivial": 0.0}) is None
    assert learnt_nothing({"accuracy": 0.81}) is None  # a study that did not judge its trials
