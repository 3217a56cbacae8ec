"""Data: load once, check against the config, split, tokenize once, cache by fingerprint.

The driver does all of this before Ray starts; trials receive the tokenized splits through the
Ray object store and never touch the raw files or the tokenizer.

What differs between task kinds (which columns are read and what they must hold, how a frame
becomes a split, how a batch is padded) lives in the encoders and collators below; each
:class:`~autopeft.tasks.TaskKind` names its own, so the loading, caching and checking code here
is shared by every kind.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import difflib
import gzip
import io
import json
import lzma
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autopeft import hub
from autopeft._validation import short_repr
from autopeft.data.cells import list_cell
from autopeft.data.chat import MESSAGES_COLUMN_FIELD, prompts_and_responses
from autopeft.data.fetch import fetch, is_url, shown_url
from autopeft.errors import DataError

if TYPE_CHECKING:

    from autopeft.config import DataConfig, HubSource
    from autopeft.tasks import TaskKind

SPLITS = ("train", "validation", "test")
#: The file kinds ``read_table`` reads, by suffix.
SUFFIXES = (".csv", ".tsv", ".txt", ".conll", ".jsonl", ".json", ".parquet", ".arrow", ".feather", ".xlsx")
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".conll", ".jsonl", ".json")
#: Compressions a text file may carry as a last suffix (``train.csv.gz``), with the stdlib
#: function that opens it: exports and crawls are often stored compressed, and pandas reads them
#: so too, but here every text file is decoded once by ``_text`` to check it is UTF-8.
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
#: The suffixes as an error names them.
_SUFFIXES_TEXT = f"{', '.join(SUFFIXES[:-1])} or {SUFFIXES[-1]}"
_COMPRESSED_TEXT = f"a text one may also be compressed: {', '.join(list(COMPRESSIONS)[:-1])} or {list(COMPRESSIONS)[-1]}"
#: Rows of a csv/tsv that header detection looks at.
_SNIFF_ROWS = 1000


#: Label value on tokens that no loss or metric reads (prompt, padding, later subwords);
#: the ``ignore_index`` of PyTorch's and transformers' cross-entropy.
IGNORE = -100



#: The config field naming a column that assigns rows to splits: read by ``load``, not a task kind.
SPLIT_COLUMN_FIELD = "split_column"
#: What a split column may say for each split, lower-cased.
SPLIT_NAMES = {"train": ("train", "training", "trn"),
               "validation": ("validation", "valid", "val", "dev", "development", "eval", "evaluation"),
               "test": ("test", "testing", "tst")}


def column_fields(cfg: Any) -> list[str]:
    """The config's fields that name columns a task kind reads (``*_column``, ``*_columns``)."""
    return [name for name in type(cfg).model_fields
            if name.endswith(("_column", "_columns")) and name not in (SPLIT_COLUMN_FIELD, MESSAGES_COLUMN_FIELD)]


def split_of(value: Any) -> str | None:
    """The split a split column's value names ('dev' -> 'validation'), else None."""
    said = str(value).strip().lower()
    return next((split for split, names in SPLIT_NAMES.items() if said in names), None)


@dataclass(frozen=True)
class Column:
    """One column a task kind reads: the config field that names it and what it must hold."""

    field: str
    name: str
    #: text | label (a class) | value (a number) | words (a list of words) | tags (a list of
    #: classes, one per word) | image (a path to an image file) | chat (a conversation's turns)
    kind: str
    #: The column the model learns to predict (else an input the predictor reads too).
    target: bool = False
    #: One of several columns that make one input together (a prompt's instruction and input):
    #: the first of them is never empty, the others may be.
    joined: bool = False


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
    #: Several columns named by the field make one input (``Column.joined``).
    joined: bool = False


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
        out.extend(Column(spec.field, str(n), spec.kind, spec.target, spec.joined) for n in names)
    # a column read twice: the label learnt from the text it is predicted from, or a pair of one text
    for i, column in enumerate(out):
        first = next((c for c in out[:i] if c.name == column.name), None)
        if first is not None:
            again = "named twice" if first.field == column.field else f"also named by data.{first.field}"
            raise DataError(f"data.{column.field}: column {column.name!r} is {again}; each column the task reads "
                            "must be another")
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
    if is_data(candidate) or base_dir is None or candidate.is_absolute():
        return candidate
    alt = base_dir / candidate
    return alt if is_data(alt) else candidate


def is_data(path: Path) -> bool:
    """Whether ``path`` is something ``read_table`` reads: a file, or a saved dataset's folder."""
    return path.is_file() or saved_dataset(path) == "split"


def saved_dataset(path: Path) -> str | None:
    """What ``datasets``' ``save_to_disk`` wrote at ``path``: 'split' (a Dataset: its arrow files
    and state.json), 'splits' (a DatasetDict: a folder per split), else None."""
    if not path.is_dir():
        return None
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        return "split"
    return "splits" if (path / "dataset_dict.json").is_file() else None


def saved_splits(path: Path) -> list[str]:
    """The splits of a saved DatasetDict, as its dataset_dict.json lists them (each a folder in it)."""
    try:
        listed = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(split) for split in listed if saved_dataset(path / str(split)) == "split"]


def not_a_file(field_name: str, given: str | Path) -> str:
    """The one-line error for a data path that is not a file: missing, or a folder."""
    folder = Path(given).expanduser()
    if saved_dataset(folder) == "splits":
        splits = saved_splits(folder)
        first = splits[0] if splits else "train"
        return (f"{field_name}: {str(given)!r} is a saved DatasetDict (splits: {', '.join(splits) or 'none'}); "
                f"expected one split's folder, such as {str(folder / first)!r}")
    if folder.is_dir():
        return (f"{field_name}: {str(given)!r} is a folder; expected one data file ({_SUFFIXES_TEXT}; {_COMPRESSED_TEXT}), "
                "or a folder datasets' save_to_disk wrote")
    return f"{field_name}: no such file {str(given)!r}"


def read_table(path: str | Path, field_name: str, *, header: bool | None = None,
               columns: Sequence[str] | None = None, encoding: str | None = None) -> pd.DataFrame:
    """One data file as a frame whose column names are strings.

    csv/tsv: ``header`` says whether the first row names the columns (None: :func:`detect_header`
    decides); a headerless file's columns are ``columns``, else named by position: '0', '1', ....
    ``columns`` given with ``header`` None means the file has no header row; with ``header`` True
    they replace the names in it. A tsv is read without quoting (GLUE sentences hold stray quote
    characters) unless some column is quoted in every row. A .tsv or .txt laid out as a csv is
    read as one. txt: one example per line, ``text<TAB>label`` split at the last tab (or fastText's
    ``__label__NAME text``), blank lines skipped, columns ``text`` and ``label`` (or ``columns``); a
    first line that ``header`` or detection calls a header is skipped; a txt laid out as CoNLL is
    read as CoNLL. conll: one word a line with its tag last, a blank line after each sentence;
    columns ``tokens`` and ``tags`` (lists), ``header`` does not apply. jsonl, json, parquet,
    arrow, feather: ``header`` does not apply; ``columns`` renames. xlsx: the workbook's first sheet
    that holds a table, its first row the names unless ``header`` is False. A folder ``datasets``'
    ``save_to_disk`` wrote for one split: its columns, class labels by their names (as the Hub path
    reads them). Text files are in ``encoding`` where it is given (``data.encoding``), else what
    their byte-order mark names, else UTF-16 where every other byte is zero, else UTF-8. DataError
    (one line, naming ``field_name``) for anything unreadable. A URL is :func:`read_data`'s to fetch.
    """
    path = Path(path)
    if columns is not None and header is None:
        header = False
    if saved_dataset(path) == "split":
        frame = _read_saved_dataset(path, field_name)
    else:
        frame = _read_file(path, field_name, header, columns, encoding)
    frame.columns = [str(name) for name in frame.columns]
    if columns is not None:
        if len(columns) != frame.shape[1]:
            raise DataError(f"data.columns: expected {frame.shape[1]} names, one per column of {str(path)!r}, "
                            f"found {len(columns)}")
        frame.columns = [str(name) for name in columns]
    return frame


