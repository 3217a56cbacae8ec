"""Encoded data: token ids (or pixels) per split, fingerprints, the on-disk cache, and the
encoders and collators each task kind names (:class:`~autopeft.tasks.TaskKind`)."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from autopeft.data.cells import cell_text
from autopeft.data.chat import conversation, render_prompt
from autopeft.data.load import IGNORE, RawData
from autopeft.errors import DataError, ModelError
from autopeft.schema import TargetScale

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


@dataclass
class TokenizedSplit:
    """Token ids per example (unpadded) and labels; padded per batch at training time.

    ``labels`` holds one label per example (an array of class ids or values), or for the
    token-level kinds one list per example aligned with its ``input_ids`` (``IGNORE`` where
    nothing is learnt). Image kinds keep ``pixel_values`` and no token ids. ``task`` names the
    kind whose collator pads the batches.

    ``target_scale`` (regression) is the study's: ``labels`` stay in the data's units, the
    collator hands the model standardised ones, and ``engine.training.predict`` maps the
    model's outputs back, so metrics and predictions are in the data's units.
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: Union[np.ndarray, list[list[int]]]
    pixel_values: np.ndarray | None = None
    task: str = "sequence_classification"
    target_scale: TargetScale | None = None

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

    @property
    def target_scale(self) -> TargetScale | None:
        """The targets' standardisation (regression), fitted on the training split; every split carries it."""
        train = self.splits.get("train")
        return train.target_scale if train is not None else None


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
        digest.update(_frame_hash(raw.frames[split], raw.file_columns))
    return digest.hexdigest()[:16]


def split_fingerprint(raw: RawData, split: str) -> str:
    """Content hash of one split (e.g. to know whether two test sets are the same)."""
    return hashlib.sha256(_frame_hash(raw.frames[split], raw.file_columns)).hexdigest()[:16]


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


def tokenize_frame(frame: pd.DataFrame, text_columns: list[str], tokenizer: PreTrainedTokenizerBase,
                   max_length: int) -> dict[str, Any]:
    texts = [frame[c].astype(str).tolist() for c in text_columns]
    return tokenizer(*texts, truncation=True, max_length=max_length)


def fit_target_scale(values: np.ndarray) -> TargetScale:
    """The targets' mean and (population) standard deviation, from the training split.

    With one row, or every target the same, there is no spread to divide by: the scale is 1 and
    only the mean is taken off (the model then learns 0, predicted back as that value).
    Non-finite targets are left out of both figures."""
    finite = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return TargetScale()
    mean, std = float(finite.mean()), float(finite.std())
    return TargetScale(mean=mean, std=std if finite.size > 1 and std > 0 else 1.0)


def cache_key(fingerprint: str, *, standardised: bool) -> str:
    """The key the encoded splits are cached under: the data's fingerprint, marked for kinds whose
    splits carry a target scale. A cache written before standardisation (no scale: it would train
    on raw targets) and one written with it never read, nor overwrite, each other; the data's
    fingerprint itself stays as it was, so recorded fingerprints still name the same data."""
    return f"{fingerprint}-z" if standardised else fingerprint


def read_cache(cache_dir: Path | None, key: str) -> TokenizedData | None:
    """The tokenized data cached under ``key`` (:func:`cache_key`), or None. A cache this release
    cannot read (written by an older one whose classes moved) is a miss: the data is tokenized again."""
    cache_file = _cache_file(cache_dir, key)
    if cache_file is None or not cache_file.is_file():
        return None
    try:
        with cache_file.open("rb") as fh:
            cached = pickle.load(fh)
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError):
        return None
    return cached if isinstance(cached, TokenizedData) else None


def write_cache(cache_dir: Path | None, data: TokenizedData, key: str | None = None) -> None:
    """Store ``data`` under ``key`` (default: its fingerprint)."""
    cache_file = _cache_file(cache_dir, key or data.fingerprint)
    if cache_file is None:
        return
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(cache_file)  # atomic: a crash never leaves a half-written cache


def _cache_file(cache_dir: Path | None, key: str) -> Path | None:
    return cache_dir / f"tokenized-{key}.pkl" if cache_dir is not None else None


