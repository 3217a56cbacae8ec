"""Data: load once, check against the config, split, tokenize once, cache by fingerprint.

The driver does all of this before Ray starts; trials receive the tokenized splits through the
Ray object store and never touch the raw files or the tokenizer.

What differs between task kinds (which columns are read and what they must hold, how a frame
becomes a split, how a batch is padded) lives in the encoders and collators below; each
:class:`~autopeft.tasks.TaskKind` names its own, so the loading, caching and checking code here
is shared by every kind.
"""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from autopeft.errors import DataError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from autopeft.config import DataConfig
    from autopeft.tasks import TaskKind

SPLITS = ("train", "validation", "test")
_READERS = {
    ".csv": lambda p: pd.read_csv(p),
    ".tsv": lambda p: pd.read_csv(p, sep="\t", quoting=csv.QUOTE_NONE),
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".json": lambda p: pd.read_json(p),
    ".parquet": lambda p: pd.read_parquet(p),
}


#: Label value on tokens that no loss or metric reads (prompt, padding, later subwords);
#: the ``ignore_index`` of PyTorch's and transformers' cross-entropy.
IGNORE = -100

#: DataConfig fields that name columns; a task kind reads some of them.
COLUMN_FIELDS = ("text_columns", "label_column", "prompt_column", "response_column", "tokens_column",
                 "tags_column", "image_column")


@dataclass(frozen=True)
class Column:
    """One column a task kind reads: the config field that names it and what it must hold."""

    field: str
    name: str
    #: text | label (a class) | value (a number) | words (a list of words) | tags (a list of
    #: classes, one per word) | image (a path to an image file)
    kind: str
    #: The column the model learns to predict (else an input the predictor reads too).
    target: bool = False


@dataclass(frozen=True)
class ColumnSpec:
    """A column a task kind reads: its DataConfig field, the default name, what it holds."""

    field: str
    default: str | None
    kind: str
    target: bool = False


def columns_for(cfg: DataConfig, task: TaskKind) -> list[Column]:
    """The columns ``task`` reads under ``cfg``; DataError for one it needs but is not named,
    or for a column field set that this task kind does not read."""
    wanted = {spec.field for spec in task.columns}
    from autopeft.config import DataConfig as _DataConfig

    for name in COLUMN_FIELDS:
        value = getattr(cfg, name, None)
        if name not in wanted and value is not None and value != _DataConfig.model_fields[name].default:
            reads = ", ".join(dict.fromkeys(spec.field for spec in task.columns))
            raise DataError(f"data.{name}: {task.name} does not read this column (it reads: {reads})")
    out: list[Column] = []
    for spec in task.columns:
        value = getattr(cfg, spec.field, None)
        if value is None:
            value = spec.default
        if value is None:
            raise DataError(f"data.{spec.field}: {task.name} needs this column; name it in the config")
        names = [value] if isinstance(value, str) else list(value)
        out.extend(Column(spec.field, str(n), spec.kind, spec.target) for n in names)
    return out


@dataclass
class RawData:
    """The checked splits as data frames with only the columns the task needs."""

    frames: dict[str, pd.DataFrame]
    label_names: list[str]
    #: The columns the model reads (and the predictor expects): texts, the prompt, the words
    #: or the image paths.
    text_columns: list[str]
    #: The column it learns to predict: the label, the value, the response or the tags.
    label_column: str
    source: dict[str, str] = field(default_factory=dict)
    task: str = "sequence_classification"

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.frames.items()}


def locate(path: str, base_dir: Path | None) -> Path:
    """A data path as given, or relative to the config file's folder."""
    candidate = Path(path).expanduser()
    if candidate.is_file() or base_dir is None or candidate.is_absolute():
        return candidate
    alt = base_dir / candidate
    return alt if alt.is_file() else candidate


def read_table(path: Path, field_name: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{field_name}: no such file {str(path)!r}")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{field_name}: expected a .csv, .tsv, .jsonl, .json or .parquet file, found {path.name!r}")
    try:
        frame = reader(path)
    except Exception as exc:  # pandas raises many types; all mean "cannot parse"
        raise DataError(f"{field_name}: cannot read {str(path)!r}: {' '.join(str(exc).split())[:200]}") from None
    return frame


