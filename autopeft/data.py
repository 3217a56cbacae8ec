"""Data: load once, check against the config, split, tokenize once, cache by fingerprint.

The driver does all of this before Ray starts; trials receive the tokenized splits through the
Ray object store and never touch the raw files or the tokenizer.
"""

from __future__ import annotations

import csv
import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


@dataclass
class RawData:
    """The checked splits as data frames with only the columns the task needs."""

    frames: dict[str, pd.DataFrame]
    label_names: list[str]
    text_columns: list[str]
    label_column: str
    source: dict[str, str] = field(default_factory=dict)

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
    needed = [*cfg.text_columns, cfg.label_column]
    for split, frame in frames.items():
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            kind = "label_column" if missing[0] == cfg.label_column else "text_columns"
            raise DataError(
                f"data.{kind}: column {missing[0]!r} is not in the {split} data "
                f"(columns: {', '.join(map(str, frame.columns))})"
            )
        frames[split] = frame[needed].reset_index(drop=True)
        if frames[split].empty:
            raise DataError(f"data.{split}: the {split} data has no rows")
        _check_texts(frames[split], cfg.text_columns, split)
        if frames[split][cfg.label_column].isna().any():
            row = int(frames[split][cfg.label_column].isna().to_numpy().argmax())
            raise DataError(f"data.label_column: {cfg.label_column!r} is empty in {split} row {row}")

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

    label_names: list[str] = []
    if task.categorical:
        label_names = sorted({str(v) for v in frames["train"][cfg.label_column]})
        if len(label_names) < 2:
            raise DataError(f"data.label_column: expected at least 2 classes in train, found {label_names}")
        for split, frame in frames.items():
            unexpected = sorted({str(v) for v in frame[cfg.label_column]} - set(label_names))
            if unexpected:
                raise DataError(
                    f"data.label_column: {split} has label {unexpected[0]!r} that train does not have "
                    f"(train labels: {', '.join(label_names)})"
                )
    else:
        for split, frame in frames.items():
            try:
                frame[cfg.label_column].astype(float)
            except (TypeError, ValueError):
                raise DataError(f"data.label_column: regression needs numbers in {cfg.label_column!r} ({split})") from None
    return RawData(frames=frames, label_names=label_names, text_columns=list(cfg.text_columns),
                   label_column=cfg.label_column, source=source)


def _head(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(frame) <= n:
        return frame
    return frame.sample(n=n, random_state=seed).reset_index(drop=True)


def _check_texts(frame: pd.DataFrame, columns: list[str], split: str) -> None:
    for column in columns:
        values = frame[column]
        empty = values.isna() | (values.astype(str).str.strip() == "")
        if empty.any():
            row = int(empty.to_numpy().argmax())
            raise DataError(f"data.text_columns: {column!r} is empty in {split} row {row} ({int(empty.sum())} empty in all)")


@dataclass
class TokenizedSplit:
    """Token ids per example (unpadded) and labels; padded per batch at training time."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


@dataclass
class TokenizedData:
    """Every split tokenized, plus what identifies it."""

    splits: dict[str, TokenizedSplit]
    label_names: list[str]
    pad_token_id: int
    fingerprint: str
    sizes: dict[str, int]


def fingerprint(raw: RawData, tokenizer_id: str, max_length: int) -> str:
    """Content hash of the splits plus everything that changes tokenization."""
    digest = hashlib.sha256()
    digest.update(f"{tokenizer_id}|{max_length}|{raw.text_columns}|{raw.label_column}".encode())
    for split in sorted(raw.frames):
        digest.update(split.encode())
        digest.update(pd.util.hash_pandas_object(raw.frames[split], index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def split_fingerprint(raw: RawData, split: str) -> str:
    """Content hash of one split (e.g. to know whether two test sets are the same)."""
    values = pd.util.hash_pandas_object(raw.frames[split], index=False).to_numpy().tobytes()
    return hashlib.sha256(values).hexdigest()[:16]


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
    """Tokenize every split once; reuse an on-disk copy with the same fingerprint."""
    fp = fingerprint(raw, tokenizer_id, max_length)
    cache_file = cache_dir / f"tokenized-{fp}.pkl" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        with cache_file.open("rb") as fh:
            cached: TokenizedData = pickle.load(fh)
        return cached
    splits: dict[str, TokenizedSplit] = {}
    for split, frame in raw.frames.items():
        enc = tokenize_frame(frame, raw.text_columns, tokenizer, max_length)
        splits[split] = TokenizedSplit(
            input_ids=[list(x) for x in enc["input_ids"]],
            token_type_ids=[list(x) for x in enc["token_type_ids"]] if "token_type_ids" in enc else None,
            labels=encode_labels(raw, frame),
        )
    data = TokenizedData(splits=splits, label_names=raw.label_names, pad_token_id=int(tokenizer.pad_token_id),
                         fingerprint=fp, sizes=raw.sizes)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache_file)  # atomic: a crash never leaves a half-written cache
    return data


def collate(split: TokenizedSplit, indices: np.ndarray | list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest example (dynamic padding)."""
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
    labels = split.labels[np.asarray(indices)]
    batch["labels"] = torch.from_numpy(labels)
    return batch