def local_copy(given: str, field_name: str, base_dir: Path | None = None) -> Path:
    """The local file or folder a data path names: a URL fetched (once per process), else the path
    as given or relative to ``base_dir`` (:func:`locate`)."""
    return fetch(given, field_name) if is_url(given) else locate(given, base_dir)


def read_data(given: str, field_name: str, base_dir: Path | None = None, *, header: bool | None = None,
              columns: Sequence[str] | None = None, encoding: str | None = None) -> tuple[pd.DataFrame, str]:
    """(frame, its source) of a data path as a config or flag gives it: a local path (relative to
    ``base_dir`` where not found as given), or a URL fetched first, whose errors name the URL
    rather than the local copy."""
    local = local_copy(given, field_name, base_dir)
    if not is_url(given):
        return read_table(local, field_name, header=header, columns=columns, encoding=encoding), str(local)
    try:
        return read_table(local, field_name, header=header, columns=columns, encoding=encoding), given
    except DataError as exc:
        raise DataError(str(exc).replace(str(local), shown_url(given))) from None


_JSON_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}


def _read_file(path: Path, field_name: str, header: bool | None, columns: Sequence[str] | None,
               encoding: str | None) -> pd.DataFrame:
    """One data file as a frame, by its format (``read_table`` names the columns)."""
    suffix = _suffix(path, field_name)
    text = _text(path, field_name, encoding) if suffix in _TEXT_SUFFIXES else ""
    suffix = _layout(text, suffix)
    if suffix == ".conll":
        frame = _read_conll(text, path, field_name)
    elif suffix in (".txt", _FASTTEXT):
        frame = _read_txt(text, path, field_name, header, fasttext=suffix == _FASTTEXT)
    else:
        try:
            if suffix == ".parquet":
                frame = pd.read_parquet(path)
            elif suffix in (".arrow", ".feather"):
                frame = _read_arrow(path)
            elif suffix == ".xlsx":
                frame = _read_xlsx(path, field_name, header)
            elif suffix in (".jsonl", ".json"):
                frame = _records_frame(_json_records(text, suffix, path, field_name))
            else:
                dialect = _dialect(text, suffix)
                if header is None:
                    header = _delimited_verdict(text, dialect) is not False
                if header:
                    text = _without_repeated_header(text)
                frame = dialect.numbers(pd.read_csv(io.StringIO(text), **dialect.options, **_ONLY_EMPTY_MISSING,
                                                    header=0 if header else None))
                if header and columns is None:
                    _check_unique_names(text, dialect, path, field_name)
                frame = _without_blank_cells(frame)
        except DataError:
            raise
        except Exception as exc:  # pandas raises many types; all mean "cannot parse"
            raise DataError(f"{field_name}: cannot read {str(path)!r}: {' '.join(str(exc).split())[:200]}") from None
    return frame


def _read_arrow(path: Path) -> pd.DataFrame:
    """An Arrow IPC file: Feather (pandas' ``to_feather``), or the stream ``datasets`` caches each
    split in (``.arrow``); pyarrow raises for anything else, which ``read_table`` reports."""
    import pyarrow as pa  # deferred: pandas' own dependency, needed only for Arrow files

    try:
        table = pa.ipc.open_file(path).read_all()
    except pa.ArrowInvalid:  # not the file format: the stream format datasets writes
        table = pa.ipc.open_stream(path).read_all()
    if b"huggingface" in (table.schema.metadata or {}):  # datasets' features: class labels by their names
        try:
            import datasets  # deferred: optional (the 'hub' extra); without it, class ids stay ids
        except ImportError:
            return table.to_pandas()
        return _named_classes(datasets.Dataset(table), datasets)
    return table.to_pandas()


def _read_saved_dataset(path: Path, field_name: str) -> pd.DataFrame:
    """A split that ``datasets``' ``save_to_disk`` wrote, as the Hub path reads one."""
    datasets = _datasets(field_name, f"reading the saved dataset {str(path)!r}")
    try:
        return _named_classes(datasets.load_from_disk(str(path)), datasets)
    except Exception as exc:  # a folder datasets wrote, then changed by hand
        raise DataError(f"{field_name}: cannot read the saved dataset {str(path)!r}: "
                        f"{' '.join(str(exc).split())[:200]}") from None


def _named_classes(dataset: Any, datasets: Any) -> pd.DataFrame:
    """A ``datasets`` split as a frame, each class label by its name ('positive', 'B-PER') rather
    than its id, so that predictions and the report say what the dataset says; -1 (no label, as
    unlabelled test splits mark it) is missing."""
    frame = dataset.to_pandas()
    for name, feature in dataset.features.items():
        inner = getattr(feature, "feature", None)  # a list of labels: one tag per word
        labels = feature if isinstance(feature, datasets.ClassLabel) else inner
        if not isinstance(labels, datasets.ClassLabel):
            continue
        names = list(labels.names)

        def named(value: Any, names: list[str] = names) -> Any:
            return names[int(value)] if 0 <= int(value) < len(names) else None

        if labels is feature:
            frame[name] = frame[name].map(lambda value: None if pd.isna(value) else named(value)).astype(object)
        else:
            frame[name] = frame[name].map(lambda values: [named(v) for v in values] if values is not None else None)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), "a number")


