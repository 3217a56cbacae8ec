"""Task kinds: the model class, the peft task type, the data it reads, how it is encoded and
batched, the metrics, and what a prediction looks like.

Each kind is one :class:`TaskKind` in a registry, so adding a kind means adding one entry, not
touching the trial, the search or the predictor: they ask the kind.

| kind | reads | model | peft task type | metrics |
| --- | --- | --- | --- | --- |
| sequence_classification | text_columns (1-2), label_column | AutoModelForSequenceClassification | SEQ_CLS | accuracy, f1, mcc |
| regression | text_columns (1-2), label_column (numbers; learnt standardised) | AutoModelForSequenceClassification | SEQ_CLS | mse, pearson, spearman |
| causal_lm | prompt_column, response_column | AutoModelForCausalLM | CAUSAL_LM | loss, perplexity (response tokens only) |
| token_classification | tokens_column (word lists), tags_column (tag lists) | AutoModelForTokenClassification | TOKEN_CLS | accuracy, f1 (macro, per word) |
| image_classification | image_column (file paths), label_column | AutoModelForImageClassification | none (head saved as modules_to_save) | accuracy, f1, mcc |
"""

from __future__ import annotations

from autopeft.data import (
    ColumnSpec,
    collate_images,
    collate_token_labels,
    encode_images,
    encode_prompt_response,
    encode_words,
)
from autopeft.model.loading import load_image_processor
from autopeft.tasks.base import TaskKind, register_task
from autopeft.tasks.metrics import classification_metrics, lm_metrics, regression_metrics, token_metrics
from autopeft.tasks.outputs import lm_outputs, present_generation, present_tags, present_values, token_outputs
from autopeft.tasks.trivial import majority_tag, training_mean, unigram

register_task(TaskKind(
    name="sequence_classification",
    peft_task_type="SEQ_CLS",
    metric_names=("accuracy", "f1", "mcc", "loss"),
    compute_metrics=classification_metrics,
    categorical=True,
    default_metric="accuracy",
    default_mode="max",
))

register_task(TaskKind(
    name="regression",
    peft_task_type="SEQ_CLS",
    metric_names=("mse", "pearson", "spearman", "loss"),
    compute_metrics=regression_metrics,
    categorical=False,
    default_metric="pearson",
    default_mode="max",
    columns=(ColumnSpec("text_columns", None, "text"), ColumnSpec("label_column", "label", "value", target=True)),
    present=present_values,
    outputs=(("value", "double"),),
    # issue #24, GLUE-style 0-5 targets, LoRA r16 at LR 1e-3 for 500 steps: Pearson 0.23 raw, 0.86 standardised
    standardise_targets=True,
    trivial=training_mean,
))

register_task(TaskKind(
    name="causal_lm",
    peft_task_type="CAUSAL_LM",
    metric_names=("loss", "perplexity"),
    compute_metrics=lm_metrics,
    categorical=False,
    default_metric="loss",
    default_mode="min",
    auto_class="AutoModelForCausalLM",
    columns=(ColumnSpec("prompt_column", "prompt", "text", joined=True),
             ColumnSpec("response_column", "response", "text", target=True)),
    encode=encode_prompt_response,
    collate=collate_token_labels,
    batch_outputs=lm_outputs,
    present=present_generation,
    outputs=(("text", "string"),),
    trivial=unigram,
))

register_task(TaskKind(
    name="token_classification",
    peft_task_type="TOKEN_CLS",
    metric_names=("accuracy", "f1", "loss"),
    compute_metrics=token_metrics,
    categorical=True,
    default_metric="f1",
    default_mode="max",
    auto_class="AutoModelForTokenClassification",
    columns=(ColumnSpec("tokens_column", "tokens", "words"), ColumnSpec("tags_column", "tags", "tags", target=True)),
    encode=encode_words,
    collate=collate_token_labels,
    batch_outputs=token_outputs,
    present=present_tags,
    outputs=(("tags", "string[]"),),
    load_kwargs={"ignore_mismatched_sizes": True},
    takes_virtual_tokens=False,
    trivial=majority_tag,
))

register_task(TaskKind(
    name="image_classification",
    peft_task_type=None,
    metric_names=("accuracy", "f1", "mcc", "loss"),
    compute_metrics=classification_metrics,
    categorical=True,
    default_metric="accuracy",
    default_mode="max",
    auto_class="AutoModelForImageClassification",
    columns=(ColumnSpec("image_column", "image", "image"), ColumnSpec("label_column", "label", "label", target=True)),
    encode=encode_images,
    collate=collate_images,
    load_preprocessor=load_image_processor,
    head_modules=("classifier",),
    takes_virtual_tokens=False,
    # a pretrained ViT comes with an ImageNet head; ours has the task's classes
    load_kwargs={"ignore_mismatched_sizes": True},
))
