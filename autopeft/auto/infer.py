"""Zero-config: a model and a data file are enough; every other choice is inferred here.

Each choice is a :class:`Choice`: the config field it sets, the value and the reason, printed in
one line before anything starts and written as a comment by ``autopeft init``. What the data
cannot settle (two columns that could each be the label) is a one-line
:class:`~autopeft.errors.ConfigError` that lists the candidates and the flag that decides.

The rules, in order:

- task kind: two list columns (words, one tag per word) → token classification; a column of
  image paths → image classification; prompt/response-like column names (instruction/output,
  question/answer, ...) → causal LM; else the label column decides: numbers with many distinct
  values → regression, few → classification;
- label column: ``--label``, else a conventional name (label, labels, target, score, class, y),
  else the only column with few distinct values;
- text columns: ``--text``, else the free-text columns (one, or a sentence pair);
- metric: the kind's default; MCC (two classes) or macro F1 (more) when classes are imbalanced;
- space: by task kind and model size; ``max_length``: the 95th percentile of the data's token
  lengths, capped by the model;
- resources: one trial at a time on every CPU core, or one trial per GPU.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autopeft.auto.profile import ColumnProfile, normalised, profile
from autopeft.config import HubSource, ModelConfig, checked_encoding
from autopeft.data import (
    MESSAGES_COLUMN_FIELD,
    SPLIT_NAMES,
    cell_text,
    class_labels,
    data_suffix,
    detect_header,
    fetch,
    is_data,
    is_url,
    joined_prompts,
    list_cell,
    local_copy,
    locate,
    not_a_file,
    prompt_ids,
    prompts_and_responses,
    read_data,
    read_hub_split,
    saved_dataset,
    saved_splits,
    split_of,
)
from autopeft.errors import ConfigError, DataError
from autopeft.model.loading import load_auto_config, load_tokenizer, resolve_location
from autopeft.tasks import get_task, task_names

LABEL_NAMES = ("label", "labels", "target", "score", "class", "y", "sentiment", "emotion", "intent", "polarity", "stance")
#: A name that ends in one of these names a label too ('airline_sentiment', 'gold_label'); not
#: 'y' or 'score', which end many other names ('city', 'credit_score').
LABEL_SUFFIXES = ("label", "labels", "target", "class", "sentiment", "emotion", "intent", "polarity", "stance")
#: Columns of instruction data that give the prompt what it works on: Alpaca's input (empty where
#: the instruction says it all), Dolly's and reading comprehension's context. Beside a prompt
#: column, part of the prompt, below it.
PROMPT_CONTEXT_NAMES = ("input", "context", "passage")
#: (prompt, response) column names of instruction data, most specific first.
PROMPT_RESPONSE_NAMES = (("prompt", "response"), ("instruction", "output"), ("instruction", "response"),
                         ("prompt", "completion"), ("question", "answer"), ("input", "output"),
                         ("query", "response"), ("source", "target"))
TOKENS_NAMES = ("tokens", "words")
TAGS_NAMES = ("tags", "ner_tags", "pos_tags", "labels", "label")
#: Names of a column that puts each row in a split (its values: train, dev, test, ...).
SPLIT_COLUMN_NAMES = ("split", "splits", "subset", "partition", "set", "datasplit", "splitname", "dataset", "fold")
#: Two text columns that form a sentence pair, in the order the model reads them.
PAIR_NAMES = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question", "sentence"),
              ("question1", "question2"), ("text_a", "text_b"), ("sentence_a", "sentence_b"), ("text", "text_pair"),
              ("query", "passage"), ("question", "context"))
#: Names of a single text column: read as the model's input even where its values repeat (short
#: intents, product titles), which the profile alone would take for a label.
TEXT_NAMES = ("text", "sentence", "review", "content", "document", "comment", "utterance", "tweet", "body",
              "query", "question", "input")
#: Mean words a row of a text the model reads has at least, where other columns of distinct values
#: (ids, user names, dates, URLs) have fewer.
SENTENCE_WORDS = 3
#: ... and letters make at least this share of its characters (a timestamp's three words have none).
SENTENCE_LETTERS = 0.5
#: Scripts written without spaces (Chinese, Japanese, Thai): a sentence is this many of their letters
#: a row on average, not 3 words.
UNSPACED_SENTENCE_LETTERS = 8
#: Regression when the target is numeric with more distinct values than this ...
MAX_CLASSES = 20
#: ... unless a column so named holds whole numbers 0..K-1, all present: class ids, as a Hub
#: ClassLabel saves them (77 intents, 150 topics). A 'score' or 'target' of 0..30 stays a regression.
CLASS_ID_NAMES = ("label", "labels", "class", "classid", "labelid", "intent", "category", "topic")
#: Classes are imbalanced when the largest is this many times the smallest (two classes) ...
IMBALANCE_BINARY = 2.0
#: ... or this many times with more classes (macro F1 then weighs each class alike).
IMBALANCE_MULTICLASS = 3.0
#: Token length percentile that sets ``max_length``: longer examples are cut.
LENGTH_PERCENTILE = 95
#: Models at least this large get the decoder space (small learning rates, fewer rank choices).
LARGE_MODEL_PARAMS = 1_000_000_000
#: ``--train hub:NAME[:CONFIG]`` reads a dataset from the Hugging Face Hub.
HUB_PREFIX = "hub:"
#: Wall-clock budget when none is given: a coffee break.
DEFAULT_TIME = "15m"


@dataclass(frozen=True)
class Request:
    """What a user gives: a model and a training file; the rest only to settle what inference cannot."""

    model: str
    train: str
    test: str | None = None
    validation: str | None = None
    label: str | None = None
    text: tuple[str, ...] = ()
    task: str | None = None
    time: str | None = None
    encoding: str | None = None


@dataclass(frozen=True)
class Choice:
    #: The config field it sets (dotted), e.g. ``task.kind``.
    field: str
    value: Any
    reason: str

    def line(self) -> str:
        shown = ", ".join(map(str, self.value)) if isinstance(self.value, (list, tuple)) else self.value
        return f"{self.field} = {shown}: {self.reason}"


@dataclass
class Inference:
    choices: list[Choice] = field(default_factory=list)

    def choose(self, field_name: str, value: Any, reason: str) -> Any:
        self.choices.append(Choice(field_name, value, reason))
        return value

    def raw_config(self) -> dict[str, Any]:
        """The choices as a config mapping (``config.resolve`` validates it like a file)."""
        raw: dict[str, Any] = {}
        for choice in self.choices:
            node = raw
            *parents, leaf = choice.field.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = list(choice.value) if isinstance(choice.value, tuple) else choice.value
        return raw


@dataclass(frozen=True)
class ModelFacts:
    causal: bool
    vision: bool
    params: int
    max_positions: int | None
    model_type: str


def model_facts(name_or_path: str) -> tuple[str, ModelFacts]:
    """Where the model is and what it is, from its config alone (no weights loaded)."""
    location = resolve_location(name_or_path)
    config = load_auto_config(ModelConfig(name_or_path=name_or_path), location)
    architectures = [str(a) for a in (getattr(config, "architectures", None) or [])]
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures) or (
        bool(getattr(config, "is_decoder", False)) and not getattr(config, "is_encoder_decoder", False))
    vision = getattr(config, "vocab_size", None) is None and getattr(config, "image_size", None) is not None
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0) or 0)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    params = vocab * hidden + 12 * layers * hidden * hidden  # embeddings + attention and MLP blocks
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return location, ModelFacts(causal=causal, vision=vision, params=params,
                                max_positions=int(positions) if positions else None,
                                model_type=str(getattr(config, "model_type", "")))


def infer(request: Request) -> Inference:
    """Every choice a zero-config search makes, with its reason; ConfigError/DataError when the
    data cannot settle one (before anything is computed or written)."""
    inference = Inference()
    location, facts = model_facts(request.model)
    inference.choose("model.name_or_path", request.model, _model_reason(facts))
    request, given_as = _saved_splits(request)
    if request.train.startswith(HUB_PREFIX):
        hub = _hub_source(request)
        frame = read_hub_split(hub, hub.train_split, "--train")
    else:
        if request.encoding is not None:  # checked as the config checks it, before the file is read with it
            inference.choose("data.encoding", checked_encoding(request.encoding, "--encoding"), "given (--encoding)")
        frame, _ = read_data(request.train, "--train", encoding=request.encoding)
        train_path = local_copy(request.train, "--train")
        if data_suffix(train_path) in (".csv", ".tsv") and not detect_header(train_path, field_name="--train",
                                                                             encoding=request.encoding):
            inference.choose("data.header", False, "the first row holds data, not column names: columns are "
                                                   "named by position ('0', '1', ...)")
    if frame.empty:
        raise DataError(f"--train: {request.train!r} has no rows")
    profiles = profile(frame)
    split_column = _split_column(frame, profiles, request)
    row_splits = frame[split_column].map(split_of) if split_column is not None else pd.Series(dtype=object)
    if split_column is not None:  # which rows are which split, not data the model reads
        profiles.pop(split_column)

    kind, columns, kind_reason = _task_and_columns(request, profiles, facts)
    inference.choose("task.kind", kind, kind_reason)
    if request.train.startswith(HUB_PREFIX):
        inference.choose("data.hub", hub.model_dump(exclude_none=True),
                         "--train hub:NAME[:CONFIG]; --validation and --test name its other splits")
    else:
        inference.choose("data.train", request.train if is_url(request.train) else str(train_path.resolve()),
                         given_as["train"])
        for split in ("validation", "test"):
            given = getattr(request, split)
            if given is not None and is_url(given):
                fetch(given, f"--{split}")  # here, so that a URL that cannot be fetched is named by its flag
                inference.choose(f"data.{split}", given, given_as[split])
            elif given is not None:
                path = locate(given, None)
                if not is_data(path):  # before resolve(), which raises RuntimeError on a symlink loop
                    raise DataError(not_a_file(f"--{split}", given))
                inference.choose(f"data.{split}", str(path.resolve()), given_as[split])
    if split_column is not None:
        counts = row_splits.value_counts()
        inference.choose("data.split_column", split_column, "its values put each row in a split: " + ", ".join(
            f"{counts[split]} {split}" for split in SPLIT_NAMES if split in counts))
        frame = frame[row_splits == "train"]  # the metric's class balance and max_length: train's rows only
    for column_field, (value, reason) in columns.items():
        inference.choose(f"data.{column_field}", value, reason)
    if request.validation is None and not (row_splits == "validation").any():
        inference.choose("data.validation_fraction", 0.1,
                         "no --validation file: 10% of train is carved out (fixed seed) to compare trials on")

    metric, mode, metric_reason = _metric(kind, frame, columns)
    inference.choose("objective.metric", metric, metric_reason)
    inference.choose("objective.mode", mode, "higher is better" if mode == "max" else "lower is better")

    space, space_reason = _space(kind, facts)
    inference.choose("space", space, space_reason)
    if kind != "image_classification":
        max_length, length_reason = _max_length(request.model, location, frame, kind, columns, facts)
        inference.choose("model.max_length", max_length, length_reason)

    inference.choose("budget.time", request.time or DEFAULT_TIME,
                     "--time" if request.time else "no --time: a coffee break; trials and steps are planned to fit it")
    _resources(inference)
    experiment, registered_model = names_for(request.train)
    inference.choose("tracking.experiment", experiment, f"named after the data ({request.train})")
    inference.choose("tracking.registered_model", registered_model, "the registered model the best adapter goes to")
    return inference


def _saved_splits(request: Request) -> tuple[Request, dict[str, str]]:
    """``request`` with ``--train`` a folder of splits that ``datasets``' ``save_to_disk`` wrote (a
    DatasetDict) read as its splits: train, and validation and test where it holds them and no
    flag names them; with the reason of each split's path."""
    given_as = {split: f"--{split}" for split in ("train", "validation", "test")}
    if request.train.startswith(HUB_PREFIX):
        return request, given_as
    root = local_copy(request.train, "--train")
    if saved_dataset(root) != "splits":
        return request, given_as
    splits = saved_splits(root)
    by_role: dict[str, str] = {}
    for name in splits:
        role = split_of(name)
        if role is not None:
            by_role.setdefault(role, name)
    if "train" not in by_role:
        raise DataError(f"--train: the saved DatasetDict {request.train!r} has no train split (splits: "
                        f"{', '.join(splits) or 'none'}); give one split's folder with --train")
    taken = ["train"] + [role for role in ("validation", "test") if getattr(request, role) is None and role in by_role]
    for role in taken:
        given_as[role] = f"the {by_role[role]!r} split of the saved DatasetDict --train {request.train}"
    found = {role: _child(request.train, by_role[role]) for role in taken}
    return dataclasses.replace(request, train=found["train"], validation=found.get("validation", request.validation),
                               test=found.get("test", request.test)), given_as