def _load_hub(cfg: DataConfig) -> dict[str, pd.DataFrame]:
    assert cfg.hub is not None
    try:
        import datasets
    except ImportError:
        raise DataError("data.hub: loading from the Hub needs the 'datasets' package (pip install datasets)") from None
    wanted = {"train": cfg.hub.train_split, "validation": cfg.hub.validation_split, "test": cfg.hub.test_split}
    frames: dict[str, pd.DataFrame] = {}
    for split, hub_split in wanted.items():
        if hub_split is None:
            continue
        try:
            ds = datasets.load_dataset(cfg.hub.name, cfg.hub.config, split=hub_split)
        except Exception as exc:  # network, missing dataset or split
            raise DataError(f"data.hub: cannot load {cfg.hub.name!r} split {hub_split!r}: {' '.join(str(exc).split())[:200]}") from None
        frames[split] = ds.to_pandas()
    return frames


def load(cfg: DataConfig, task: TaskKind, *, seed: int, base_dir: Path | None = None) -> RawData:
    """Load and check every split; carve validation out of train when none is given."""
    if cfg.hub is not None:
        frames = _load_hub(cfg)
        source = {"hub": cfg.hub.name + (f"/{cfg.hub.config}" if cfg.hub.config else "")}
    else:
        frames, source = {}, {}
        for split in SPLITS:
            given = getattr(cfg, split)
            if given is not None:
                path = locate(given, base_dir)
                frames[split] = read_table(path, f"data.{split}")
                source[split] = str(path)
    columns = columns_for(cfg, task)
    needed = list(dict.fromkeys(c.name for c in columns))
    for split, frame in frames.items():
        for column in columns:
            if column.name not in frame.columns:
                raise DataError(
                    f"data.{column.field}: column {column.name!r} is not in the {split} data "
                    f"(columns: {', '.join(map(str, frame.columns))})"
                )
        frames[split] = frame[needed].reset_index(drop=True)
        if frames[split].empty:
            raise DataError(f"data.{split}: the {split} data has no rows")
        _check_columns(frames[split], columns, split, _data_dir(cfg, split, base_dir))
    if "validation" not in frames:
        train = frames["train"].sample(frac=1.0, random_state=seed).reset_index(drop=True)
        n_val = max(1, int(round(len(train) * cfg.validation_fraction)))
        if len(train) - n_val < 1:
            raise DataError(f"data.train: {len(train)} rows are too few to carve out a validation split")
        frames["validation"], frames["train"] = train.iloc[:n_val].reset_index(drop=True), train.iloc[n_val:].reset_index(drop=True)
        source["validation"] = f"{cfg.validation_fraction:.0%} of train, seed {seed}"

    if cfg.max_train_examples:
        frames["train"] = _head(frames["train"], cfg.max_train_examples, seed)
    if cfg.max_eval_examples:
        for split in ("validation", "test"):
            if split in frames:
                frames[split] = _head(frames[split], cfg.max_eval_examples, seed)

    target = next((c for c in columns if c.kind in ("label", "value", "tags")), None)
    label_names: list[str] = []
    if task.categorical and target is not None:
        label_names = sorted(_classes(frames["train"][target.name], target.kind))
        if len(label_names) < 2:
            raise DataError(f"data.{target.field}: expected at least 2 classes in train, found {label_names}")
        for split, frame in frames.items():
            unexpected = sorted(_classes(frame[target.name], target.kind) - set(label_names))
            if unexpected:
                raise DataError(
                    f"data.{target.field}: {split} has label {unexpected[0]!r} that train does not have "
                    f"(train labels: {', '.join(label_names)})"
                )
    elif target is not None and target.kind == "value":
        for split, frame in frames.items():
            try:
                frame[target.name].astype(float)
            except (TypeError, ValueError):
                raise DataError(f"data.{target.field}: regression needs numbers in {target.name!r} ({split})") from None
    return RawData(frames=frames, label_names=label_names, text_columns=[c.name for c in columns if not c.target],
                   label_column=next(c.name for c in columns if c.target), source=source, task=task.name)