def pad_id(processor: Any) -> int:
    """The id batches are padded with; 0 for preprocessors without one (images are not padded)."""
    value = getattr(processor, "pad_token_id", None)
    return int(value) if value is not None else 0


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

    Prompt and response are joined as they are: separators belong in the data. A prompt of several
    columns (Alpaca's instruction and input) is their texts one below the other, a blank line
    between them, an empty one skipped (:func:`joined_prompts`). A prompt that is a
    conversation's turns (``data.messages_column``; or, predicting, a list of role/content turns)
    is rendered first, by the model's chat template (:func:`~autopeft.data.chat.render_prompt`).
    When the pair is longer than ``max_length``, the prompt loses its start (its end, next to the
    response, matters most) and the response keeps at least half the budget. When predicting (no
    target) only the prompt is encoded, cut the same way, to be continued by ``generate``.
    """
    prompts = prompt_ids(joined_prompts(frame, inputs), tokenizer)
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


def joined_prompts(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Each row's prompt: its one prompt column as it is (text, or a conversation's turns), or the
    texts of several, one below the other with a blank line between them, empty ones skipped."""
    if len(columns) == 1:
        return frame[columns[0]]
    def joined(row: Sequence[Any]) -> str:
        return "\n\n".join(text for text in (cell_text(v) for v in row) if text.strip())
    return pd.Series([joined(row) for row in frame[list(columns)].itertuples(index=False)], index=frame.index,
                     dtype=object)


def prompt_ids(prompts: pd.Series, tokenizer: Any) -> list[list[int]]:
    """Token ids of each prompt: text with the tokenizer's special tokens, or a conversation's turns
    rendered as the model is prompted for the reply (a chat template's text holds its own)."""
    rendered = [render_prompt(turns, tokenizer) if (turns := conversation(value)) is not None else (str(value), True)
                for value in prompts]
    ids: list[list[int]] = [[] for _ in rendered]
    for special in (True, False):  # one batch call each
        rows = [row for row, (_, adds) in enumerate(rendered) if adds is special]
        if rows:
            encoded = tokenizer([rendered[row][0] for row in rows], add_special_tokens=special)["input_ids"]
            for row, row_ids in zip(rows, encoded, strict=True):
                ids[row] = list(row_ids)
    return ids


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
    # deferred: Pillow only for image task kinds
    from PIL import Image


    paths = frame[inputs[0]].tolist()
    chunks: list[np.ndarray] = []
    for start in range(0, len(paths), 64):  # bounded memory for the decoded images
        images = []
        for offset, path in enumerate(paths[start : start + 64]):
            try:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            except (OSError, ValueError) as exc:
                raise DataError(f"data.image_column: cannot read image {path!r} (row {start + offset}): "
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
    # deferred: torch takes seconds to import; config and data checks run without it
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
    """Token ids padded to the batch's longest example; one label per example (a regression
    target standardised with the split's ``target_scale``: the model learns z, not raw units)."""
    # deferred: torch takes seconds to import; config and data checks run without it
    import torch

    batch = _pad_tokens(split, indices, pad_token_id)
    labels = np.asarray(split.labels)[np.asarray(indices)]
    if split.target_scale is not None:
        labels = np.asarray(split.target_scale.standardise(labels), dtype=labels.dtype)
    batch["labels"] = torch.from_numpy(labels)
    return batch


def collate_token_labels(split: TokenizedSplit, indices: np.ndarray | list[int],
                         pad_token_id: int) -> dict[str, torch.Tensor]:
    """Token ids and per-token labels, padded; padding gets IGNORE by position (never by
    comparing with the pad id, which for decoder LMs is often EOS, a real target)."""
    # deferred: torch takes seconds to import; config and data checks run without it
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
    # deferred: torch takes seconds to import; config and data checks run without it
    import torch

    assert split.pixel_values is not None
    idx = np.asarray(indices)
    return {"pixel_values": torch.from_numpy(split.pixel_values[idx].astype(np.float32)),
            "labels": torch.from_numpy(np.asarray(split.labels)[idx])}