def _child(location: str, name: str) -> str:
    """``name`` inside the folder ``location`` names: a local path, or a URL (before its query)."""
    if is_url(location):
        parts = urllib.parse.urlsplit(location)
        return urllib.parse.urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))
    return str(Path(location).expanduser() / name)


def names_for(train: str) -> tuple[str, str]:
    """(experiment, registered model) named after the training data: a Hub dataset's name, or
    the file's stem (its folder's where the stem says only 'train')."""
    if train.startswith(HUB_PREFIX):
        data_name = train[len(HUB_PREFIX):].partition(":")[0].rstrip("/").rsplit("/", 1)[-1]
    elif is_url(train):  # its path, without the query (s3://bucket/reviews/train.csv?endpoint_override=...)
        data_name = _study_stem(Path(urllib.parse.urlsplit(train).path), resolve=False)
    else:
        data_name = _study_stem(Path(train).expanduser())
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", data_name).strip("-.")[:60] or "data"
    return f"autopeft-{name}", f"{name}-adapter"


def _model_reason(facts: ModelFacts) -> str:
    size = f"~{facts.params / 1e6:,.0f}M parameters" if facts.params else "size unknown"
    what = "a causal LM" if facts.causal else "an image model" if facts.vision else "an encoder"
    return f"--model: {facts.model_type or 'transformers'} model, {what}, {size}"