def _classes(values: pd.Series, kind: str) -> set[str]:
    if kind == "tags":  # one class per word
        return {str(tag) for tags in values for tag in tags}
    return {str(v) for v in values}


def _data_dir(cfg: DataConfig, split: str, base_dir: Path | None) -> Path | None:
    """The folder of a split's file, where relative image paths in it are looked up."""
    given = getattr(cfg, split, None) if cfg.hub is None else None
    if given is None:  # carved from train, or from the Hub
        given = cfg.train if cfg.hub is None else None
    return locate(given, base_dir).resolve().parent if given is not None else base_dir


def _check_columns(frame: pd.DataFrame, columns: list[Column], split: str, data_dir: Path | None) -> None:
    """What each column must hold; list and path columns are normalised in place (lists of
    strings, absolute paths) so encoding and fingerprints do not depend on the file format."""
    texts = [c for c in columns if c.kind == "text"]
    for field_name in dict.fromkeys(c.field for c in texts):
        _check_texts(frame, [c.name for c in texts if c.field == field_name], split, field_name)
    for column in columns:
        if column.kind in ("label", "value") and frame[column.name].isna().any():
            row = int(frame[column.name].isna().to_numpy().argmax())
            raise DataError(f"data.{column.field}: {column.name!r} is empty in {split} row {row}")
        if column.kind in ("words", "tags"):
            frame[column.name] = [_as_list(v, column, split, row) for row, v in enumerate(frame[column.name])]
        if column.kind == "image":
            frame[column.name] = [_image_path(v, column, split, row, data_dir)
                                  for row, v in enumerate(frame[column.name])]
    words = next((c for c in columns if c.kind == "words"), None)
    tags = next((c for c in columns if c.kind == "tags"), None)
    if words is not None and tags is not None:
        for row, (w, t) in enumerate(zip(frame[words.name], frame[tags.name], strict=True)):
            if len(w) != len(t):
                raise DataError(f"data.{tags.field}: {split} row {row} has {len(t)} tags for {len(w)} words "
                                f"in {words.name!r}")


def _as_list(value: Any, column: Column, split: str, row: int) -> list[str]:
    """A list cell: a list/array (jsonl, parquet) or a JSON list in a string (csv)."""
    given = type(value).__name__
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        what = "words" if column.kind == "words" else "tags"
        raise DataError(f"data.{column.field}: expected a list of {what} in {column.name!r} ({split} row {row}), "
                        f"found {given}")
    if not value:
        raise DataError(f"data.{column.field}: {column.name!r} is empty in {split} row {row}")
    return [str(v) for v in value]


