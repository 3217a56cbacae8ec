"""What each column of a data file holds, read from a sample: numbers, texts, lists, image paths.

The inference (``auto.infer``) decides task kind and columns from these profiles alone, so its
rules read as rules about columns, not about pandas dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import pandas as pd

from autopeft.data import holds_conversations, list_cell

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Column names that mark a row id, never a label or an input.
ID_NAMES = ("id", "idx", "index", "guid", "uid", "row_id", "example_id")
#: Rows profiled per column: enough for shares and distinct counts, cheap on any file.
SAMPLE_ROWS = 5000
#: Words of a short value: a class's name ('card_arrival', 'Home & Garden'), not a text to read.
SHORT_VALUE_WORDS = 3


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    #: number | text | list | conversation (a list of role/content turns per cell) | image | record
    #: (a mapping per cell: a struct or map column) | empty
    kind: str
    rows: int
    distinct: int
    #: number: every value is a whole number
    integral: bool = False
    #: text: mean length in words
    mean_words: float = 0.0
    #: a row id: named like one, or whole numbers that are all distinct
    id_like: bool = False
    #: list: mean number of elements
    mean_items: float = 0.0
    #: list: distinct elements over the sample
    distinct_items: int = 0

    #: number: whole numbers 0..K-1, every one present: classes encoded as ids (a ClassLabel)
    class_ids: bool = False
    #: text: the share of its characters (spaces aside) that are letters, in any script: most of
    #: a sentence's, none of a timestamp's
    letter_share: float = 0.0
    #: text: mean letters a row outside the Latin script (Chinese, Japanese, Thai write sentences
    #: without spaces: a row of them is one 'word')
    mean_non_latin_letters: float = 0.0

    @property
    def categorical(self) -> bool:
        """Few distinct values against the rows: a label, not an input. Or many short ones, each
        repeated ten times on average: the intents or topics of a task with dozens of classes."""
        if self.id_like or self.kind not in ("number", "text"):
            return False
        if self.distinct <= max(2, min(50, self.rows // 5)):
            return True
        return self.kind == "text" and self.mean_words <= SHORT_VALUE_WORDS and self.distinct <= self.rows // 10

    @property
    def free_text(self) -> bool:
        """Text a model reads: many distinct values, or several words each."""
        return self.kind == "text" and not self.id_like and (not self.categorical or self.mean_words >= 4)


def normalised(name: str) -> str:
    """A column name without case, spacing, '-' or '_': how names are matched to conventions."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def profile_column(name: str, values: pd.Series) -> ColumnProfile:
    values = values.dropna()
    rows = len(values)
    if rows == 0:
        return ColumnProfile(name, "empty", 0, 0)
    named_id = normalised(name) in {normalised(n) for n in ID_NAMES}
    if any(isinstance(v, dict) for v in values.head(200)):  # parquet structs and maps, nested JSON
        return ColumnProfile(name, "record", rows, 0)
    if holds_conversations(values.head(200)):  # chat data: OpenAI/TRL messages, ShareGPT conversations
        return ColumnProfile(name, "conversation", rows, 0)
    lists = [list_cell(v) for v in values.head(200)]
    if all(item is not None for item in lists):
        items = [list_cell(v) or [] for v in values]
        flat = [str(x) for item in items for x in item]
        return ColumnProfile(name, "list", rows, values.astype(str).nunique(), mean_items=len(flat) / rows,
                             distinct_items=len(set(flat)), id_like=named_id)
    numbers = pd.to_numeric(values, errors="coerce") if values.dtype == object else values
    if not isinstance(values.dtype, pd.CategoricalDtype) and pd.api.types.is_bool_dtype(values.dtype):
        return ColumnProfile(name, "number", rows, int(values.nunique()), integral=True)
    if pd.api.types.is_numeric_dtype(numbers) and not numbers.isna().any():
        distinct = int(numbers.nunique())
        floats = numbers.to_numpy(dtype=float)
        integral = bool(np.all(np.isfinite(floats)) and np.all(np.mod(floats, 1.0) == 0))  # inf: no remainder
        unique_whole = integral and distinct == rows and rows > 50
        class_ids = integral and distinct > 1 and numbers.min() == 0 and numbers.max() == distinct - 1
        return ColumnProfile(name, "number", rows, distinct, integral=integral, id_like=named_id or unique_whole,
                             class_ids=bool(class_ids))
    text = values.astype(str)
    if (text.str.lower().str.strip().map(lambda s: PurePath(s).suffix in IMAGE_SUFFIXES)).mean() >= 0.9:
        return ColumnProfile(name, "image", rows, int(text.nunique()))
    packed = text.str.replace(r"\s+", "", regex=True)
    characters = int(packed.str.len().sum())
    letters = int(packed.str.count(r"[^\W\d_]").sum())
    non_latin = float(packed.str.count(r"[^\W\d_a-zA-Z\u00C0-\u024F]").mean())
    return ColumnProfile(name, "text", rows, int(text.nunique()), mean_words=float(text.str.split().str.len().mean()),
                         id_like=named_id, letter_share=letters / characters if characters else 0.0,
                         mean_non_latin_letters=non_latin)


def profile(frame: pd.DataFrame) -> dict[str, ColumnProfile]:
    """Profiles of every column, from up to ``SAMPLE_ROWS`` rows taken evenly through the file."""
    sample = frame if len(frame) <= SAMPLE_ROWS else frame.sample(n=SAMPLE_ROWS, random_state=0)
    return {str(name): profile_column(str(name), sample[name]) for name in frame.columns}
