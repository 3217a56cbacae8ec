"""The trivial predictor of each task kind, and the judgement of a trial's evaluation against it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autopeft.data import IGNORE
from autopeft.data.encode import TokenizedData, TokenizedSplit
from autopeft.schema import TargetScale
from autopeft.tasks import get_task, trivial_level
from autopeft.tasks.trivial import MARGIN, TrivialLevel


def _data(task: str, train_labels: object, val_labels: object, label_names: list[str], *,
          scale: TargetScale | None = None) -> TokenizedData:
    def split(labels: object) -> TokenizedSplit:
        rows = len(labels)  # type: ignore[arg-type]
        return TokenizedSplit(input_ids=[[1, 2, 3]] * rows, token_type_ids=None, labels=labels,  # type: ignore[arg-type]
                              task=task, target_scale=scale)

    return TokenizedData(splits={"train": split(train_labels), "validation": split(val_labels)},
                         label_names=label_names, pad_token_id=0, fingerprint="x", sizes={})


def test_majority_class_gives_the_majority_share_and_mcc_zero() -> None:
    data = _data("sequence_classification", np.array([1, 1, 1, 0]), np.array([1, 0, 1, 1, 0]), ["neg", "pos"])
    level, metrics = trivial_level(get_task("sequence_classification"), data, "accuracy", "max")
    assert level is not None and level.value == pytest.approx(0.6)
    assert metrics["mcc"] == 0.0
    # the loss of predicting the training prior (3.5:1.5 with add-half smoothing) on the validation labels
    prior = np.array([1.5, 3.5]) / 5.0
    assert metrics["loss"] == pytest.approx(-(3 * math.log(prior[1]) + 2 * math.log(prior[0])) / 5)


def test_training_mean_scores_pearson_zero_and_unit_loss_in_standardised_units() -> None:
    train = np.array([1.0, 2.0, 3.0, 4.0])
    scale = TargetScale(mean=float(train.mean()), std=float(train.std()))
    data = _data("regression", train, train.copy(), ["value"], scale=scale)
    level, metrics = trivial_level(get_task("regression"), data, "pearson", "max")
    assert level is not None and level.value == 0.0
    assert metrics["mse"] == pytest.approx(train.var())
    assert level.loss == pytest.approx(1.0)  # predicting the mean: MSE of one training variance


def test_unigram_loss_is_the_response_tokens_entropy() -> None:
    # responses of two tokens each; the first label is never predicted (logits at t predict t+1)
    train = [[IGNORE, 5, 5], [IGNORE, 5, 6]]
    val = [[IGNORE, 5, 6]]
    level, metrics = trivial_level(get_task("causal_lm"), _data("causal_lm", train, val, []), "loss", "min")
    counts = {5: 3 + 0.5, 6: 1 + 0.5}
    total = sum(counts.values())
    expected = -(math.log(counts[5] / total) + math.log(counts[6] / total)) / 2
    assert level is not None and level.value == pytest.approx(expected)
    assert metrics["perplexity"] == pytest.approx(math.exp(expected))


def test_majority_tag_predicts_the_most_frequent_tag_on_labelled_tokens() -> None:
    train = [[IGNORE, 0, 0, 1], [0, IGNORE, 2]]
    val = [[IGNORE, 0, 1], [0, 0, IGNORE]]
    level, _ = trivial_level(get_task("token_classification"), _data("token_classification", train, val, ["O", "A", "B"]),
                             "accuracy", "max")
    assert level is not None and level.value == pytest.approx(3 / 4)


def test_a_cost_objective_has_no_trivial_level() -> None:
    data = _data("sequence_classification", np.array([0, 1]), np.array([0, 1]), ["a", "b"])
    level, metrics = trivial_level(get_task("sequence_classification"), data, "latency_ms", "min")
    assert level is None and "accuracy" in metrics


def test_judgement_ranks_every_trial_that_left_the_level_above_every_one_at_it() -> None:
    level = TrivialLevel(metric="mcc", mode="max", value=0.0, loss=0.69)
    tied_high_loss = level.judge({"mcc": 0.0, "loss": 0.70})
    tied_low_loss = level.judge({"mcc": 0.0, "loss": 0.60})
    barely = level.judge({"mcc": MARGIN / 2, "loss": 0.50})  # within the margin: still trivial
    learnt = level.judge({"mcc": 0.05, "loss": 0.68})
    assert tied_high_loss and tied_low_loss and barely and learnt
    assert tied_high_loss.at_trivial and tied_low_loss.at_trivial and barely.at_trivial and not learnt.at_trivial
    # where the metric ties, the validation loss decides; any trial that left beats all of them
    assert tied_high_loss.score < tied_low_loss.score < barely.score < 0 < learnt.score
    assert learnt.score == pytest.approx(0.05)


def test_judgement_of_a_minimised_metric() -> None:
    level = TrivialLevel(metric="loss", mode="min", value=4.0, loss=4.0)
    assert level.judge({"loss": 3.99}).at_trivial  # type: ignore[union-attr]  # within 1% of 4.0
    left = level.judge({"loss": 3.0})
    assert left is not None and not left.at_trivial and left.score == pytest.approx(1.0)


def test_an_evaluation_without_the_metric_is_not_judged() -> None:
    assert TrivialLevel(metric="accuracy", mode="max", value=0.5).judge({"loss": 1.0}) is None


def test_a_constant_class_is_trivial_whichever_class_it_is() -> None:
    # the training majority (0) is the validation minority: always predicting 1 scores 0.7 and
    # learns no more than always predicting 0; a trial must beat 0.7 to have learnt anything
    data = _data("sequence_classification", np.array([0, 0, 0, 1]), np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 0]),
                 ["a", "b"])
    level, metrics = trivial_level(get_task("sequence_classification"), data, "accuracy", "max")
    assert level is not None and level.value == pytest.approx(0.7)
    assert metrics["f1"] == pytest.approx(2 * 0.7 / 1.7)  # the metrics of that same constant predictor
    f1_level, _ = trivial_level(get_task("sequence_classification"), data, "f1", "max")
    assert f1_level is not None and f1_level.value == pytest.approx(2 * 0.7 / 1.7)
    assert level.judge({"accuracy": 0.7, "loss": 0.6}).at_trivial  # type: ignore[union-attr]