def _image_path(value: Any, column: Column, split: str, row: int, data_dir: Path | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"data.{column.field}: expected an image file path in {column.name!r} ({split} row {row}), "
                        f"found {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.is_file() and data_dir is not None:
        path = data_dir / path
    if not path.is_file():
        raise DataError(f"data.{column.field}: no image file {value!r} ({split} row {row})")
    return str(path.resolve())


def _head(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(frame) <= n:
        return frame
    return frame.sample(n=n, random_state=seed).reset_index(drop=True)


def _check_texts(frame: pd.DataFrame, columns: list[str], split: str, field_name: str = "text_columns") -> None:
    for column in columns:
        values = frame[column]
        empty = values.isna() | (values.astype(str).str.strip() == "")
        if empty.any():
            row = int(empty.to_numpy().argmax())
            raise DataError(f"data.{field_name}: {column!r} is empty in {split} row {row} ({int(empty.sum())} empty in all)")


@dataclass
class TokenizedSplit:
    """Token ids per example (unpadded) and labels; padded per batch at training time.

    ``labels`` holds one label per example (an array of class ids or values), or for the
    token-level kinds one list per example aligned with its ``input_ids`` (``IGNORE`` where
    nothing is learnt). Image kinds keep ``pixel_values`` and no token ids. ``task`` names the
    kind whose collator pads the batches.
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: Union[np.ndarray, list[list[int]]]
    pixel_values: np.ndarray | None = None
    task: str = "sequence_classification"

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> np.ndarray:
        if self.pixel_values is not None:  # every image is the same size
            return np.zeros(len(self), dtype=np.int64)
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


@dataclass
class TokenizedData:
    """Every split tokenized, plus what identifies it."""

    splits: dict[str, TokenizedSplit]
    label_names: list[str]
    pad_token_id: int
    fingerprint: str
    sizes: dict[str, int]


#: The task kinds whose fingerprints predate the others (kept unchanged so recorded
#: fingerprints of earlier studies still match their data).
_ORIGINAL_KINDS = ("sequence_classification", "regression")


def fingerprint(raw: RawData, tokenizer_id: str, max_length: int) -> str:
    """Content hash of the splits plus everything that changes tokenization."""
    digest = hashlib.sha256()
    digest.update(f"{tokenizer_id}|{max_length}|{raw.text_columns}|{raw.label_column}".encode())
    if raw.task not in _ORIGINAL_KINDS:  # the same columns encode differently per kind
        digest.update(f"|{raw.task}".encode())
    for split in sorted(raw.frames):
        digest.update(split.encode())
        digest.update(_frame_hash(raw.frames[split], _file_columns(raw)))
    return digest.hexdigest()[:16]


def split_fingerprint(raw: RawData, split: str) -> str:
    """Content hash of one split (e.g. to know whether two test sets are the same)."""
    return hashlib.sha256(_frame_hash(raw.frames[split], _file_columns(raw))).hexdigest()[:16]


def _file_columns(raw: RawData) -> list[str]:
    """Input columns that hold file paths (the images of image kinds)."""
    from autopeft.tasks import get_task

    if raw.task in _ORIGINAL_KINDS:
        return []
    kinds = {spec.kind for spec in get_task(raw.task).columns if not spec.target}
    return list(raw.text_columns) if "image" in kinds else []


def _frame_hash(frame: pd.DataFrame, file_columns: Sequence[str] = ()) -> bytes:
    """pandas' row hashes; list cells (words, tags) as JSON, since pandas cannot hash lists, and
    image paths with their file's size and modification time, so a changed image is new data."""
    listy = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, (list, tuple))).any()]
    if listy:
        frame = frame.assign(**{c: frame[c].map(json.dumps) for c in listy})
    values = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    for column in file_columns:
        stats = [(lambda st: f"{st.st_size}:{st.st_mtime_ns}")(Path(p).stat()) for p in frame[column]]
        values += "|".join(stats).encode()
    return values


def encode_labels(raw: RawData, frame: pd.DataFrame) -> np.ndarray:
    values = frame[raw.label_column]
    if raw.label_names:
        index = {name: i for i, name in enumerate(raw.label_names)}
        return np.array([index[str(v)] for v in values], dtype=np.int64)
    return values.astype(np.float32).to_numpy()


def tokenize_frame(frame: pd.DataFrame, text_columns: list[str], tokenizer: PreTrainedTokenizerBase,
                   max_length: int) -> dict[str, Any]:
    texts = [frame[c].astype(str).tolist() for c in text_columns]
    return tokenizer(*texts, truncation=True, max_length=max_length)


def tokenize(raw: RawData, tokenizer: PreTrainedTokenizerBase, max_length: int, *, tokenizer_id: str,
             cache_dir: Path | None = None) -> TokenizedData:
    """Tokenize every split once; reuse an on-disk copy with the same fingerprint.

    ``tokenizer`` is the task kind's preprocessor (an image processor for image kinds)."""
    from autopeft.tasks import get_task

    fp = fingerprint(raw, tokenizer_id, max_length)
    cache_file = cache_dir / f"tokenized-{fp}.pkl" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        with cache_file.open("rb") as fh:
            cached: TokenizedData = pickle.load(fh)
        return cached
    task = get_task(raw.task)
    splits: dict[str, TokenizedSplit] = {}
    for split, frame in raw.frames.items():
        splits[split] = task.encode(frame, raw.text_columns, raw.label_column, raw.label_names, tokenizer, max_length)
    data = TokenizedData(splits=splits, label_names=raw.label_names, pad_token_id=pad_id(tokenizer),
                         fingerprint=fp, sizes=raw.sizes)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache_file)  # atomic: a crash never leaves a half-written cache
    return data


