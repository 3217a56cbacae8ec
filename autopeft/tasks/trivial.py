"""The trivial predictor of each task kind, and how far a trial is from it.

A short trial on a task nobody tuned the search to often never leaves the trivial predictor:
the majority class, the training mean, the unigram distribution of the responses. Its metric
then ties with every other such trial (issue #24: 7 of 8 trials at MCC 0.000), so a rung that
compares metrics cannot tell them apart and the sampler is told seven identical values. Each
study therefore measures the trivial predictor's validation metrics once
(:func:`trivial_level`), and every evaluation of a trial is judged against them
(:meth:`TrivialLevel.judge`): whether the trial is still at the trivial level, and a rung score
that ranks every trial that left it above every trial that did not, and the latter by their
validation loss, which still differs where the metric ties.

Each kind's trivial predictor gives the outputs the kind's ``compute_metrics`` reads, so its
metrics are computed by the same code as a trial's, plus the loss it would have.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from autopeft.data import IGNORE

if TYPE_CHECKING:
    from autopeft.data import TokenizedData, TokenizedSplit

#: How much of the room between the trivial level and a perfect score (maximised metrics, all
#: at most 1: accuracy, F1, MCC, Pearson, Spearman), or of the trivial value itself (minimised
#: ones: loss, perplexity, MSE), a trial must gain to count as having left the trivial level.
#: 1%: on a balanced binary task, accuracy 0.505 over a majority of 0.50; at MCC 0, 0.01. A
#: model that flips a handful of validation examples away from the majority is still trivial.
MARGIN = 0.01


#: The rung score of an evaluation whose metric is not a number: below any real one, finite so
#: ASHA's quantiles stay numbers.
FLOOR = -1e3


@dataclass(frozen=True)
class Judgement:
    """One evaluation of a trial, against the trivial level."""

    #: Whether the metric is within :data:`MARGIN` of the trivial predictor's.
    at_trivial: bool
    #: Higher is better, whatever the metric's mode. Left the trivial level: the gain over it
    #: (> 0, in the metric's units). At it: minus the validation loss over the trivial
    #: predictor's loss (< 0), so the rung still ranks such trials, by how much they learnt.
    score: float


@dataclass(frozen=True)
class TrivialLevel:
    """The trivial predictor's validation ``metric`` (and loss) for one study."""

    metric: str
    mode: str
    value: float
    loss: float | None = None

    def margin(self) -> float:
        room = abs(self.value) if self.mode == "min" else max(1.0 - self.value, 0.0)
        return MARGIN * room

    def judge(self, metrics: Mapping[str, Any]) -> Judgement | None:
        """The evaluation ``metrics`` against this level; None when they lack the metric."""
        value = metrics.get(self.metric)
        if not isinstance(value, (int, float)):
            return None
        if not math.isfinite(float(value)):
            return Judgement(at_trivial=True, score=FLOOR)
        gain = float(value) - self.value if self.mode == "max" else self.value - float(value)
        if gain > self.margin():
            return Judgement(at_trivial=False, score=gain)
        loss = metrics.get("loss")
        if isinstance(loss, (int, float)) and math.isfinite(float(loss)) and self.loss and self.loss > 0:
            # below every trial that left the level; among those at it, lower loss ranks higher
            return Judgement(at_trivial=True, score=max(-float(loss) / self.loss, FLOOR))
        return Judgement(at_trivial=True, score=-1.0)

    def describe(self) -> str:
        return f"{self.metric} {self.value:.4f}"


# ---------------------------------------------------------------- each kind's trivial outputs
# (train split, validation split, classes) -> (the outputs compute_metrics reads, for each
# constant predictor the kind has; the validation loss of the training prior)


def _class_counts(labels: Any, classes: int) -> np.ndarray:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes).astype(np.float64)
    return counts + 0.5  # a class absent from training still gets a finite loss


def majority_class(train: TokenizedSplit, validation: TokenizedSplit, classes: int) -> tuple[list[np.ndarray], float]:
    """Every example gets one class, for each class in turn (the training majority first): a
    model that predicts one class whatever the input is trivial, whichever class it is, and the
    validation split's own majority (RTE's: the training split's minority) is the one whose
    metric a trial must beat. The loss is the cross-entropy of the training split's prior."""
    prior = _class_counts(train.labels, classes)
    log_prior = np.log(prior / prior.sum())
    labels = np.asarray(validation.labels, dtype=np.int64)
    return ([_constant_logits(len(labels), classes, c) for c in np.argsort(-prior, kind="stable")],
            float(-log_prior[labels].mean()) if len(labels) else float("nan"))


def _constant_logits(rows: int, classes: int, chosen: int) -> np.ndarray:
    logits = np.zeros((rows, classes))
    logits[:, chosen] = 1.0
    return logits


