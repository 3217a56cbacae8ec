"""What a task kind keeps of a model's output per example (for its metrics), and the
prediction frame its registered model returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autopeft.data import IGNORE, pad_id

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from autopeft.engine.predictor import AdapterPredictor


# (model output, batch) -> one row per example, kept by ``training.predict`` in example order.


def logit_outputs(out: Any, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
    return out.logits.float().cpu().numpy()


def token_outputs(out: Any, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Each example's predicted class per token (ragged: its own length), not the logits."""
    preds = out.logits[:, -batch["input_ids"].shape[1]:].argmax(dim=-1).cpu().numpy()
    lengths = batch["attention_mask"].sum(dim=1).cpu().tolist()
    rows = np.empty(len(lengths), dtype=object)
    for j, n in enumerate(lengths):
        rows[j] = preds[j, : int(n)]
    return rows


def lm_outputs(out: Any, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Per example: summed NLL of its response tokens and their count (logits at t predict
    t+1). Prompt-learning families prepend virtual tokens to the logits: only the last
    ``seq_len`` positions belong to the batch's tokens."""
    # deferred: torch takes seconds to import; config and data checks run without it
    import torch

    labels = batch["labels"]
    logits = out.logits[:, -labels.shape[1]:].float()
    shifted_logits, shifted_labels = logits[:, :-1], labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(shifted_logits.transpose(1, 2), shifted_labels,
                                            ignore_index=IGNORE, reduction="none")
    counts = (shifted_labels != IGNORE).sum(dim=1)
    return torch.stack([nll.sum(dim=1), counts.float()], dim=1).cpu().numpy().astype(np.float64)


# (predictor, frame, batch size) -> the prediction frame the pyfunc model returns.


def present_classes(predictor: AdapterPredictor, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """A label and its probability per row."""
    # deferred: torch takes seconds to import; config and data checks run without it
    import torch

    outputs, _ = predictor.outputs(predictor.encode(frame), batch_size)
    probs = torch.softmax(torch.from_numpy(outputs), dim=-1).numpy()
    names = predictor.metadata["label_names"]
    best = probs.argmax(axis=-1)
    return pd.DataFrame({"label": [names[i] for i in best], "score": probs.max(axis=-1)})


def present_values(predictor: AdapterPredictor, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:

    outputs, _ = predictor.outputs(predictor.encode(frame), batch_size)
    return pd.DataFrame({"value": outputs.reshape(-1)})


def present_tags(predictor: AdapterPredictor, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """One tag per word (a list per row); words cut off by ``max_length`` get none."""

    split = predictor.encode(frame)
    outputs, _ = predictor.outputs(split, batch_size)
    names = predictor.metadata["label_names"]
    tags = [[names[int(p)] for p, g in zip(row_pred, row_gold, strict=True) if g != IGNORE]
            for row_pred, row_gold in zip(outputs, split.labels, strict=True)]
    return pd.DataFrame({"tags": tags})


def present_generation(predictor: AdapterPredictor, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """Greedy continuation of each prompt, ``task_config.max_new_tokens`` tokens at most."""
    # deferred: torch takes seconds to import; config and data checks run without it
    import torch

    split = predictor.encode(frame)
    tokenizer = predictor.tokenizer
    model: Any = predictor.model  # a peft model: generate() is not on nn.Module
    max_new = int(predictor.metadata.get("task_config", {}).get("max_new_tokens", 64))
    pad = pad_id(tokenizer)
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
