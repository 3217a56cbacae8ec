"""Each task kind's validation metrics, from its per-example outputs and labels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from autopeft.data import IGNORE


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    # deferred: scikit-learn takes a second to import; loaded with the first evaluation
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    preds = logits.argmax(axis=-1)
    average = "binary" if logits.shape[-1] == 2 else "macro"
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1_score(labels, preds, average=average, zero_division=0)),
        "mcc": float(matthews_corrcoef(labels, preds)) if len(set(labels.tolist())) > 1 else 0.0,
    }


def regression_metrics(outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    # deferred: scipy loads with the first regression evaluation
    from scipy.stats import pearsonr, spearmanr

    preds = outputs.reshape(-1)
    constant = np.allclose(preds, preds[0]) or np.allclose(targets, targets[0])
    return {
        "mse": float(np.mean((preds - targets) ** 2)),
        "pearson": 0.0 if constant else float(pearsonr(preds, targets)[0]),
        "spearman": 0.0 if constant else float(spearmanr(preds, targets)[0]),
    }


def token_metrics(outputs: np.ndarray, labels: Sequence[Sequence[int]]) -> dict[str, float]:
    """Accuracy and macro F1 over the labelled tokens (each word's first subword). ``outputs``
    holds each example's predicted class per token (as :func:`token_outputs` gives)."""
    # deferred: scikit-learn takes a second to import; loaded with the first evaluation
    from sklearn.metrics import accuracy_score, f1_score

    gold: list[int] = []
    pred: list[int] = []
    for row_pred, row_gold in zip(outputs, labels, strict=True):
        for p, g in zip(row_pred, row_gold, strict=True):
            if g != IGNORE:
                gold.append(int(g))
                pred.append(int(p))
    if not gold:
        return {"accuracy": 0.0, "f1": 0.0}
    return {"accuracy": float(accuracy_score(gold, pred)),
            "f1": float(f1_score(gold, pred, average="macro", zero_division=0))}


def lm_metrics(outputs: np.ndarray, labels: Any) -> dict[str, float]:
    """Loss per response token over the whole split (not a mean of batch means, which would
    weigh short responses more) and its perplexity. ``outputs``: (N, 2) NLL sum and token count."""
    nll, count = float(outputs[:, 0].sum()), float(outputs[:, 1].sum())
    loss = nll / count if count else float("nan")
    # exp overflows past ~709; a perplexity that large means "diverged" either way
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("nan")}
