"""A task kind and the registry of kinds: one :class:`TaskKind` entry per kind, registered with
one line (``register_task``), which the config, the data checks, the adapter families, the
trial, the search and the predictor all ask."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from autopeft.data import ColumnSpec, collate_texts, encode_texts
from autopeft.errors import ConfigError
from autopeft.model.loading import load_classifier, load_tokenizer, skeleton
from autopeft.model.placement import scan
from autopeft.tasks.outputs import logit_outputs, present_classes
from autopeft.tasks.trivial import majority_class

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from autopeft.config import ModelConfig
    from autopeft.data import TokenizedSplit
    from autopeft.engine.predictor import AdapterPredictor
    from autopeft.model.placement import ModelStructure


Encoder = Callable[..., "TokenizedSplit"]
Collator = Callable[..., "dict[str, torch.Tensor]"]

_TEXT_COLUMNS = (ColumnSpec("text_columns", None, "text"), ColumnSpec("label_column", "label", "label", target=True))


@dataclass(frozen=True)
class TaskKind:
    """How one kind of task is trained and measured."""

    name: str
    #: peft's ``TaskType`` value (decides which heads peft keeps trainable and saves); None
    #: where peft has none (images): ``head_modules`` are then saved with the adapter.
    peft_task_type: str | None
    metric_names: tuple[str, ...]
    #: (model outputs, labels) → metrics; outputs are what ``batch_outputs`` gives per example.
    compute_metrics: Callable[[np.ndarray, Any], dict[str, float]]
    #: Whether labels are classes (mapped to ids) or real values / text.
    categorical: bool
    #: Objective when the config gives none.
    default_metric: str
    default_mode: str
    #: The transformers Auto class that loads the model with this kind's head.
    auto_class: str = "AutoModelForSequenceClassification"
    #: The columns it reads: DataConfig field, default name, what each must hold.
    columns: tuple[ColumnSpec, ...] = _TEXT_COLUMNS
    #: (frame, input columns, target column or None, label names, preprocessor, max_length) → split.
    encode: Encoder = encode_texts
    #: (split, indices, pad id) → the model's keyword arguments for one batch, labels included.
    collate: Collator = collate_texts
    #: (model output, batch) → one row per example for ``compute_metrics``.
    batch_outputs: Callable[[Any, Mapping[str, Any]], np.ndarray] = logit_outputs
    #: (predictor, frame, batch size) → the prediction frame the pyfunc model returns.
    present: Callable[[AdapterPredictor, pd.DataFrame, int], pd.DataFrame] = present_classes
    #: The pyfunc model's output columns and their MLflow types ("string[]": a list of strings).
    outputs: tuple[tuple[str, str], ...] = (("label", "string"), ("score", "double"))
    #: (model config, location) → the tokenizer or image processor.
    load_preprocessor: Callable[[ModelConfig, str], Any] = load_tokenizer
    #: Modules trained in full and saved with the adapter (the fresh head), where peft's task
    #: type does not already do it.
    head_modules: tuple[str, ...] = ()
    #: Whether prompt learning may prepend virtual tokens to the inputs: peft does for sequence
    #: classification and causal LM (padding the labels for the latter), but not for per-token
    #: labels (logits and labels would differ in length), and images have no tokens.
    takes_virtual_tokens: bool = True
    #: Extra ``from_pretrained`` arguments (e.g. replace a pretrained head of another size).
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Whether real-valued targets are standardised for training with the training split's
    #: mean and std (and outputs mapped back): a fresh head and a learning rate tuned for
    #: unit-scale outputs do not reach targets on another scale within a trial's steps.
    standardise_targets: bool = False
    #: (train split, validation split, number of labels) → the trivial predictors' outputs on
    #: the validation split (one per constant prediction: each class; the training mean; the
    #: unigram) and the loss of the training prior (``tasks.trivial``). Every trial is judged
    #: against the best of them on the objective.
    trivial: Callable[[TokenizedSplit, TokenizedSplit, int], tuple[list[np.ndarray], float]] | None = majority_class

    def model_kwargs(self, label_names: Sequence[str]) -> dict[str, Any]:
        """Arguments for the Auto class's ``from_pretrained`` / the model config."""
        if self.auto_class == "AutoModelForCausalLM":
            return {}
        if self.categorical:
            return {
                "num_labels": len(label_names),
                "id2label": dict(enumerate(label_names)),
                "label2id": {name: i for i, name in enumerate(label_names)},
            }
        return {"num_labels": 1, "problem_type": "regression"}

    def load_model(self, spec: ModelConfig, location: str, label_names: Sequence[str], *,
                   torch_dtype: Any = None) -> Any:
        """The base model with this kind's head (fresh where it has labels)."""
        return load_classifier(spec, location, {**self.model_kwargs(label_names), **self.load_kwargs},
                               torch_dtype=torch_dtype, auto_class=self.auto_class)

    def structure(self, spec: ModelConfig, location: str, label_names: Sequence[str] = ("0", "1")
                  ) -> ModelStructure:
        """The placement structure of the model with this kind's head, scanned on the meta device
        (no weights loaded): what a space is validated against before any trial runs."""
        return scan(skeleton(spec, location, self.model_kwargs(label_names), auto_class=self.auto_class))

    def prepare_peft_config(self, peft_config: Any) -> Any:
        """Add ``head_modules`` to the config's ``modules_to_save`` (configs that have one)."""
        if self.head_modules and hasattr(peft_config, "modules_to_save"):
            current = list(peft_config.modules_to_save or [])
            peft_config.modules_to_save = current + [m for m in self.head_modules if m not in current]
        return peft_config


#: Task metrics where lower is better (every other task metric: higher).
MINIMISED_METRICS = frozenset({"loss", "perplexity", "mse"})

_KINDS: dict[str, TaskKind] = {}


def register_task(kind: TaskKind) -> TaskKind:
    """Add a task kind to the registry (one line per kind, in ``tasks/kinds.py``)."""
    if kind.name in _KINDS:
        raise ValueError(f"task kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def get_task(name: str) -> TaskKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise ConfigError(f"task.kind: unknown task {name!r} (expected one of: {', '.join(_KINDS)})") from None


def all_tasks() -> list[TaskKind]:
    """Every registered task kind, in registration order."""
    return list(_KINDS.values())


def task_names() -> list[str]:
    return list(_KINDS)
