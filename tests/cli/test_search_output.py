"""What `autopeft search` says after a study, beyond the table."""

from __future__ import annotations

from autopeft.cli.search import learnt_nothing


def test_a_best_trial_at_the_trivial_level_is_a_warning_with_what_to_change():
    said = learnt_nothing({"accuracy": 0.51, "at_trivial": 1.0}, "sequence_classification")
    assert said is not None and "nothing was learnt" in said and "budget.max_steps" in said
    assert "trivial predictor's level (majority class)" in said
    assert learnt_nothing({"accuracy": 0.81, "at_trivial": 0.0}, "sequence_classification") is None
    assert learnt_nothing({"accuracy": 0.81}, "sequence_classification") is None  # a study that did not judge its trials
    # each kind's own trivial predictor: a causal LM has no majority class
    assert "(unigram of the responses)" in str(learnt_nothing({"loss": 3.1, "at_trivial": 1.0}, "causal_lm"))
    assert "(training mean)" in str(learnt_nothing({"pearson": 0.0, "at_trivial": 1.0}, "regression"))
