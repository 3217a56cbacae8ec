"""Data through a task kind: every split encoded once by the kind's encoder (and cached by
fingerprint), and batches padded by the kind's collator."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autopeft.data import (
    RawData,
    TokenizedData,
    TokenizedSplit,
    cache_key,
    fingerprint,
    fit_target_scale,
    pad_id,
    read_cache,
    write_cache,
)
from autopeft.tasks.base import get_task

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


def tokenize(raw: RawData, tokenizer: PreTrainedTokenizerBase, max_length: int, *, tokenizer_id: str,
             cache_dir: Path | None = None) -> TokenizedData:
    """Tokenize every split once; reuse an on-disk copy with the same fingerprint.

    ``tokenizer`` is the task kind's preprocessor (an image processor for image kinds). For a kind
    that standardises its targets, the scale is fitted here, once per study, on the training
    split, and every split carries it: each trial, the final training and the test evaluation
    use the same one (and it is cached with the splits)."""
    task = get_task(raw.task)
    fp = fingerprint(raw, tokenizer_id, max_length)
    key = cache_key(fp, standardised=task.standardise_targets)
    cached = read_cache(cache_dir, key)
    if cached is not None:
        return cached
    splits: dict[str, TokenizedSplit] = {}
    for split, frame in raw.frames.items():
        splits[split] = task.encode(frame, raw.text_columns, raw.label_column, raw.label_names, tokenizer, max_length)
    if task.standardise_targets and "train" in splits:
        scale = fit_target_scale(np.asarray(splits["train"].labels))
        for encoded in splits.values():
            encoded.target_scale = scale
    data = TokenizedData(splits=splits, label_names=raw.label_names, pad_token_id=pad_id(tokenizer),
                         fingerprint=fp, sizes=raw.sizes)
    write_cache(cache_dir, data, key)
    return data


def collate(split: TokenizedSplit, indices: np.ndarray | list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest example (dynamic padding), as the split's task kind does."""
    return get_task(split.task).collate(split, indices, pad_token_id)