def training_mean(train: TokenizedSplit, validation: TokenizedSplit, classes: int) -> tuple[list[np.ndarray], float]:
    """Every example gets the training targets' mean. The loss is in the units the model's
    loss is in: standardised targets where the study standardises them."""
    targets = np.asarray(train.labels, dtype=np.float64)
    mean = float(targets.mean())
    val = np.asarray(validation.labels, dtype=np.float64)
    outputs = np.full((len(val), 1), mean)
    errors = val - mean
    scale = validation.target_scale
    if scale is not None:
        errors = errors / scale.std
    return [outputs], float(np.mean(errors**2)) if len(val) else float("nan")


def majority_tag(train: TokenizedSplit, validation: TokenizedSplit, classes: int) -> tuple[list[np.ndarray], float]:
    """Every labelled token gets one tag, for each tag in turn (the training majority first)."""
    train_tags = np.asarray([t for row in train.labels for t in row if t != IGNORE], dtype=np.int64)
    prior = _class_counts(train_tags, classes)
    log_prior = np.log(prior / prior.sum())
    gold = np.asarray([int(t) for row in validation.labels for t in row if t != IGNORE], dtype=np.int64)
    candidates = []
    for tag in np.argsort(-prior, kind="stable"):
        rows = np.empty(len(validation.labels), dtype=object)
        for i, row in enumerate(validation.labels):
            rows[i] = np.full(len(row), tag, dtype=np.int64)
        candidates.append(rows)
    return candidates, float(-log_prior[gold].mean()) if len(gold) else float("nan")


def unigram(train: TokenizedSplit, validation: TokenizedSplit, classes: int) -> tuple[list[np.ndarray], float]:
    """Every response token gets the training responses' token frequencies (add-half smoothing
    over the tokens either split holds): the per-token loss a model that ignores the prompt and
    the previous tokens reaches. Rows as ``tasks.outputs.lm_outputs`` gives them: the summed
    negative log-likelihood of the tokens the model predicts (labels from the second position),
    and their count."""

    def response_tokens(labels: Any) -> list[list[int]]:
        return [[int(t) for t in row[1:] if t != IGNORE] for row in labels]

    train_rows, val_rows = response_tokens(train.labels), response_tokens(validation.labels)
    counts = Counter(t for row in train_rows for t in row)
    vocabulary = len(counts.keys() | {t for row in val_rows for t in row})
    total = sum(counts.values()) + 0.5 * vocabulary
    outputs = np.zeros((len(val_rows), 2), dtype=np.float64)
    for i, row in enumerate(val_rows):
        outputs[i] = (-sum(math.log((counts.get(t, 0) + 0.5) / total) for t in row), len(row))
    tokens = outputs[:, 1].sum()
    return [outputs], float(outputs[:, 0].sum() / tokens) if tokens else float("nan")


#: What each trivial predictor is, in the report's words.
PREDICTOR_NAMES = {majority_class: "majority class", training_mean: "training mean", majority_tag: "majority tag",
                   unigram: "unigram of the responses"}


def predictor_name(task: Any) -> str:
    """The trivial predictor of ``task`` (a :class:`~autopeft.tasks.base.TaskKind`), in words."""
    return PREDICTOR_NAMES.get(task.trivial, "trivial predictor")


def trivial_level(task: Any, data: TokenizedData, metric: str, mode: str) -> tuple[TrivialLevel | None, dict[str, float]]:
    """The study's trivial level for ``metric``, and every validation metric of the trivial
    predictor (``task``: the :class:`~autopeft.tasks.base.TaskKind`). The level is None where
    ``metric`` is not one of the kind's metrics (a cost objective such as latency)."""
    train, validation = data.splits.get("train"), data.splits.get("validation")
    if task.trivial is None or train is None or validation is None or len(validation) == 0 or len(train) == 0:
        return None, {}
    candidates, loss = task.trivial(train, validation, len(data.label_names))
    scored = [{k: float(v) for k, v in task.compute_metrics(outputs, validation.labels).items()}
              for outputs in candidates]
    sign = 1.0 if mode == "max" else -1.0
    judged = [m for m in scored if isinstance(m.get(metric), float) and math.isfinite(m[metric])]
    # the constant predictor that does best on the judged metric (the first of equals: the training majority)
    metrics = max(judged, key=lambda m: sign * m[metric]) if judged else scored[0]
    metrics.setdefault("loss", loss)
    if not judged:
        return None, metrics
    loss = metrics["loss"]
    return TrivialLevel(metric=metric, mode=mode, value=metrics[metric],
                        loss=loss if math.isfinite(loss) else None), metrics