def _json_records(text: str, suffix: str, path: Path, field_name: str) -> list[dict[str, Any]] | dict[str, Any]:
    """The file's records, parsed once: jsonl, every non-blank line a JSON object; json, a list of
    objects, or a mapping: read by column, or the list of objects under one of its keys
    (``{"data": [...]}``, as many exports write it). Where not, the line (or item) and what it holds, for
    pandas says only 'cannot convert dictionary update sequence element #0'."""
    where = str(path)
    if suffix == ".jsonl":
        lines: list[dict[str, Any]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as exc:
                problem = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "nested too deep"
                raise DataError(f"{field_name}: line {number} of {where!r} is not valid JSON ({problem})") from None
            if not isinstance(record, dict):
                raise DataError(f"{field_name}: expected a JSON object on each line of {where!r}, found "
                                f"{_json_kind(record)} on line {number}")
            lines.append(record)
        return lines
    try:
        records = json.loads(text)
    except (ValueError, RecursionError) as exc:
        problem = (f"{exc.msg} at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError)
                   else "nested too deep")
        raise DataError(f"{field_name}: {where!r} is not valid JSON ({problem})") from None
    if isinstance(records, dict):
        records = _pandas_orient_records(records)
    if isinstance(records, dict):  # {"data": [...], "version": 2}: the records under their one key
        wrapped = [value for value in records.values()
                   if isinstance(value, list) and value and all(isinstance(item, dict) for item in value)]
        records = wrapped[0] if len(wrapped) == 1 else records
    if isinstance(records, list) and records and all(isinstance(row, list) for row in records) \
            and len({len(row) for row in records}) == 1:  # rows without names: columns by position, as a headerless csv
        records = [{str(i): value for i, value in enumerate(row)} for row in records]
    if isinstance(records, list):
        odd = next((i for i, record in enumerate(records) if not isinstance(record, dict)), None)
        if odd is not None:
            raise DataError(f"{field_name}: expected a list of JSON objects in {where!r}, found "
                            f"{_json_kind(records[odd])} as item {odd}")
    elif not isinstance(records, dict):
        raise DataError(f"{field_name}: expected a list of JSON objects in {where!r}, found {_json_kind(records)}")
    return records


def _pandas_orient_records(mapping: dict[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
    """The records of a JSON file that pandas' ``to_json`` wrote with ``orient='split'``
    (``{"columns": [...], "index": [...], "data": [[...], ...]}``) or ``orient='index'`` (a record
    per row id: more rows than names, each record with the same names); else ``mapping`` as it is
    (by column, ``orient='columns'``, or records under one key)."""
    columns, data = mapping.get("columns"), mapping.get("data")
    if isinstance(columns, list) and isinstance(data, list) and set(mapping) <= {"columns", "index", "data"} \
            and all(isinstance(row, list) and len(row) == len(columns) for row in data):
        return [dict(zip(map(str, columns), row, strict=True)) for row in data]
    rows = list(mapping.values())
    if rows and all(isinstance(row, dict) for row in rows):
        names = {tuple(row) for row in rows}
        if len(names) == 1 and len(rows) > len(next(iter(names))):
            return rows
    return mapping


def _records_frame(records: list[dict[str, Any]] | dict[str, Any]) -> pd.DataFrame:
    """``records`` as a frame, values as the file wrote them: columns in order of first appearance,
    a key missing from a record NaN, a column of whole numbers int64, of numbers with a null
    float64. Unlike pandas' ``read_json``, a string that looks like a number or a date stays a string."""
    return pd.DataFrame(records).infer_objects()


def _check_unique_names(text: str, dialect: _Dialect, path: Path, field_name: str) -> None:
    """A header row names each column once: pandas renames a second 'label' to 'label.1', and the
    study would read whichever of the two its field names."""
    names = pd.read_csv(io.StringIO(text), **dialect.options, header=None, nrows=1, dtype=str,
                        keep_default_na=False).iloc[0].tolist()
    seen: set[str] = set()
    for name in names:
        if not name.strip():  # pandas names each empty cell apart: 'Unnamed: 2', 'Unnamed: 3'
            continue
        if name in seen:
            raise DataError(f"{field_name}: column {name!r} appears twice in the header of {str(path)!r}; "
                            "expected each column named once")
        seen.add(name)


#: pandas' name for a column whose header cell is empty.
_UNNAMED = re.compile(r"Unnamed: \d+")


def _without_blank_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A csv or sheet less what spreadsheets save of cells a user once touched and emptied: rows of
    empty fields (``,,`` at the end of an export), and columns with an empty header cell and no
    value. Both are no data, and a blank row failed the study on 'text is empty'."""
    leftover = [name for name in frame.columns
                if isinstance(name, str) and _UNNAMED.fullmatch(name) and frame[name].isna().all()]
    return frame.drop(columns=leftover).dropna(how="all").reset_index(drop=True)


def _without_repeated_header(text: str) -> str:
    """``text`` less the lines below the first that repeat it: files joined with ``cat`` repeat
    their header, which read as an example whose label is 'label'."""
    end = text.find("\n")
    first = (text if end < 0 else text[:end]).rstrip("\r")
    if not first.strip() or text.find("\n" + first, len(first)) < 0:  # most files: one scan, no copy
        return text
    lines = text.splitlines(keepends=True)
    if not any(line.rstrip("\r\n") == first for line in lines[1:]):
        return text
    return lines[0] + "".join(line for line in lines[1:] if line.rstrip("\r\n") != first)


def detect_header(path: str | Path, *, field_name: str = "data.train", encoding: str | None = None) -> bool:
    """Whether the first row of a data file names its columns.

    csv/tsv: the first row is data when some column's first cell is a number over numbers (a
    header cell never is), or repeats a value of a column with few distinct values below it (a
    label); when the rows say nothing either way, a header. txt: a header only when its label
    cell stands out the same ways (a word over numbers, or not one of the few labels below).
    jsonl, json, parquet: always (their records name the columns).
    """
    path = Path(path)
    if saved_dataset(path) == "split":  # its features name the columns
        return True
    suffix = _suffix(path, field_name)
    if suffix not in (".csv", ".tsv", ".txt"):  # conll: a word and its tag per line, no names
        return True
    text = _text(path, field_name, encoding)
    suffix = _layout(text, suffix)
    if suffix in (".conll", _FASTTEXT):  # a word and its tag a line; a label then its text: no names
        return suffix == ".conll"
    if suffix == ".txt":
        return _header_verdict([[t, lab] for _, t, lab in _txt_rows(text, path, field_name, fasttext=False)]) is True
    return _delimited_verdict(text, _dialect(text, suffix)) is not False


def _layout(text: str, suffix: str) -> str:
    """The format a text file is laid out in, where its name says another: a .txt of CoNLL lines
    is CoNLL, a .txt whose first line opens with ``__label__`` is fastText's (``_FASTTEXT``), and a
    .tsv or .txt without a tab in its first line whose lines split alike by ',' or ';' is a csv (an
    export saved under the wrong name)."""
    if suffix == ".txt" and _conll_layout(text):
        return ".conll"
    if suffix == ".txt" and _first_line(text).lstrip().startswith(_FASTTEXT_LABEL):
        return _FASTTEXT
    if suffix in (".tsv", ".txt"):
        first = _first_line(text)
        if first and "\t" not in first and any(_splits_alike(text, sep) for sep in (",", ";")):
            return ".csv"
    return suffix


def data_suffix(path: str | Path) -> str:
    """The format suffix of a data file, a compression's removed: '.csv' for ``train.csv.gz``."""
    path = Path(path)
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix in COMPRESSIONS else suffix


def _suffix(path: Path, field_name: str) -> str:
    if not path.is_file():
        raise DataError(not_a_file(field_name, path))
    suffix = data_suffix(path)
    compressed = path.suffix.lower() in COMPRESSIONS
    if suffix not in (_TEXT_SUFFIXES if compressed else SUFFIXES):
        raise DataError(f"{field_name}: expected a {_SUFFIXES_TEXT} file ({_COMPRESSED_TEXT}), found {path.name!r}")
    return suffix


def _text(path: Path, field_name: str, encoding: str | None = None) -> str:
    """A text file's contents, decompressed where its last suffix or its first bytes say it is
    compressed, decoded in ``encoding`` where given, else as its byte-order mark says, else as
    UTF-16 where every other byte is zero, else as UTF-8, less any mark; DataError where it is not
    that text, not the compression it is named for, or a binary format under a text name."""
    limit, size = text_limit(), path.stat().st_size
    if size > limit:
        raise DataError(f"{field_name}: {str(path)!r} holds {_size(size)} of text, more than this "
                        f"machine reads into memory ({_size(limit)}, a quarter of it); split the file, or read a "
                        f"sample of it")
    data = path.read_bytes()
    decompress = COMPRESSIONS.get(path.suffix.lower())
    if decompress is not None:
        try:
            data = _decompressed(data, decompress, limit, path, field_name)
        except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
            raise DataError(f"{field_name}: {str(path)!r} is not {path.suffix.lower()[1:]}-compressed data "
                            f"({' '.join(str(exc).split())[:120]})") from None
    else:
        for magic, unpack in _COMPRESSED_MAGIC.items():
            if data.startswith(magic):  # a download saved without its '.gz', say
                try:
                    data = _decompressed(data, unpack, limit, path, field_name)
                except (OSError, EOFError, ValueError, lzma.LZMAError):
                    pass  # text that happens to start so: decoded (or refused) as it is
                break
        for magic, what in _BINARY_MAGIC.items():
            if data.startswith(magic):
                raise DataError(f"{field_name}: {str(path)!r} is {what}, not {data_suffix(path)[1:]} text")
    option = "--encoding" if field_name.startswith("--") else "data.encoding"  # a flag's file, or a config's
    if encoding is not None:  # the user's word: a mark the encoding does not take off is taken off here
        bom, fix = 0, f"; check {option}"
    else:
        encoding, bom = next(((name, len(mark)) for mark, name in _UNICODE_BOMS if data.startswith(mark)),
                             (_utf16_without_mark(data) or "utf-8", 0))
        fix = "; save it as UTF-8" if bom or encoding != "utf-8" else \
            f"; save it as UTF-8, or name its encoding with {option} (Excel on Windows saves csv as cp1252)"
    try:
        return data[bom:].decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:  # its start counts from after the mark
        offset = bom + exc.start
        raise DataError(f"{field_name}: {str(path)!r} is not {_encoding_name(encoding)} text "
                        f"(byte 0x{data[offset]:02x} at offset {offset}){fix}") from None


def _utf16_without_mark(data: bytes) -> str | None:
    """UTF-16 saved without a byte-order mark (some Windows tools do): text holds no zero bytes
    but there, where Latin letters, digits and separators have a zero byte beside them, so most
    bytes on one side of each pair are zero and none on the other. None for anything else."""
    sample = data[:4096]
    pairs = len(sample) // 2
    if pairs < 4 or len(data) % 2:
        return None
    zeros_first, zeros_second = sample[0:2 * pairs:2].count(0), sample[1:2 * pairs:2].count(0)
    if zeros_second > pairs // 2 and zeros_first == 0:
        return "utf-16-le"
    if zeros_first > pairs // 2 and zeros_second == 0:
        return "utf-16-be"
    return None


def _encoding_name(encoding: str) -> str:
    """'UTF-8', 'UTF-16-LE', 'cp1252': the Unicode encodings as they are usually written."""
    return encoding.upper() if encoding.lower().startswith("utf") else encoding


#: Byte-order marks and the encodings they name. Excel's 'Unicode Text' and PowerShell write
#: UTF-16; without a mark a text file is read as UTF-8. UTF-32's marks first: they begin with UTF-16's.
_UNICODE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
                 (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
#: The first bytes of compressed data, for a file whose name does not say it is compressed.
_COMPRESSED_MAGIC = {b"\x1f\x8b": gzip.open, b"\xfd7zXZ\x00": lzma.open, b"BZh": bz2.open}


def text_limit() -> int:
    """The most bytes of text a data file may hold (decompressed): a quarter of this machine's
    memory, since pandas needs a few times the text to parse it. Past it the process would be
    killed for memory; a compressed file that unpacks to far more than it is (a decompression
    bomb) is refused the same way, before it fills the memory."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 4
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return 4 << 30


def _decompressed(data: bytes, opener: Any, limit: int, path: Path, field_name: str) -> bytes:
    """``data`` decompressed by ``opener`` (gzip.open, ...), read no further than ``limit`` bytes;
    DataError where it holds more."""
    with opener(io.BytesIO(data)) as stream:
        out = stream.read(limit + 1)
    if len(out) > limit:
        raise DataError(f"{field_name}: {str(path)!r} decompresses to more than {_size(limit)} of text, more "
                        f"than this machine reads into memory (a quarter of it)")
    return bytes(out)


def _size(count: int) -> str:
    """A byte count as a reader takes it in: '1.5 GiB', '12.0 MiB', '300 bytes'."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f} {unit}"
    return f"{count} bytes"
#: The first bytes of files that are no text at all, and what they are.
_BINARY_MAGIC = {b"PK\x03\x04": "a zip archive (an Excel workbook is one: name it .xlsx; else unzip it)",
                 b"PAR1": "a Parquet file (name it .parquet)",
                 b"\xd0\xcf\x11\xe0": "an old Excel .xls workbook (save it as .xlsx or csv)"}


#: A number written with a decimal comma (``2,45``), as ';'-separated files hold them.
_DECIMAL_COMMA = re.compile(r"[+-]?\d+(?:,\d+)?(?:[eE][+-]?\d+)?")
#: A number in a ';'-separated file: with a decimal comma or point.
_SEMICOLON_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?")
#: pandas' reading options where only an empty field is missing (csv, tsv, xlsx): its default list
#: made a class 'None' or a text 'NA' missing; ``_numbers`` reads those marks in number columns.
_ONLY_EMPTY_MISSING: dict[str, Any] = {"keep_default_na": False, "na_values": [""]}
#: What spreadsheets, R and pandas write for a missing number (pandas' own list, less the empty field).
_MISSING_NUMBER = frozenset({"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                             "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


@dataclass(frozen=True)
class _Dialect:
    """How a csv or tsv is written: its separator and quoting, and whether its fields follow the
    separator after a space (``text, label`` written by hand). A ';' separator also means numbers
    may have a decimal comma (spreadsheets in locales that write ``2,45``)."""

    sep: str
    quoting: int
    spaced: bool = False

    @property
    def options(self) -> dict[str, Any]:
        """pandas' ``read_csv`` arguments. After ``, `` a field starts past the space, so that a
        quoted field is read as quoted and ``pos`` and `` pos`` are one class, as the writer meant."""
        return {"sep": self.sep, "quoting": self.quoting, "skipinitialspace": self.spaced}

    def numbers(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame``, read with only empty fields missing, with its columns of numbers as numbers:
        every value a number or a mark of a missing one (NA, NaN, null, ...), and in a ';'-separated
        file a number may have a decimal comma (a ','-separated one cannot hold it unquoted, and
        there '1,5' may be a pair). Elsewhere a 'None' or 'NA' stays as written: pandas' default
        made a class 'None' or a text 'NA' missing, and the study failed on empty labels."""
        if self.sep == ";":
            return _numbers(frame, _SEMICOLON_NUMBER, grouped=_GROUPED_POINTS, plain=_DECIMAL_COMMA)
        return _numbers(frame, _NUMBER, grouped=_GROUPED_COMMAS, plain=_NUMBER)


#: Currency signs an amount may carry before or after it ('$1,234.50', '12,50 €').
_CURRENCY = "$\u20ac\u00a3\u00a5\u20b9"
#: An amount grouped in thousands, as spreadsheets and reports format it: '1,234.50' (',' groups,
#: '.' decimals), or in a ';'-separated file '1.234,50' ('.' groups, ',' decimals).
_GROUPED_COMMAS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_GROUPED_POINTS = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+(?:,\d+)?")


def _numbers(frame: pd.DataFrame, number: re.Pattern[str], *, grouped: re.Pattern[str] | None = None,
             plain: re.Pattern[str] | None = None) -> pd.DataFrame:
    """``frame`` with each column whose values are all ``number`` or a missing-number mark read as
    numbers; and, with ``grouped``, each column of formatted amounts (prices, salaries as reports
    write them): every value ``grouped`` in thousands or ``plain`` (without the group mark), with or
    without a currency sign, one of them at least grouped or signed."""
    for name in frame.columns:
        column = frame[name]
        if not (pd.api.types.is_string_dtype(column) or pd.api.types.is_object_dtype(column)):
            continue
        written = column.astype(str).str.strip()
        missing = column.isna() | written.isin(_MISSING_NUMBER)
        present = written[~missing]
        if present.empty:
            continue
        if present.str.fullmatch(number.pattern).all():
            values = written.where(~missing).str.replace(",", ".", regex=False)
            frame[name] = pd.to_numeric(values, errors="coerce")
        elif grouped is not None and plain is not None:
            bare = present.str.strip(_CURRENCY + " \u00a0")
            if (bare.str.fullmatch(grouped.pattern) | bare.str.fullmatch(plain.pattern)).all():
                if grouped is _GROUPED_COMMAS:  # '1,234.50'
                    digits = bare.str.replace(",", "", regex=False)
                else:  # '1.234,50'
                    digits = bare.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
                frame[name] = pd.to_numeric(digits, errors="coerce").reindex(written.index)
    return frame


def _read_xlsx(path: Path, field_name: str, header: bool | None) -> pd.DataFrame:
    """The data of an Excel workbook, as annotators and spreadsheets hand it over: its first sheet
    that holds a table (two columns or more, two rows or more: a sheet of instructions before it is
    skipped), else its first sheet. An empty cell is missing, a cell 'None' or 'NA' a value (as in
    a csv)."""
    try:
        # deferred: optional dependency (the 'excel' extra), imported only for workbooks
        import openpyxl  # noqa: F401
    except ImportError:
        raise DataError(f"{field_name}: reading {path.name!r} needs the 'openpyxl' package "
                        "(pip install 'autopeft[excel]'), or save the sheet as csv") from None
    first = None
    with pd.ExcelFile(path, engine="openpyxl") as book:
        for name in book.sheet_names:  # one at a time: the data is most often the first
            frame = _without_blank_cells(_numbers(book.parse(name, header=0 if header is not False else None,
                                                             **_ONLY_EMPTY_MISSING), _NUMBER))
            if frame.shape[0] >= 2 and frame.shape[1] >= 2:
                return frame
            first = frame if first is None else first
    if first is None:
        raise DataError(f"{field_name}: {str(path)!r} holds no sheet")
    return first


def _dialect(text: str, suffix: str) -> _Dialect:
    """Separator, quoting and spacing of a csv or tsv."""
    if suffix == ".csv":
        sep = _csv_separator(text)
        return _Dialect(sep, csv.QUOTE_MINIMAL, spaced=_spaced(text, sep))
    return _Dialect("\t", csv.QUOTE_MINIMAL if _quoted_tsv(text) else csv.QUOTE_NONE)


def _csv_rows(lines: Iterable[str], sep: str, most: int | None = None) -> list[list[str]]:
    """``lines`` split into records of fields as the csv module reads them (a quoted field may span
    lines), the first ``most`` records that are not blank where given, a field of any length: the
    module's default limit (131,072 characters) refused a file whose first line held a long document."""
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        return list(islice((row for row in csv.reader(lines, delimiter=sep) if any(f.strip() for f in row)), most))
    finally:
        csv.field_size_limit(limit)


def _first_line(text: str) -> str:
    """The first line of ``text`` that is not blank ('' where there is none)."""
    # line by line, as a file is read: splitting a file of hundreds of MB would copy it to look at a line
    return next((line.rstrip("\n") for line in io.StringIO(text, newline=None) if line.strip()), "")


def _spaced(text: str, sep: str) -> bool:
    """Whether the first line's fields after the first all start with a space (``text, label``)."""
    fields = next(iter(_csv_rows([_first_line(text)], sep)), [])
    return len(fields) >= 2 and all(field.startswith(" ") and field.strip() for field in fields[1:])


#: Records of a .csv that decide its separator.
_SEPARATOR_SAMPLE = 50


def _sample_records(text: str, separator: str) -> list[list[str]]:
    """The first non-blank records of a text file read as separated by ``separator``: records, not
    lines, as a quoted review may hold line breaks (and blank lines) of its own."""
    return _csv_rows(io.StringIO(text, newline=""), separator, _SEPARATOR_SAMPLE)


def _splits_alike(text: str, separator: str) -> bool:
    """Whether every sampled record splits into the same number (two or more) of fields by ``separator``."""
    widths = {len(row) for row in _sample_records(text, separator)}
    return len(widths) == 1 and min(widths) >= 2


def _csv_separator(text: str) -> str:
    """',' unless the file is plainly ';'- or tab-separated: spreadsheets in locales whose decimal
    mark is a comma save their .csv with ';', and Excel's 'Unicode Text' and many exports name a
    tab-separated file .csv. Plainly: every sampled line splits into the same number (two or more)
    of fields by it, and the commas do not split them alike (a review may hold both), or, for ';',
    every comma is a number's decimal comma."""
    first = _first_line(text)
    for separator in (";", "\t"):
        if separator not in first or not _splits_alike(text, separator):
            continue
        if not _splits_alike(text, ","):
            return separator
        # both split every line alike (no header, one comma a line): ';' where each comma is a decimal comma
        fields = [field.strip() for row in _sample_records(text, separator) for field in row]
        if separator == ";" and all(_DECIMAL_COMMA.fullmatch(field) for field in fields if "," in field):
            return separator
    return ","


_QUOTED_FIELD = re.compile(r'"(?:[^"]|"")*"(?=[\t\r\n]|\Z)')
_FIELD_END = re.compile(r"[\t\r\n]")


def _field_end(text: str, pos: int) -> int:
    found = _FIELD_END.search(text, pos)
    return len(text) if found is None else found.start()


def _quoted_tsv(text: str) -> bool:
    """Whether some column of a tsv is quoted (``"..."``, inner quotes doubled) in every row below
    the first (a hand-written header may be bare), or in the first where it is the only row."""
    if '"' not in text:
        return False
    quoted: dict[int, bool] = {}
    first: dict[int, bool] = {}
    pos, column, row, end = 0, 0, 0, len(text)
    while pos < end:
        if column == 0 and text[pos] in "\r\n":  # a blank line
            pos += 1
            continue
        match = _QUOTED_FIELD.match(text, pos)
        is_quoted = match is not None
        pos = match.end() if match is not None else _field_end(text, pos)
        seen = first if row == 0 else quoted
        seen[column] = seen.get(column, True) and is_quoted
        if pos < end and text[pos] == "\t":
            column, pos = column + 1, pos + 1
            continue
        if row > 0 and not any(quoted.values()):
            return False
        column, row = 0, row + 1
        pos += 2 if text.startswith("\r\n", pos) else 1
    return any((quoted if row > 1 else first).values())


def _delimited_verdict(text: str, dialect: _Dialect) -> bool | None:
    try:
        sample = pd.read_csv(io.StringIO(text), **dialect.options, header=None, dtype=str,
                             keep_default_na=False, nrows=_SNIFF_ROWS)
    except Exception:  # the full read reports what is wrong with the file
        return None
    first = [str(cell).strip() for cell in sample.iloc[0]] if len(sample) else []
    if first == [str(i) for i in range(len(first))]:  # the names pandas gives columns, written out
        return True
    rows = sample.to_numpy().tolist()
    rows = rows[:1] + [row for row in rows[1:] if row != rows[0]]  # a header repeated below is still one
    if dialect.sep == ";":  # a decimal comma's number is a number to the verdict too
        rows = [[cell.replace(",", ".") if _DECIMAL_COMMA.fullmatch(cell.strip()) else cell for cell in row]
                for row in rows]
    return _header_verdict(rows)


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
#: At most this many distinct values below the first row make a column of classes.
_FEW_VALUES = 20


def _header_verdict(rows: list[list[Any]]) -> bool | None:
    """True: the first row names the columns; False: it is data; None: the rows do not tell.

    A first-row cell that is a number over a column of numbers is data, a word over numbers is a
    name: these decide. Without them, a cell that repeats a value of a column of few distinct values
    (a label) is data, one that is not among them is a name; both, or neither: None.
    """
    if len(rows) < 2:
        return None
    number_data = number_name = repeat_data = new_value = False
    for i, head in enumerate(rows[0]):
        cell = head.strip() if isinstance(head, str) else ""
        below = [row[i].strip() for row in rows[1:] if i < len(row) and isinstance(row[i], str)]
        below = [value for value in below if value]
        if not cell or not below:
            continue
        if all(_NUMBER.fullmatch(value) for value in below):
            if _NUMBER.fullmatch(cell):
                number_data = True
            else:
                number_name = True
            continue
        distinct = set(below)
        if len(distinct) > _FEW_VALUES:
            continue
        if cell in distinct:
            repeat_data = True
        elif len(distinct) < len(below):  # a column of classes (values repeat), and not one of them
            new_value = True
    if number_data or number_name:
        return None if number_data and number_name else number_name
    if repeat_data or new_value:
        return None if repeat_data and new_value else new_value
    return None


#: fastText's mark of a label: ``__label__positive this film ...``, the label before the text.
_FASTTEXT_LABEL = "__label__"


#: The layout ``_layout`` names a .txt of fastText lines by (no file carries it as its suffix).
_FASTTEXT = ".fasttext"


def _fasttext_row(line: str, number: int, path: Path, field_name: str) -> tuple[int, str, str]:
    words = line.split()
    labels = [word for word in words[:2] if word.startswith(_FASTTEXT_LABEL)]
    if not labels:
        raise DataError(f"{field_name}: line {number} of {str(path)!r} has no {_FASTTEXT_LABEL} before its text "
                        f"(fastText: {_FASTTEXT_LABEL}NAME text), as the lines above have")
    if len(labels) > 1:
        raise DataError(f"{field_name}: line {number} of {str(path)!r} has two labels or more ({', '.join(labels)}); "
                        "multi-label classification is not a task autopeft runs")
    return number, " ".join(words[1:]), labels[0][len(_FASTTEXT_LABEL):]


def _txt_rows(text: str, path: Path, field_name: str, *, fasttext: bool) -> list[tuple[int, str, str]]:
    """(line number, text, label) of each non-blank line of a txt file: ``text<TAB>label``, or with
    ``fasttext`` ``__label__NAME text``."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if fasttext:
            rows.append(_fasttext_row(line, number, path, field_name))
            continue
        cut = line.rfind("\t")
        if cut < 0:
            raise DataError(f"{field_name}: line {number} of {str(path)!r} has no tab-separated label")
        rows.append((number, line[:cut], line[cut + 1:].strip()))
    return rows


def _read_txt(text: str, path: Path, field_name: str, header: bool | None, *, fasttext: bool) -> pd.DataFrame:
    rows = _txt_rows(text, path, field_name, fasttext=fasttext)
    if header is None:  # fastText lines open with their label: never names
        header = not fasttext and _header_verdict([[t, lab] for _, t, lab in rows]) is True
    if header:
        rows = rows[1:]
    labels = pd.Series([lab or None for _, _, lab in rows], dtype=object)
    numbers = pd.to_numeric(labels, errors="coerce")
    # numeric labels read as numbers, as in csv; an empty label stays missing
    labels = numbers if rows and numbers.notna().sum() == labels.notna().sum() else labels.astype("str")
    return pd.DataFrame({"text": pd.Series([t for _, t, _ in rows], dtype=str), "label": labels})


#: The line CoNLL-2003 opens each document with: not a word of a sentence.
_DOCSTART = "-DOCSTART-"


def _conll_layout(text: str) -> bool:
    """Whether a .txt is laid out as CoNLL (one word a line, its tags after it, a blank line after
    each sentence), as NER data is shipped: read as ``text<TAB>label`` lines, each word would be an
    example of its own. The signs: every line splits into as many fields (two or more), and blank
    lines part the lines into two sentences or more, of two lines or more on average."""
    sentences, lines, widths = 0, 0, set()
    in_sentence = False
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            in_sentence = False
            continue
        if fields[0] == _DOCSTART:
            continue
        widths.add(len(fields))
        if len(widths) > 1:
            return False
        lines += 1
        if not in_sentence:
            sentences, in_sentence = sentences + 1, True
    return sentences >= 2 and min(widths, default=0) >= 2 and lines >= 2 * sentences


def _read_conll(text: str, path: Path, field_name: str) -> pd.DataFrame:
    """A CoNLL file as one row per sentence: ``tokens`` (the first field of each line) and ``tags``
    (the last, as CoNLL-2003 puts the named entity after its part-of-speech and chunk tags)."""
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    labels: list[str] = []
    for number, line in enumerate(text.splitlines() + [""], start=1):
        fields = line.split()
        if fields and fields[0] == _DOCSTART:
            continue
        if not fields:
            if words:
                tokens.append(words)
                tags.append(labels)
                words, labels = [], []
            continue
        if len(fields) < 2:
            raise DataError(f"{field_name}: line {number} of {str(path)!r} holds {fields[0]!r} alone; expected a "
                            "word and its tag (CoNLL: one word a line, its tag last, a blank line after each sentence)")
        words.append(fields[0])
        labels.append(fields[-1])
    return pd.DataFrame({"tokens": tokens, "tags": tags})


def _datasets(field_name: str, what: str) -> Any:
    """The ``datasets`` module; DataError naming the extra that installs it where it is missing."""
    try:
        # deferred: optional dependency (the 'hub' extra), imported only for Hub or saved datasets
        import datasets
    except ImportError:
        raise DataError(f"{field_name}: {what} needs the 'datasets' package (pip install 'autopeft[hub]')") from None
    return datasets


def read_hub_split(source: HubSource, split: str, field_name: str = "data.hub") -> pd.DataFrame:
    """One split of a Hub dataset (or a local dataset folder ``datasets`` reads) as a frame."""
    from autopeft import _compat  # deferred: it imports Optuna, which reading a file does not need

    datasets = _datasets(field_name, "loading from the Hub")
    # where the Hub does not answer, the cache alone: as HF_HUB_OFFLINE=1 reads it, at once
    down = None if Path(source.name).expanduser().exists() else hub.unreachable()
    try:
        with _compat.hub_offline() if down else nullcontext():
            ds = datasets.load_dataset(source.name, source.config, split=split)
    except Exception as exc:  # network, missing dataset or split
        offline = f" (the Hub does not answer at {hub.endpoint()}: {down}; read the cache alone)" if down else ""
        raise DataError(f"{field_name}: cannot load {source.name!r} split {split!r}{offline}: "
                        f"{' '.join(str(exc).split())[:200]}") from None
    return _named_classes(ds, datasets)


def _load_hub(cfg: DataConfig) -> dict[str, pd.DataFrame]:
    assert cfg.hub is not None
    wanted = {"train": cfg.hub.train_split, "validation": cfg.hub.validation_split, "test": cfg.hub.test_split}
    return {split: read_hub_split(cfg.hub, hub_split) for split, hub_split in wanted.items() if hub_split is not None}


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
                frames[split], source[split] = read_data(given, f"data.{split}", base_dir, header=cfg.header,
                                                         columns=cfg.columns, encoding=cfg.encoding)
    if cfg.split_column is not None:
        where = source.pop("train", None) or source["hub"]
        frames = _split_by_column(frames["train"], cfg.split_column)
        source.update({split: f"{where}, the rows whose {cfg.split_column!r} says {split}" for split in frames})
    if cfg.messages_column is not None and task.name != "causal_lm":
        raise DataError(f"data.{MESSAGES_COLUMN_FIELD}: {task.name} reads no conversations (causal_lm does)")
    columns = columns_for(cfg, task)
    if cfg.messages_column is not None:
        frames, columns = _conversations_as_pairs(frames, cfg.messages_column, columns)
    needed = list(dict.fromkeys(c.name for c in columns))
    for split, frame in frames.items():
        for column in columns:
            if column.name not in frame.columns:
                raise DataError(
                    f"data.{column.field}: column {column.name!r} is not in the {split} data "
                    f"(columns: {', '.join(map(str, frame.columns))}){did_you_mean(column.name, list(frame.columns))}"
                )
        frames[split] = frame[needed].reset_index(drop=True)
        if frames[split].empty:
            raise DataError(f"data.{split}: the {split} data has no rows")
        _check_columns(frames[split], columns, split, _data_dir(cfg, split, base_dir))
    classes_spec = next((c for c in columns if c.kind in ("label", "tags")), None)  # the categorical target
    if "validation" not in frames:
        train = frames["train"].sample(frac=1.0, random_state=seed).reset_index(drop=True)
        n_val = max(1, int(round(len(train) * cfg.validation_fraction)))
        if len(train) - n_val < 1:
            raise DataError(f"data.train: {len(train)} rows are too few to carve out a validation split")
        validation, train = train.iloc[:n_val], train.iloc[n_val:]
        if task.categorical and classes_spec is not None:
            # a class (or token tag) whose every row the carve drew (one example, say) cannot be
            # learnt and is no train label: its rows stay in train, where the user's file had them
            known = _classes(train[classes_spec.name], classes_spec.kind)
            unseen = pd.Series([not _row_classes(value, classes_spec.kind) <= known
                                for value in validation[classes_spec.name]], index=validation.index, dtype=bool)
            if unseen.all():
                raise DataError(f"data.{classes_spec.field}: no row carved out of train for validation has a class "
                                "with another example left in train; give data.validation, or more than one "
                                "example per class")
            validation, train = validation[~unseen], pd.concat([train, validation[unseen]])
        frames["validation"], frames["train"] = validation.reset_index(drop=True), train.reset_index(drop=True)
        source["validation"] = f"{cfg.validation_fraction:.0%} of train, seed {seed}"

    if cfg.max_train_examples:
        kept = _head(frames["train"], cfg.max_train_examples, seed)
        if task.categorical and classes_spec is not None:
            keep_every = _with_every_class if classes_spec.kind == "label" else _with_every_tag
            kept = keep_every(kept, frames["train"], classes_spec.name, seed)
        frames["train"] = kept
    if cfg.max_eval_examples:
        for split in ("validation", "test"):
            if split in frames:
                frames[split] = _head(frames[split], cfg.max_eval_examples, seed)
    if cfg.max_validation_examples:  # trials evaluate on it at every report; test is scored once
        frames["validation"] = _head(frames["validation"], cfg.max_validation_examples, seed)

    target = next((c for c in columns if c.kind in ("label", "value", "tags")), None)
    label_names: list[str] = []
    if task.categorical and target is not None:
        label_names = sorted(_classes(frames["train"][target.name], target.kind))
        if len(label_names) < 2:
            raise DataError(f"data.{target.field}: expected at least 2 classes in train, found {label_names}")
        _check_case(label_names, target)
        for split, frame in frames.items():
            unexpected = sorted(_classes(frame[target.name], target.kind) - set(label_names))
            if unexpected:
                shown = ", ".join(label_names[:_LABELS_SHOWN])
                if len(label_names) > _LABELS_SHOWN:  # an error is one line, whatever the classes
                    shown += f", ... ({len(label_names)} in all)"
                raise DataError(
                    f"data.{target.field}: {split} has label {unexpected[0]!r} that train does not have "
                    f"(train labels: {shown})"
                )
    inputs = [c.name for c in columns if not c.target]
    return RawData(frames=frames, label_names=label_names, text_columns=inputs,
                   label_column=next(c.name for c in columns if c.target), source=source, task=task.name,
                   file_columns=inputs if any(c.kind == "image" for c in columns if not c.target) else [])


def _check_case(label_names: list[str], target: Column) -> None:
    """DataError where two classes differ only in case ('Positive', 'positive'): a hand-labelled
    sheet spells one class two ways far more often than a task means two classes so, and trained
    as written they are two classes the model is asked to tell apart."""
    spellings: dict[str, list[str]] = {}
    for name in label_names:
        spellings.setdefault(name.casefold(), []).append(name)
    clash = next((names for names in spellings.values() if len(names) > 1), None)
    if clash is not None:
        what = "tags" if target.kind == "tags" else "classes"
        raise DataError(f"data.{target.field}: train has {what} {clash[0]!r} and {clash[1]!r}, which differ only in "
                        f"case; spell each one way in the data")


def _conversations_as_pairs(frames: dict[str, pd.DataFrame], messages: str | list[str],
                            columns: list[Column]) -> tuple[dict[str, pd.DataFrame], list[Column]]:
    """Each split with the prompt and response columns made of its conversations (the turns
    before the last assistant reply, as turns; the reply), and the columns to read, the prompt
    as turns ('chat') rather than text. Several message columns (TRL's conversational prompt and
    completion) make one conversation a row, their turns in order. DataError (one line) for a
    missing column, a made column's name the data already uses, or a conversation that is none
    or ends with no reply."""
    field_name = f"data.{MESSAGES_COLUMN_FIELD}"
    names = [messages] if isinstance(messages, str) else list(messages)
    prompt, response = (next(c for c in columns if c.target is target) for target in (False, True))
    out = {}
    for split, frame in frames.items():
        for name in names:
            if name not in frame.columns:
                raise DataError(f"{field_name}: column {name!r} is not in the {split} data (columns: "
                                f"{', '.join(map(str, frame.columns))}){did_you_mean(name, list(frame.columns))}")
        taken = next((c for c in (prompt, response) if c.name in frame.columns and c.name not in names), None)
        if taken is not None:
            raise DataError(f"data.{taken.field}: the {split} data has a column {taken.name!r} already; name the "
                            f"column made of the conversations' {'replies' if taken.target else 'turns before them'} "
                            f"otherwise")
        pairs = prompts_and_responses(frame, names, split)
        out[split] = frame.assign(**{prompt.name: [turns for turns, _ in pairs],
                                     response.name: [reply for _, reply in pairs]})
    return out, [replace(c, kind="chat") if c is prompt else c for c in columns]


def _split_by_column(frame: pd.DataFrame, column: str) -> dict[str, pd.DataFrame]:
    """The splits a column of the train data assigns, each row to the one its value names; DataError
    for a value that names none (one line: the row, the value, what was expected)."""
    if column not in frame.columns:
        raise DataError(f"data.{SPLIT_COLUMN_FIELD}: column {column!r} is not in the train data (columns: "
                        f"{', '.join(map(str, frame.columns))}){did_you_mean(column, list(frame.columns))}")
    splits = frame[column].map(split_of)
    unknown = splits.isna()
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        expected = "; ".join(f"{split}: {', '.join(names)}" for split, names in SPLIT_NAMES.items())
        raise DataError(f"data.{SPLIT_COLUMN_FIELD}: train row {row} has {short_repr(frame[column].iloc[row])} in "
                        f"column {column!r} ({int(unknown.sum())} such rows); expected a split's name ({expected})")
    if not (splits == "train").any():
        raise DataError(f"data.{SPLIT_COLUMN_FIELD}: no row of column {column!r} says train (found: "
                        f"{', '.join(sorted(set(map(str, frame[column]))))})")
    return {split: frame[splits == split].drop(columns=[column]).reset_index(drop=True)
            for split in SPLITS if (splits == split).any()}


#: Train labels an error lists.
_LABELS_SHOWN = 10


def did_you_mean(name: str, columns: list[str]) -> str:
    """'; did you mean 'Label'?' for a column that differs from ``name`` only in case, spacing,
    '_' or '-', else for a close spelling; '' when none is near."""
    def key(text: str) -> str:
        return re.sub(r"[\s_-]+", "", str(text)).casefold()

    same = [column for column in columns if key(column) == key(name)]
    if not same:
        keys = {key(column): column for column in columns}
        same = [keys[k] for k in difflib.get_close_matches(key(name), list(keys), n=1, cutoff=0.75)]
    return f"; did you mean {same[0]!r}?" if same else ""


def _classes(values: pd.Series, kind: str) -> set[str]:
    return set().union(*(_row_classes(value, kind) for value in values))


def _row_classes(value: Any, kind: str) -> set[str]:
    """The classes of one row: its label, or each of its words' tags (one class per word)."""
    return {str(tag) for tag in value} if kind == "tags" else {str(value)}


def _data_dir(cfg: DataConfig, split: str, base_dir: Path | None) -> Path | None:
    """The folder of a split's file, where relative image paths in it are looked up."""
    given = getattr(cfg, split, None) if cfg.hub is None else None
    if given is None:  # carved from train, or from the Hub
        given = cfg.train if cfg.hub is None else None
    if given is None:
        return base_dir
    return local_copy(given, f"data.{split}", base_dir).resolve().parent


def _check_columns(frame: pd.DataFrame, columns: list[Column], split: str, data_dir: Path | None) -> None:
    """What each column must hold; list and path columns are normalised in place (lists of
    strings, absolute paths) so encoding and fingerprints do not depend on the file format."""
    texts = [c for c in columns if c.kind == "text"]
    for field_name in dict.fromkeys(c.field for c in texts):
        first, *others = [c for c in texts if c.field == field_name]
        if not first.joined:
            _check_texts(frame, [first.name, *(c.name for c in others)], split, field_name)
            continue
        _check_texts(frame, [first.name], split, field_name)
        for column in others:  # Alpaca's input, empty where the instruction says it all
            frame[column.name] = frame[column.name].fillna("")
            _check_texts(frame, [column.name], split, field_name, empty_allowed=True)
    for column in columns:
        missing = frame[column.name].isna() if column.kind in ("label", "value") else None
        if missing is not None and missing.any():
            row = int(missing.to_numpy().argmax())
            raise DataError(f"data.{column.field}: {column.name!r} is empty in {split} row {row} "
                            f"({int(missing.sum())} empty in all)")
        if column.kind == "label":
            frame[column.name] = class_labels(frame[column.name])
            listed = next((row for row, v in enumerate(frame[column.name])
                           if isinstance(v, (list, tuple, dict, np.ndarray))), None)
            if listed is not None:  # str() would make each combination of labels a class of its own
                raise DataError(f"data.{column.field}: expected one label per example in {column.name!r}, found "
                                f"{type(frame[column.name].iloc[listed]).__name__} in {split} row {listed} "
                                "(multi-label classification is not a task autopeft runs)")
        if column.kind == "value":
            _check_numbers(frame[column.name], column, split)
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


def class_labels(values: pd.Series) -> pd.Series:
    """A label column as the study reads its classes, whatever wrote the file:
    - floats that are all whole numbers (``1.0``: pandas writes a column of ints so once it held a
      missing value, or was computed) as ints, so class ``1.0`` of one file is class ``1`` of
      another, and the classes are named ``0``, ``1``;
    - text without the spaces around it, invisible in a spreadsheet, which made ``'pos '`` a class
      beside ``'pos'``."""
    if pd.api.types.is_float_dtype(values):
        numbers = values.to_numpy()
        if np.isfinite(numbers).all() and (numbers == np.round(numbers)).all():
            return values.astype("int64")
        return values
    return values.map(lambda value: value.strip() if isinstance(value, str) else value)


def _as_list(value: Any, column: Column, split: str, row: int) -> list[str]:
    """A list cell (:func:`list_cell`) of words or tags; DataError naming the row where it is none."""
    given = type(value).__name__
    value = list_cell(value)
    if value is None:
        what = "words" if column.kind == "words" else "tags"
        raise DataError(f"data.{column.field}: expected a list of {what} in {column.name!r} ({split} row {row}), "
                        f"found {given}")
    if not value:
        raise DataError(f"data.{column.field}: {column.name!r} is empty in {split} row {row}")
    return [str(v) if column.kind == "words" else str(v).strip() for v in value]


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


def _with_every_class(kept: pd.DataFrame, frame: pd.DataFrame, label: str, seed: int) -> pd.DataFrame:
    """``kept`` (rows drawn from ``frame``) with one row of each class it missed, in place of rows of
    its largest classes: a cap on train must not turn a rare class into one that validation has and
    train does not. Unchanged where it missed none (or where there are more classes than rows)."""
    classes = frame[label].astype(str)
    missing = set(classes) - set(kept[label].astype(str))
    if not missing or classes.nunique() > len(kept):
        return kept
    added = frame[classes.isin(missing)].sample(frac=1.0, random_state=seed)
    added = added[~added[label].astype(str).duplicated()]
    kept_classes = kept[label].astype(str)
    left, dropped = Counter(kept_classes), Counter[str]()
    for _ in range(len(added)):  # one row at a time from whichever class has most left
        largest = max(left, key=lambda name: left[name])
        left[largest] -= 1
        dropped[largest] += 1
    drop_index = [index for name, count in dropped.items() for index in kept.index[kept_classes == name][-count:]]
    return pd.concat([kept.drop(index=drop_index), added]).reset_index(drop=True)


def _with_every_tag(kept: pd.DataFrame, frame: pd.DataFrame, tags: str, seed: int) -> pd.DataFrame:
    """``kept`` (sentences drawn from ``frame``) with a sentence for each token tag it missed, in place
    of sentences whose every tag other kept sentences also hold: as ``_with_every_class``, for tags.
    Unchanged where it missed none, or where no kept sentence can make room."""
    missing = _classes(frame[tags], "tags") - _classes(kept[tags], "tags")
    if not missing:
        return kept
    added: list[Any] = []
    shuffled = frame.sample(frac=1.0, random_state=seed)
    for index, value in zip(shuffled.index, shuffled[tags], strict=True):
        held = _row_classes(value, "tags")
        if held & missing:
            added.append(index)
            missing -= held
            if not missing:
                break
    holders = Counter(tag for value in kept[tags] for tag in _row_classes(value, "tags"))
    dropped: list[Any] = []
    for index in reversed(kept.index):  # the drawn order's last sentences make room first
        held = _row_classes(kept.at[index, tags], "tags")
        if len(dropped) < len(added) and all(holders[tag] > 1 for tag in held):
            dropped.append(index)
            holders.subtract(held)
    if len(dropped) < len(added):
        return kept
    return pd.concat([kept.drop(index=dropped), frame.loc[added]]).reset_index(drop=True)


def _check_numbers(values: pd.Series, column: Column, split: str) -> None:
    """A regression target holds finite numbers: "inf" parses as one, and the first training
    step's loss became inf."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(numbers)
    if bad.any():
        row = int(bad.argmax())
        raise DataError(f"data.{column.field}: regression needs finite numbers in {column.name!r}, found "
                        f"{short_repr(values.iloc[row])} in {split} row {row} ({int(bad.sum())} in all)")


def _check_texts(frame: pd.DataFrame, columns: list[str], split: str, field_name: str = "text_columns", *,
                 empty_allowed: bool = False) -> None:
    for column in columns:
        values = frame[column]
        nested = next((row for row, v in enumerate(values) if isinstance(v, (dict, list, tuple, np.ndarray))), None)
        if nested is not None:  # it would be read as its Python repr
            raise DataError(f"data.{field_name}: expected text in {column!r} ({split} row {nested}), found "
                            f"{type(values.iloc[nested]).__name__}")
        if empty_allowed:
            continue
        empty = values.isna() | (values.astype(str).str.strip() == "")
        if empty.any():
            row = int(empty.to_numpy().argmax())
            raise DataError(f"data.{field_name}: {column!r} is empty in {split} row {row} ({int(empty.sum())} empty in all)")


