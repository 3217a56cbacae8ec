"""Task kinds: the model class, the peft task type, the data it reads, how it is encoded and
batched, the metrics, and what a prediction looks like.

Each kind is one :class:`TaskKind` in a registry, so adding a kind means adding one entry, not
touching the trial, the search or the predictor: they ask the kind.

| kind | reads | model | peft task type | metrics |
| --- | --- | --- | --- | --- |
| sequence_classification | text_columns (1-2), label_column | AutoModelForSequenceClassification | SEQ_CLS | accuracy, f1, mcc |
| regression | text_columns (1-2), label_column (numbers) | AutoModelForSequenceClassification | SEQ_CLS | mse, pearson, spearman |
| causal_lm | prompt_column, response_column | AutoModelForCausalLM | CAUSAL_LM | loss, perplexity (response tokens only) |
| token_classification | tokens_column (word lists), tags_column (tag lists) | AutoModelForTokenClassification | TOKEN_CLS | accuracy, f1 (macro, per word) |
| image_classification | image_column (file paths), label_column | AutoModelForImageClassification | none (head saved as modules_to_save) | accuracy, f1, mcc |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from autopeft import data as _data
from autopeft.data import IGNORE, ColumnSpec
from autopeft.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from autopeft.config import ModelConfig
    from autopeft.data import TokenizedSplit
    from autopeft.engine.predictor import AdapterPredictor
    from autopeft.model.placement import ModelStructure


# --------------------------------------------------------------------------- metrics


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


def _token_metrics(outputs: np.ndarray, labels: Sequence[Sequence[int]]) -> dict[str, float]:
    """Accuracy and macro F1 over the labelled tokens (each word's first subword). ``outputs``
    holds each example's predicted class per token (as :func:`_token_outputs` gives)."""
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


def _lm_metrics(outputs: np.ndarray, labels: Any) -> dict[str, float]:
    """Loss per response token over the whole split (not a mean of batch means, which would
    weigh short responses more) and its perplexity. ``outputs``: (N, 2) NLL sum and token count."""
    nll, count = float(outputs[:, 0].sum()), float(outputs[:, 1].sum())
    loss = nll / count if count else float("nan")
    # exp overflows past ~709; a perplexity that large means "diverged" either way
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("nan")}


# --------------------------------------------------------------------------- outputs per batch
# (model output, batch) → one row per example, kept by ``training.predict`` in example order.