# -- task kind and columns ---------------------------------------------------------------------------

Columns = dict[str, tuple[Any, str]]


def _task_and_columns(request: Request, profiles: dict[str, ColumnProfile],
                      facts: ModelFacts) -> tuple[str, Columns, str]:
    names = list(profiles)
    if request.task is not None and request.task not in task_names():
        raise ConfigError(f"--task: unknown task kind {request.task!r} (expected one of: {', '.join(task_names())})")
    label = _named(request.label, names, "--label") if request.label else None
    texts = [_named(t, names, "--text") for t in request.text]
    if len(texts) > 2:
        raise ConfigError(f"--text: expected one or two text columns, found {len(texts)}")

    lists = [p for p in profiles.values() if p.kind == "list"]
    images = [p for p in profiles.values() if p.kind == "image"]
    pair = _generation_pair(profiles, label)
    wanted = request.task
    chats = [p.name for p in profiles.values() if p.kind == "conversation"]
    if chats and (wanted == "causal_lm" or (wanted is None and label is None)) \
            and (not texts or (len(texts) == 1 and texts[0] in chats)):
        return _conversation_columns(chats, texts, facts)
    if wanted == "token_classification" or (wanted is None and len(lists) >= 2):
        return _token_columns(lists, names, texts, label)
    if wanted == "image_classification" or (wanted is None and images and not texts):
        if not images:
            raise DataError(f"--task: image_classification needs a column of image file paths; none in "
                            f"{', '.join(names)}")
        image = texts[0] if texts else images[0].name
        label_name, label_reason = label_column(profiles, exclude={image}, given=label)
        return "image_classification", {"image_column": (image, "its values are image file paths"),
                                        "label_column": (label_name, label_reason)}, \
            f"column {image!r} holds image file paths"
    if wanted == "causal_lm" or (wanted is None and pair is not None):
        pair = pair or _conventional_pair(names, PROMPT_RESPONSE_NAMES)
        if pair is None:
            if len(texts) == 2:
                pair = (texts[0], texts[1])
            else:
                raise DataError(f"--task: causal_lm needs a prompt and a response column; name them with --text "
                                f"PROMPT --text RESPONSE (columns: {', '.join(names)})")
        reason = f"columns {pair[0]!r} and {pair[1]!r} are a prompt and the response to learn"
        if facts.causal:
            reason += " and the model is a causal LM"
        context = [] if texts else [name for name in names if normalised(name) in PROMPT_CONTEXT_NAMES
                                    and name not in pair and profiles[name].kind == "text"][:1]
        prompt: str | list[str] = [pair[0], *context] if context else pair[0]
        why = "the prompt (not trained on)" if not context else (
            f"the prompt (not trained on): {pair[0]!r}, then {context[0]!r} below it where a row has one")
        return "causal_lm", {"prompt_column": (prompt, why),
                             "response_column": (pair[1], "the response the model learns to write")}, reason

    free_text = [p.name for p in profiles.values() if p.free_text]
    if facts.causal and label is None and wanted is None and len(free_text) == 1 and len(profiles) == 1:
        # causal_lm learns a response to a prompt; plain text (continued pre-training) has neither
        raise DataError(f"--train: one text column ({free_text[0]!r}) and a causal LM: autopeft fine-tunes on "
                        "prompt/response pairs; give a prompt and a response column (--text PROMPT --text RESPONSE)")
    label_name, label_reason = label_column(profiles, exclude=set(texts), given=label)
    target = profiles[label_name]
    if wanted is not None:
        kind, kind_reason = wanted, "--task"
    elif target.kind == "number" and (target.distinct > MAX_CLASSES or not target.integral and target.distinct > 2) \
            and not (target.class_ids and normalised(label_name) in CLASS_ID_NAMES):
        kind = "regression"
        kind_reason = f"label {label_name!r} holds numbers with {target.distinct} distinct values"
    elif target.kind == "number" and target.distinct > MAX_CLASSES:
        kind = "sequence_classification"
        kind_reason = (f"label {label_name!r} holds the ids 0..{target.distinct - 1}, each present: "
                       f"{target.distinct} classes")
    else:
        kind = "sequence_classification"
        kind_reason = f"label {label_name!r} holds {target.distinct} distinct values (classes)"
    if not texts:
        texts, text_reason = _text_columns(profiles, exclude={label_name})
    else:
        text_reason = "--text"
    return kind, {"text_columns": (texts, text_reason), "label_column": (label_name, label_reason)}, kind_reason


