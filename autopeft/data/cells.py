"""One cell of a data file, read as what it holds whatever format wrote it."""

from __future__ import annotations

import ast
import json
from typing import Any

import numpy as np
import pandas as pd


def cell_text(value: Any) -> str:
    """A text cell as a tokenizer's string, a missing one (None, NaN, pandas' NA) as ''."""
    return "" if pd.api.types.is_scalar(value) and pd.isna(value) else str(value)


def list_cell(value: Any) -> list[Any] | None:
    """A list cell as a list: a list, tuple or array (jsonl, parquet), or a list written into a
    string, by JSON (``["EU", "rejects"]``) or by pandas' ``to_csv`` of a list column (Python's
    ``['EU', 'rejects']``, read as a literal, never run); None for anything else."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    if not (isinstance(value, str) and value.lstrip().startswith("[")):
        return None
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return list(parsed) if isinstance(parsed, (list, tuple)) else None