def pad_id(processor: Any) -> int:
    """The id batches are padded with; 0 for preprocessors without one (images are not padded)."""
    value = getattr(processor, "pad_token_id", None)
    return int(value) if value is not None else 0


def collate(split: TokenizedSplit, indices: np.ndarray | list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest example (dynamic padding), as the split's task kind does."""
    from autopeft.tasks import get_task

    return get_task(split.task).collate(split, indices, pad_token_id)


# --------------------------------------------------------------------------- encoders
# Each takes (frame, input columns, target column or None when predicting, label names,
# preprocessor, max_length) and returns a TokenizedSplit; a task kind names one.


def encode_texts(frame: pd.DataFrame, inputs: Sequence[str], target: str | None, label_names: Sequence[str],
                 tokenizer: Any, max_length: int) -> TokenizedSplit:
    """One text or a pair per example, one class or value per example."""
    enc = tokenize_frame(frame, list(inputs), tokenizer, max_length)
    if target is None:  # predicting: placeholder labels of the right type
        labels = np.zeros(len(frame), dtype=np.int64 if label_names else np.float32)
    else:
        values = frame[target]
        if label_names:
            index = {name: i for i, name in enumerate(label_names)}
            labels = np.array([index[str(v)] for v in values], dtype=np.int64)
        else:
            labels = values.astype(np.float32).to_numpy()
    return TokenizedSplit(
        input_ids=[list(x) for x in enc["input_ids"]],
        token_type_ids=[list(x) for x in enc["token_type_ids"]] if "token_type_ids" in enc else None,
        labels=labels,
    )


def encode_prompt_response(frame: pd.DataFrame, inputs: Sequence[str], target: str | None,
                           label_names: Sequence[str], tokenizer: Any, max_length: int) -> TokenizedSplit:
    """Causal-LM SFT: prompt tokens then response tokens (+ EOS, so the model learns to stop);
    labels are the response tokens and IGNORE on the prompt, so the loss is the response's alone.

    Prompt and response are joined as they are: separators belong in the data. When the pair is
    longer than ``max_length``, the prompt loses its start (its end, next to the response,
    matters most) and the response keeps at least half the budget. When predicting (no target)
    only the prompt is encoded, cut the same way, to be continued by ``generate``.
    """
    prompts = tokenizer(frame[inputs[0]].astype(str).tolist(), add_special_tokens=True)["input_ids"]
    if target is None:
        ids = [list(p)[-max_length:] for p in prompts]
        return TokenizedSplit(input_ids=ids, token_type_ids=None, labels=[[IGNORE] * len(p) for p in ids],
                              task="causal_lm")
    responses = tokenizer(frame[target].astype(str).tolist(), add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else []
    all_ids: list[list[int]] = []
    all_labels: list[list[int]] = []
    for prompt, response in zip(prompts, responses, strict=True):
        response = [*response, *eos]
        keep_response = min(len(response), max(max_length - len(prompt), max_length // 2))
        keep_prompt = min(len(prompt), max_length - keep_response)
        kept_prompt = list(prompt)[len(prompt) - keep_prompt:]
        kept_response = response[:keep_response]
        all_ids.append(kept_prompt + kept_response)
        all_labels.append([IGNORE] * len(kept_prompt) + kept_response)
    return TokenizedSplit(input_ids=all_ids, token_type_ids=None, labels=all_labels, task="causal_lm")


def as_words(value: Any) -> list[str]:
    """Words of one example: a list as given, or a string split on whitespace (predicting)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return [str(v) for v in value]


def encode_words(frame: pd.DataFrame, inputs: Sequence[str], target: str | None, label_names: Sequence[str],
                 tokenizer: Any, max_length: int) -> TokenizedSplit:
    """Token classification: words split into subwords; each word's tag goes on its first
    subword, the other subwords and special tokens get IGNORE (the usual alignment, so the
    metrics count words, not subwords). Predicting, the first subwords get class 0: the
    predictor reads its tags at the positions that are not IGNORE."""
    from autopeft.errors import ModelError

    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("model.name_or_path: token_classification needs a fast tokenizer (word ids per subword)")
    words = [as_words(v) for v in frame[inputs[0]]]
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    index = {name: i for i, name in enumerate(label_names)}
    tags = [[index[str(t)] for t in row] for row in frame[target]] if target is not None else None
    labels: list[list[int]] = []
    for i in range(len(words)):
        previous = None
        row: list[int] = []
        for word in enc.word_ids(i):
            if word is None or word == previous:
                row.append(IGNORE)
            else:
                row.append(tags[i][word] if tags is not None else 0)
            previous = word
        labels.append(row)
    return TokenizedSplit(
        input_ids=[list(x) for x in enc["input_ids"]],
        token_type_ids=[list(x) for x in enc["token_type_ids"]] if "token_type_ids" in enc else None,
        labels=labels, task="token_classification",
    )


def encode_images(frame: pd.DataFrame, inputs: Sequence[str], target: str | None, label_names: Sequence[str],
                  processor: Any, max_length: int) -> TokenizedSplit:
    """Image classification: each image resized and normalised by the model's image processor,
    once. Pixels are kept in float16 (half the memory in the object store; the rounding,
    ~1e-3, is below an 8-bit image's own step); batches are float32."""
    from PIL import Image

    from autopeft.errors import DataError as _DataError

    paths = frame[inputs[0]].tolist()
    chunks: list[np.ndarray] = []
    for start in range(0, len(paths), 64):  # bounded memory for the decoded images
        images = []
        for offset, path in enumerate(paths[start : start + 64]):
            try:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            except (OSError, ValueError) as exc:
                raise _DataError(f"data.image_column: cannot read image {path!r} (row {start + offset}): "
                                 f"{' '.join(str(exc).split())[:120]}") from None
        pixels = processor(images=images, return_tensors="np")["pixel_values"]
        chunks.append(np.asarray(pixels, dtype=np.float16))
    if target is None:
        labels = np.zeros(len(frame), dtype=np.int64)
    else:
        index = {name: i for i, name in enumerate(label_names)}
        labels = np.array([index[str(v)] for v in frame[target]], dtype=np.int64)
    return TokenizedSplit(input_ids=[], token_type_ids=None, labels=labels, pixel_values=np.concatenate(chunks),
                          task="image_classification")


# --------------------------------------------------------------------------- collators


def _pad_tokens(split: TokenizedSplit, indices: np.ndarray | list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    import torch

    rows = [split.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, row in enumerate(rows):
        ids[j, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[j, : len(row)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if split.token_type_ids is not None:
        types = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(indices):
            row = split.token_type_ids[i]
            types[j, : len(row)] = torch.tensor(row, dtype=torch.long)
        batch["token_type_ids"] = types
    return batch


def collate_texts(split: TokenizedSplit, indices: np.ndarray | list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Token ids padded to the batch's longest example; one label per example."""
    import torch

    batch = _pad_tokens(split, indices, pad_token_id)
    labels = np.asarray(split.labels)[np.asarray(indices)]
    batch["labels"] = torch.from_numpy(labels)
    return batch


def collate_token_labels(split: TokenizedSplit, indices: np.ndarray | list[int],
                         pad_token_id: int) -> dict[str, torch.Tensor]:
    """Token ids and per-token labels, padded; padding gets IGNORE by position (never by
    comparing with the pad id, which for decoder LMs is often EOS, a real target)."""
    import torch

    batch = _pad_tokens(split, indices, pad_token_id)
    labels = torch.full(batch["input_ids"].shape, IGNORE, dtype=torch.long)
    for j, i in enumerate(indices):
        row = split.labels[i]
        labels[j, : len(row)] = torch.tensor(row, dtype=torch.long)
    batch["labels"] = labels
    return batch


def collate_images(split: TokenizedSplit, indices: np.ndarray | list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pixel tensors (already one size) and one label per example."""
    import torch

    assert split.pixel_values is not None
    idx = np.asarray(indices)
    return {"pixel_values": torch.from_numpy(split.pixel_values[idx].astype(np.float32)),
            "labels": torch.from_numpy(np.asarray(split.labels)[idx])}