def _logit_outputs(out: Any, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
    return out.logits.float().cpu().numpy()


def _token_outputs(out: Any, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Each example's predicted class per token (ragged: its own length), not the logits."""
    preds = out.logits[:, -batch["input_ids"].shape[1]:].argmax(dim=-1).cpu().numpy()
    lengths = batch["attention_mask"].sum(dim=1).cpu().tolist()
    rows = np.empty(len(lengths), dtype=object)
    for j, n in enumerate(lengths):
        rows[j] = preds[j, : int(n)]
    return rows


def _lm_outputs(out: Any, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Per example: summed NLL of its response tokens and their count (logits at t predict
    t+1). Prompt-learning families prepend virtual tokens to the logits: only the last
    ``seq_len`` positions belong to the batch's tokens."""
    import torch

    labels = batch["labels"]
    logits = out.logits[:, -labels.shape[1]:].float()
    shifted_logits, shifted_labels = logits[:, :-1], labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(shifted_logits.transpose(1, 2), shifted_labels,
                                            ignore_index=IGNORE, reduction="none")
    counts = (shifted_labels != IGNORE).sum(dim=1)
    return torch.stack([nll.sum(dim=1), counts.float()], dim=1).cpu().numpy().astype(np.float64)


# --------------------------------------------------------------------------- predictions


def _present_classes(predictor: AdapterPredictor, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """A label and its probability per row."""
    import pandas as pd
    import torch

    outputs, _ = predictor.outputs(predictor.encode(frame), batch_size)
    probs = torch.softmax(torch.from_numpy(outputs), dim=-1).numpy()
    names = predictor.metadata["label_names"]
    best = probs.argmax(axis=-1)
    return pd.DataFrame({"label": [names[i] for i in best], "score": probs.max(axis=-1)})


def _present_values(predictor: AdapterPredictor, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    import pandas as pd

    outputs, _ = predictor.outputs(predictor.encode(frame), batch_size)
    return pd.DataFrame({"value": outputs.reshape(-1)})


def _present_tags(predictor: AdapterPredictor, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """One tag per word (a list per row); words cut off by ``max_length`` get none."""
    import pandas as pd

    split = predictor.encode(frame)
    outputs, _ = predictor.outputs(split, batch_size)
    names = predictor.metadata["label_names"]
    tags = [[names[int(p)] for p, g in zip(row_pred, row_gold, strict=True) if g != IGNORE]
            for row_pred, row_gold in zip(outputs, split.labels, strict=True)]
    return pd.DataFrame({"tags": tags})


def _present_generation(predictor: AdapterPredictor, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """Greedy continuation of each prompt, ``task_config.max_new_tokens`` tokens at most."""
    import pandas as pd
    import torch

    split = predictor.encode(frame)
    tokenizer = predictor.tokenizer
    model: Any = predictor.model  # a peft model: generate() is not on nn.Module
    max_new = int(predictor.metadata.get("task_config", {}).get("max_new_tokens", 64))
    pad = _data.pad_id(tokenizer)
    texts: list[str] = []
    for start in range(0, len(split), batch_size):
        rows = split.input_ids[start : start + batch_size]
        width = max(len(r) for r in rows)
        # left padding: every prompt ends where generation starts
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, row in enumerate(rows):
            ids[j, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[j, width - len(row):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(predictor.device), attention_mask=mask.to(predictor.device),
                                 max_new_tokens=max_new, do_sample=False, pad_token_id=pad,
                                 eos_token_id=getattr(tokenizer, "eos_token_id", None))
        out = out.cpu()
        # transformers returns prompt + continuation; guard for generate paths that return
        # only the new tokens (e.g. from input embeddings)
        new = out[:, width:] if out.shape[1] >= width and torch.equal(out[:, :width], ids) else out
        texts.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return pd.DataFrame({"text": texts})


# --------------------------------------------------------------------------- the registry


def _load_tokenizer(spec: ModelConfig, location: str) -> Any:
    from autopeft.model.loading import load_tokenizer

    return load_tokenizer(spec, location)


def _load_image_processor(spec: ModelConfig, location: str) -> Any:
    from autopeft.model.loading import load_image_processor

    return load_image_processor(spec, location)


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
    encode: Encoder = _data.encode_texts
    #: (split, indices, pad id) → the model's keyword arguments for one batch, labels included.
    collate: Collator = _data.collate_texts
    #: (model output, batch) → one row per example for ``compute_metrics``.
    batch_outputs: Callable[[Any, Mapping[str, Any]], np.ndarray] = _logit_outputs
    #: (predictor, frame, batch size) → the prediction frame the pyfunc model returns.
    present: Callable[[AdapterPredictor, pd.DataFrame, int], pd.DataFrame] = _present_classes
    #: The pyfunc model's output columns and their MLflow types ("string[]": a list of strings).
    outputs: tuple[tuple[str, str], ...] = (("label", "string"), ("score", "double"))
    #: (model config, location) → the tokenizer or image processor.
    load_preprocessor: Callable[[ModelConfig, str], Any] = _load_tokenizer
    #: Modules trained in full and saved with the adapter (the fresh head), where peft's task
    #: type does not already do it.
    head_modules: tuple[str, ...] = ()
    #: Extra ``from_pretrained`` arguments (e.g. replace a pretrained head of another size).
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)

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
        from autopeft.model.loading import load_classifier

        return load_classifier(spec, location, {**self.model_kwargs(label_names), **self.load_kwargs},
                               torch_dtype=torch_dtype, auto_class=self.auto_class)

    def structure(self, spec: ModelConfig, location: str, label_names: Sequence[str] = ("0", "1")
                  ) -> ModelStructure:
        """The placement structure of the model with this kind's head, scanned on the meta device
        (no weights loaded): what a space is validated against before any trial runs."""
        from autopeft.model.loading import skeleton
        from autopeft.model.placement import scan

        return scan(skeleton(spec, location, self.model_kwargs(label_names), auto_class=self.auto_class))

    def prepare_peft_config(self, peft_config: Any) -> Any:
        """Add ``head_modules`` to the config's ``modules_to_save`` (configs that have one)."""
        if self.head_modules and hasattr(peft_config, "modules_to_save"):
            current = list(peft_config.modules_to_save or [])
            peft_config.modules_to_save = current + [m for m in self.head_modules if m not in current]
        return peft_config


#: Task metrics where lower is better (every other task metric: higher).
MINIMISED_METRICS = frozenset({"loss", "perplexity", "mse"})

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
        columns=(ColumnSpec("text_columns", None, "text"), ColumnSpec("label_column", "label", "value", target=True)),
        present=_present_values,
        outputs=(("value", "double"),),
    ),
    "causal_lm": TaskKind(
        name="causal_lm",
        peft_task_type="CAUSAL_LM",
        metric_names=("loss", "perplexity"),
        compute_metrics=_lm_metrics,
        categorical=False,
        default_metric="loss",
        default_mode="min",
        auto_class="AutoModelForCausalLM",
        columns=(ColumnSpec("prompt_column", "prompt", "text"),
                 ColumnSpec("response_column", "response", "text", target=True)),
        encode=_data.encode_prompt_response,
        collate=_data.collate_token_labels,
        batch_outputs=_lm_outputs,
        present=_present_generation,
        outputs=(("text", "string"),),
    ),
    "token_classification": TaskKind(
        name="token_classification",
        peft_task_type="TOKEN_CLS",
        metric_names=("accuracy", "f1", "loss"),
        compute_metrics=_token_metrics,
        categorical=True,
        default_metric="f1",
        default_mode="max",
        auto_class="AutoModelForTokenClassification",
        columns=(ColumnSpec("tokens_column", "tokens", "words"), ColumnSpec("tags_column", "tags", "tags", target=True)),
        encode=_data.encode_words,
        collate=_data.collate_token_labels,
        batch_outputs=_token_outputs,
        present=_present_tags,
        outputs=(("tags", "string[]"),),
        load_kwargs={"ignore_mismatched_sizes": True},
    ),
    "image_classification": TaskKind(
        name="image_classification",
        peft_task_type=None,
        metric_names=("accuracy", "f1", "mcc", "loss"),
        compute_metrics=_classification_metrics,
        categorical=True,
        default_metric="accuracy",
        default_mode="max",
        auto_class="AutoModelForImageClassification",
        columns=(ColumnSpec("image_column", "image", "image"), ColumnSpec("label_column", "label", "label", target=True)),
        encode=_data.encode_images,
        collate=_data.collate_images,
        load_preprocessor=_load_image_processor,
        head_modules=("classifier",),
        # a pretrained ViT comes with an ImageNet head; ours has the task's classes
        load_kwargs={"ignore_mismatched_sizes": True},
    ),
}


def get_task(name: str) -> TaskKind:
    try:
        return _TASKS[name]
    except KeyError:
        raise ConfigError(f"task.kind: unknown task {name!r} (expected one of: {', '.join(_TASKS)})") from None


def task_names() -> list[str]:
    return list(_TASKS)
