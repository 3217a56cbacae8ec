"""Task kinds: the model class, the peft task type, how labels are encoded and the metrics.

Each kind is one :class:`TaskKind` in a registry, so adding token classification or causal-LM
fine-tuning means adding one entry, not touching the trial or the search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autopeft.errors import ConfigError


def _classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    preds = logits.argmax(axis=-1)
    average = "binary" if logits.shape[-1] == 2 else "macro"
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1_score(labels, preds, average=average, zero_division=0)),
        "mcc": float(matthews_corrcoef(labels, preds)) if len(set(labels.tolist())) > 1 else 0.0,
    }


def _regression_metrics(outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    preds = outputs.reshape(-1)
    constant = np.allclose(preds, preds[0]) or np.allclose(targets, targets[0])
    return {
        "mse": float(np.mean((preds - targets) ** 2)),
        "pearson": 0.0 if constant else float(pearsonr(preds, targets)[0]),
        "spearman": 0.0 if constant else float(spearmanr(preds, targets)[0]),
    }


@dataclass(frozen=True)
class TaskKind:
    """How one kind of task is trained and measured."""

    name: str
    #: peft's ``TaskType`` value (decides which heads peft keeps trainable and saves).
    peft_task_type: str
    metric_names: tuple[str, ...]
    #: (model outputs, labels) → metrics; outputs are logits (N, C) or values (N, 1).
    compute_metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    #: Whether labels are classes (mapped to ids) or real values.
    categorical: bool
    #: Loss reported when the objective is a loss (e.g. for regression's "mse").
    default_metric: str
    default_mode: str

    def model_kwargs(self, label_names: Sequence[str]) -> dict[str, Any]:
        """Arguments for ``AutoModelForSequenceClassification.from_pretrained``."""
        if self.categorical:
            return {
                "num_labels": len(label_names),
                "id2label": dict(enumerate(label_names)),
                "label2id": {name: i for i, name in enumerate(label_names)},
            }
        return {"num_labels": 1, "problem_type": "regression"}


_TASKS: dict[str, TaskKind] = {
    "sequence_classification": TaskKind(
        name="sequence_classification",
        peft_task_type="SEQ_CLS",
        metric_names=("accuracy", "f1", "mcc", "loss"),
        compute_metrics=_classification_metrics,
        categorical=True,
        default_metric="accuracy",
        default_mode="max",
    ),
    "regression": TaskKind(
        name="regression",
        peft_task_type="SEQ_CLS",
        metric_names=("mse", "pearson", "spearman", "loss"),
        compute_metrics=_regression_metrics,
        categorical=False,
        default_metric="pearson",
        default_mode="max",
    ),
}


def get_task(name: str) -> TaskKind:
    try:
        return _TASKS[name]
    except KeyError:
        raise ConfigError(f"task.kind: unknown task {name!r} (expected one of: {', '.join(_TASKS)})") from None


def task_names() -> list[str]:
    return list(_TASKS)
