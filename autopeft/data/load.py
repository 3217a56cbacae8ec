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
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autopeft.errors import DataError

if TYPE_CHECKING:

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



def column_fields(cfg: Any) -> list[str]:
    """The config's fields that name columns (``*_column``, ``*_columns``); a task kind reads some."""
    return [name for name in type(cfg).model_fields if name.endswith(("_column", "_columns"))]


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
    #: Help text of the config field, where the field is new to ``DataConfig`` (the config adds a
    #: field for every column a registered kind declares).
    description: str = ""


def columns_for(cfg: DataConfig, task: TaskKind) -> list[Column]:
    """The columns ``task`` reads under ``cfg``; DataError for one it needs but is not named,
    or for a column field set that this task kind does not read."""
    wanted = {spec.field for spec in task.columns}
    defaults = type(cfg).model_fields
    for name in column_fields(cfg):
        value = getattr(cfg, name, None)
        if name not in wanted and value is not None and value != defaults[name].default:
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
    #: Input columns that hold file paths (the images of image kinds): their files' sizes and
    #: modification times count in the fingerprint.
    file_columns: list[str] = field(default_factory=list)

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
        # deferred: optional dependency (the 'hub' extra), imported only for Hub data
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
    inputs = [c.name for c in columns if not c.target]
    return RawData(frames=frames, label_names=label_names, text_columns=inputs,
                   label_column=next(c.name for c in columns if c.target), source=source, task=task.name,
                   file_columns=inputs if any(c.kind == "image" for c in columns if not c.target) else [])


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