def _split_column(frame: pd.DataFrame, profiles: dict[str, ColumnProfile], request: Request) -> str | None:
    """The column that puts each row in train, validation or test, as files that hold every split
    have one: named like one, every value a split's name, train and another among them. A
    --validation or --test file beside it is a one-line error: which rows would test the adapter?"""
    named = [name for name in profiles if normalised(name) in SPLIT_COLUMN_NAMES and name != request.label
             and name not in request.text and 2 <= profiles[name].distinct <= len(SPLIT_NAMES)]
    for name in named:
        splits = frame[name].map(split_of)
        if splits.notna().all() and (splits == "train").any():
            given = [f"--{split}" for split in ("validation", "test") if getattr(request, split) is not None]
            if given:
                raise DataError(f"--train: column {name!r} already puts each row in train, validation or test; "
                                f"give {' and '.join(given)} or that column, not both")
            return name
    return None


def _named(given: str, names: Sequence[str], flag: str) -> str:
    """A column the user named: exactly, or differing only in case and spacing; else 'did you mean'."""
    if given in names:
        return given
    loose = [n for n in names if normalised(n) == normalised(given)]
    if len(loose) == 1:
        return loose[0]
    close = difflib.get_close_matches(given, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(f"{flag}: no column {given!r} in the data (columns: {', '.join(names)}){hint}")


def _conversation_columns(chats: list[str], texts: list[str], facts: ModelFacts) -> tuple[str, Columns, str]:
    """causal_lm on a column of conversations (chat data): each one's last assistant turn is the
    response, the turns before it the prompt. TRL's conversational prompt and completion, two
    columns of turns under prompt/response names, make one conversation."""
    pair = _conventional_pair(chats, PROMPT_RESPONSE_NAMES)
    column: str | list[str]
    if texts:
        column, why = texts[0], "--text"
    elif len(chats) == 1:
        column, why = chats[0], "its cells are conversations, each turn a role and its text"
    elif len(chats) == 2 and pair is not None:
        column, why = list(pair), f"the turns of {pair[0]!r}, then those of {pair[1]!r}, make one conversation"
    else:
        raise DataError(f"--text: cannot tell which column holds the conversations (candidates: {', '.join(chats)}); "
                        "name it with --text COLUMN")
    held = f"column {column!r} holds" if isinstance(column, str) else f"columns {column[0]!r} and {column[1]!r} hold"
    reason = (f"{held} conversations: the last assistant turn of each is the response to learn, "
              "the turns before it the prompt")
    if facts.causal:
        reason += ", and the model is a causal LM"
    return "causal_lm", {MESSAGES_COLUMN_FIELD: (column, why)}, reason


def _conventional_pair(names: Sequence[str], pairs: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    by_norm = {normalised(n): n for n in names}
    for first, second in pairs:
        if normalised(first) in by_norm and normalised(second) in by_norm:
            return by_norm[normalised(first)], by_norm[normalised(second)]
    return None


def _generation_pair(profiles: dict[str, ColumnProfile], label: str | None) -> tuple[str, str] | None:
    """The (prompt, response) columns of instruction data, by their conventional names, where the
    response is free text to learn to write and no label names the answer instead: a 'target' of
    numbers is a regression's, an 'output' of yes/no a classification's, and 'question' and 'answer'
    beside a 'label' are a pair the label judges."""
    pair = _conventional_pair(list(profiles), PROMPT_RESPONSE_NAMES)
    if pair is None or label is not None or not profiles[pair[1]].free_text:
        return None
    labelled = {normalised(name) for name in profiles if name not in pair} & set(LABEL_NAMES)
    return None if labelled else pair


def label_column(profiles: dict[str, ColumnProfile], *, exclude: set[str], given: str | None) -> tuple[str, str]:
    if given is not None:
        return given, "--label"
    # a column of one value (a language, a source) is no label: a label needs two classes
    candidates = {name: p for name, p in profiles.items() if name not in exclude and p.distinct != 1}
    by_norm = {normalised(n): n for n in candidates}
    for conventional in LABEL_NAMES:
        if conventional in by_norm and candidates[by_norm[conventional]].kind in ("number", "text"):
            return by_norm[conventional], "its conventional name"
    fitting = [p.name for p in candidates.values()
               if p.kind in ("number", "text") and not p.id_like and (p.categorical or p.kind == "number")]
    if len(fitting) == 1:
        return fitting[0], "the only column that can be a label (few distinct values, or numbers)"
    suffixed = [name for name in fitting if normalised(name).endswith(LABEL_SUFFIXES)]
    if len(suffixed) == 1:
        ending = next(end for end in LABEL_SUFFIXES if normalised(suffixed[0]).endswith(end))
        return suffixed[0], f"the only column whose name ends in {ending!r}"
    untitled = [name for name in fitting if normalised(name) not in TEXT_NAMES]
    if len(untitled) == 1 and len(fitting) == 2:  # short repeated texts beside a label: the text is named as one
        return untitled[0], "the only column that can be a label and is not named as a text"
    ids = [name for name in fitting if candidates[name].class_ids]
    if len(ids) == 1 and all(name.isdigit() for name in profiles):  # CoLA's tsv: source codes, then the label
        return ids[0], "no column is named (no header): the only column of class ids 0..K-1"
    constant = [name for name, p in profiles.items()
                if name not in exclude and p.distinct == 1 and normalised(name) in LABEL_NAMES]
    if constant and not fitting:  # the label is there, but one class: a filtered export, a wrong file
        raise DataError(f"--label: column {constant[0]!r} holds one value in every row; a label needs two classes "
                        "or more (check the file, or name another column with --label COLUMN)")
    listed = ", ".join(fitting or [p.name for p in candidates.values()])
    lists = [name for name, p in candidates.items() if p.kind == "list"]
    multi = (f"; {lists[0]!r} holds lists, and multi-label classification is not a task autopeft runs"
             if len(lists) == 1 and not fitting else "")
    raise DataError(f"--label: cannot tell which column is the label (candidates: {listed}); name it with "
                    f"--label COLUMN{multi}")


def _text_columns(profiles: dict[str, ColumnProfile], *, exclude: set[str]) -> tuple[list[str], str]:
    texts = [p.name for p in profiles.values() if p.name not in exclude and p.free_text]
    sentences = [name for name in texts if profiles[name].letter_share >= SENTENCE_LETTERS and (
        profiles[name].mean_words >= SENTENCE_WORDS or profiles[name].mean_non_latin_letters >= UNSPACED_SENTENCE_LETTERS)]
    if sentences and len(sentences) < len(texts):
        # ids, user names, dates, URLs beside the text: distinct values, but a word or two each, or digits
        short = ", ".join(repr(name) for name in texts if name not in sentences)
        if len(sentences) <= 2:
            what = "the only column" if len(sentences) == 1 else "the two columns: a sentence pair, in file order,"
            return sentences, (f"{what} of sentences ({short}: fewer than {SENTENCE_WORDS} words a row on average, "
                               "or mostly digits)")
        texts = sentences
    if len(texts) == 1:
        return texts, "the only free-text column"
    if len(texts) == 2:
        return texts, "the two free-text columns: a sentence pair, in file order"
    pair = _conventional_pair(texts, PAIR_NAMES)
    if pair is not None:
        return list(pair), "a conventional sentence pair"
    if not texts:
        by_norm = {normalised(p.name): p.name for p in profiles.values()
                   if p.name not in exclude and p.kind == "text" and not p.id_like}
        named = next((by_norm[n] for n in TEXT_NAMES if n in by_norm), None)
        if named is not None:
            return [named], "its conventional name (its values repeat, as a label's would)"
        raise DataError(f"--text: no column holds text to read (columns: {', '.join(profiles)}); name it with "
                        "--text COLUMN")
    raise DataError(f"--text: cannot tell which columns the model reads (candidates: {', '.join(texts)}); name one "
                    "or two with --text COLUMN")


def _token_columns(lists: list[ColumnProfile], names: Sequence[str], texts: list[str],
                   label: str | None) -> tuple[str, Columns, str]:
    by_name = {p.name: p for p in lists}
    if len(lists) < 2 and not (texts and label):
        raise DataError(f"--task: token_classification needs a column of word lists and one of tag lists "
                        f"(columns: {', '.join(names)})")

    def pick(given: str | None, conventional: Sequence[str], others: Sequence[ColumnProfile], fewest: bool) -> str:
        if given is not None:
            return given
        conv = _conventional_pair([p.name for p in others], [(c, c) for c in conventional])
        if conv is not None:
            return conv[0]
        ranked = sorted(others, key=lambda p: p.distinct_items)
        return (ranked[0] if fewest else ranked[-1]).name

    tags = pick(label, TAGS_NAMES, lists, fewest=True)
    words = pick(texts[0] if texts else None, TOKENS_NAMES, [p for p in lists if p.name != tags], fewest=False)
    reason = (f"columns {words!r} and {tags!r} hold lists ({by_name[words].distinct_items if words in by_name else '?'}"
              f" distinct words, {by_name[tags].distinct_items if tags in by_name else '?'} distinct tags)")
    return "token_classification", {"tokens_column": (words, "the word lists"),
                                    "tags_column": (tags, "one tag per word")}, reason


# -- metric, space, length, resources ----------------------------------------------------------------

def _metric(kind: str, frame: pd.DataFrame, columns: Columns) -> tuple[str, str, str]:
    task = get_task(kind)
    default = f"{kind}'s default"
    if kind not in ("sequence_classification", "image_classification"):
        return task.default_metric, task.default_mode, default
    counts = class_labels(frame[columns["label_column"][0]].dropna()).astype(str).value_counts()  # as the study reads them
    if counts.empty:  # no label at all: the data checks name the empty cells
        return task.default_metric, task.default_mode, default
    ratio = float(counts.iloc[0] / counts.iloc[-1])
    share = f"{counts.iloc[0] / counts.sum():.0%} of train is {counts.index[0]!r}"
    if len(counts) == 2 and ratio >= IMBALANCE_BINARY:
        return "mcc", "max", f"imbalanced classes ({share}): accuracy would reward predicting the majority class"
    if len(counts) > 2 and ratio >= IMBALANCE_MULTICLASS:
        return "f1", "max", (f"imbalanced classes ({share}, largest {ratio:.1f}x the smallest): macro F1 weighs "
                             "every class alike")
    return task.default_metric, task.default_mode, f"{default}; the classes are balanced ({share})"


def _space(kind: str, facts: ModelFacts) -> tuple[str, str]:
    if kind == "causal_lm" or facts.params >= LARGE_MODEL_PARAMS:
        return "llm-sft", ("a causal LM task" if kind == "causal_lm" else "a model of over 1B parameters") + \
            ": LoRA-style families, prompt and prefix tuning at small learning rates"
    return "lora-family", f"{kind} on a {facts.params / 1e6:,.0f}M-parameter model: LoRA, DoRA and IA3"


def _max_length(name_or_path: str, location: str, frame: pd.DataFrame, kind: str, columns: Columns,
                facts: ModelFacts) -> tuple[int, str]:
    tokenizer = load_tokenizer(ModelConfig(name_or_path=name_or_path), location)
    # lengths past the model's limit are what is measured here: not verbose, so that transformers
    # does not warn the user of 'indexing errors' that the study's truncation never meets
    sample = frame if len(frame) <= 2000 else frame.sample(n=2000, random_state=0)
    if kind == "token_classification":
        words = [[str(w) for w in (list_cell(v) or [])] for v in sample[columns["tokens_column"][0]]]
        lengths = [len(ids) for ids in tokenizer(words, is_split_into_words=True, verbose=False)["input_ids"]]
    elif kind == "causal_lm" and MESSAGES_COLUMN_FIELD in columns:  # each conversation as the model is prompted
        given = columns[MESSAGES_COLUMN_FIELD][0]
        pairs = prompts_and_responses(sample, [given] if isinstance(given, str) else list(given), "train")
        prompts = prompt_ids(pd.Series([turns for turns, _ in pairs], dtype=object), tokenizer)
        replies = tokenizer([reply for _, reply in pairs], add_special_tokens=False, verbose=False)["input_ids"]
        lengths = [len(p) + len(r) + 1 for p, r in zip(prompts, replies, strict=True)]
    elif kind == "causal_lm":
        prompt, response = columns["prompt_column"][0], columns["response_column"][0]
        prompts = joined_prompts(sample, [prompt] if isinstance(prompt, str) else prompt)
        joined = [p + r for p, r in zip(_texts(prompts), _texts(sample[response]), strict=True)]
        lengths = [len(ids) + 1 for ids in tokenizer(joined, verbose=False)["input_ids"]]
    else:
        texts = columns["text_columns"][0]
        first = _texts(sample[texts[0]])
        second = _texts(sample[texts[1]]) if len(texts) == 2 else None
        lengths = [len(ids) for ids in tokenizer(first, second, verbose=False)["input_ids"]]
    wanted = int(np.percentile(lengths, LENGTH_PERCENTILE))
    limits = [n for n in (facts.max_positions, getattr(tokenizer, "model_max_length", None)) if n and n < 1_000_000]
    cap = min(limits) if limits else 512
    chosen = max(16, min(cap, -(-wanted // 8) * 8))
    reason = (f"{LENGTH_PERCENTILE}th percentile of train's token lengths is {wanted} "
              f"(longest {max(lengths)}); rounded up to a multiple of 8")
    if chosen == cap and wanted > cap:
        reason += f", capped at the model's limit {cap}"
    return chosen, reason


def _texts(values: pd.Series) -> list[str]:
    """Cells as the tokenizer's strings, an empty cell as '' (pandas keeps it missing through
    ``astype(str)``, and a tokenizer refuses it); the data checks then name the empty cells."""
    return [cell_text(cell) for cell in values]


def _resources(inference: Inference) -> None:
    # deferred: torch takes seconds to import; only the resource choice needs it
    import torch

    cpus = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    if gpus:
        inference.choose("budget.gpus_per_trial", 1, f"{gpus} GPU(s) here: one trial per GPU")
        inference.choose("budget.concurrent_trials", gpus, f"{gpus} GPU(s) here")
        inference.choose("budget.cpus_per_trial", max(1, cpus // gpus), f"{cpus} CPU cores shared by the GPUs")
    else:
        inference.choose("budget.cpus_per_trial", cpus,
                         f"no GPU: one trial at a time on all {cpus} CPU cores (two at once slow each other down)")


def _study_stem(train: Path, *, resolve: bool = True) -> str:
    """A name for the experiment: the file's stem (less a compression's suffix: ``reviews.csv.gz``
    is 'reviews'), or its folder's where the stem says only 'train'. ``resolve``: a local path,
    whose folder is found on this machine (a URL's path is taken as written)."""
    stem = train.stem
    if data_suffix(train) != train.suffix.lower():
        stem = Path(stem).stem
    folder = (train.resolve() if resolve else train).parent.name
    if normalised(stem) in ("train", "training", "data", "dataset", "trainset") and folder:
        stem = folder
    return stem


def _hub_source(request: Request) -> HubSource:
    """``--train hub:NAME[:CONFIG]``: a Hub dataset (or a local folder ``datasets`` reads); its
    train split trains, and ``--validation``/``--test`` name its other splits."""
    name, _, config = request.train[len(HUB_PREFIX):].partition(":")
    if not name:
        raise ConfigError(f"--train: expected hub:NAME or hub:NAME:CONFIG, found {request.train!r}")
    return HubSource(name=name, config=config or None, validation_split=request.validation,
                     test_split=request.test)
