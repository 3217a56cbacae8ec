"""Benchmark tasks: a task is a YAML file naming its data files, columns, kind, metric and splits
(``bench/tasks/<name>.yaml`` for the shipped SST-2, RTE and QNLI; any path for a user's own data).
The bench checks it before any training, reads the files, subsamples them with a fixed seed and
writes the splits the methods share (train / validation / test parquet files), so every method
sees the same rows.

A task file (``name``, ``files`` and ``columns`` are required; unknown keys are refused)::

    name: rte                        # what the results call it
    kind: sequence_classification    # or regression: autopeft's task kinds that read text + a label
    files:
      relative_to: glue_dir          # task_file (default): paths relative to this file's folder;
                                     # glue_dir: relative to the bench's --glue-dir
      train: rte/train.tsv
      test: rte/dev.tsv              # GLUE's dev set: GLUE's test labels are not public
      # validation: a file; without one, splits.validation_fraction of train (data seed)
      # encoding: cp1252             # the files' text encoding; default: UTF-8 (or a byte-order mark's)
    columns: {text: [sentence1, sentence2], label: label}
    metric: accuracy                 # one the kind reports, higher is better; default: the kind's
    mode: max
    splits: {validation_fraction: 0.1, whole_sentence_validation: false}
    max_rows: {train: null, validation: null, test: null}   # caps, as well as the bench's --max-*

Files: what ``autopeft search`` reads, read by autopeft's own reader (``autopeft.data.read_table``):
.tsv (GLUE's, without quoting: its sentences hold quotes), .csv, .txt, .jsonl, .json, .parquet,
.xlsx, compressed text files, a folder ``datasets``' ``save_to_disk`` wrote; a header row is
detected; a cell such as "null" stays text.

SST-2 (sst2.yaml): train.tsv -> train, dev.tsv -> validation (it is part of GLUE's SST-2 train),
test.tsv (the official GLUE dev set) -> test. RTE: validation carved from train.tsv, dev.tsv (the
official GLUE dev set) -> test. QNLI: validation carved from train.tsv, test.tsv (1,000 held-out
pairs of GLUE's dev set) -> test.

SST-2's train split holds every *phrase* of each review sentence (median 7 words), its test split
whole sentences (median 19). Drawn at random, about three in four validation phrases are parts of
training rows, so validation rewards memorising them and picked adapters that did worse on test.
SST-2's validation therefore keeps only whole sentences (``splits.whole_sentence_validation``: rows
no other row contains: median 19 words, like test) and train drops every phrase of them.

dev.tsv holds only 676 whole sentences: one standard error of about 1.6 points near 80% accuracy,
as large as the differences between search methods. ``top_up_validation`` adds whole sentences
drawn from train.tsv (data seed) until validation holds ``max_validation`` rows; their phrases
leave train like those of dev.tsv's sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from autopeft.data import SUFFIXES as DATA_SUFFIXES
from autopeft.data import data_suffix, did_you_mean, is_data, saved_dataset
from autopeft.data import read_table as read_data
from autopeft.errors import DataError

#: The shipped task files: ``--task sst2`` reads ``bench/tasks/sst2.yaml``.
TASKS_DIR = Path(__file__).resolve().parent / "tasks"
SPLITS = ("train", "validation", "test")


class TaskError(ValueError):
    """A task that cannot run, in one line: the task file, the field, what was expected and what was found."""


def _text_kinds() -> list[str]:
    """autopeft's task kinds that read text columns and one label column: the kinds every bench
    method can train (a kind registered later with those columns counts too)."""
    from autopeft.tasks import all_tasks

    return [kind.name for kind in all_tasks() if [c.field for c in kind.columns] == ["text_columns", "label_column"]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskFilesSpec(_Strict):
    relative_to: Literal["task_file", "glue_dir"] = Field(
        "task_file", description="What relative paths below start from: the task file's folder, or the bench's "
                                 "--glue-dir (the shipped GLUE tasks: ../shared/data/glue by default).")
    train: str = Field(description="The training file (.tsv, .csv, .jsonl, .json or .parquet, with a header row).")
    validation: str | None = Field(
        None, description="The file methods select on; without one, splits.validation_fraction of train is carved out.")
    test: str = Field(description="The held-out file every method's test metric is measured on.")
    encoding: str | None = Field(
        None, description="The files' text encoding (e.g. cp1252), as autopeft's data.encoding; default: UTF-8, or "
                          "what a byte-order mark names.")

    @field_validator("encoding")
    @classmethod
    def _a_text_encoding(cls, value: str | None) -> str | None:
        from autopeft.config import text_encoding

        return None if value is None else text_encoding(value)


class ColumnsSpec(_Strict):
    text: list[str] = Field(min_length=1, description="The text column(s) the model reads (two: a sentence pair).")
    label: str = Field("label", description="The column the model learns to predict.")

    @field_validator("text", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class SplitsSpec(_Strict):
    validation_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Without files.validation: the share of train carved out as validation, "
                                         "drawn with the data seed.")
    whole_sentence_validation: bool = Field(
        False, description="Validation keeps only rows no other row contains (whole sentences) and train drops every "
                           "row contained in one of them (SST-2, whose train holds each sentence's phrases).")


class MaxRowsSpec(_Strict):
    train: int | None = Field(None, gt=0, description="Most training rows (with the bench's --max-train: the smaller).")
    validation: int | None = Field(None, gt=0, description="Most validation rows (and --max-validation).")
    test: int | None = Field(None, gt=0, description="Most test rows (and --max-test).")


class TaskSpec(_Strict):
    """A benchmark task as its YAML file states it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="What the results call the task (letters, digits, '_', '-', '.').")
    kind: str = Field("sequence_classification", description="An autopeft task kind that reads text columns and "
                                                             "a label column.")
    files: TaskFilesSpec
    columns: ColumnsSpec
    metric: str | None = Field(None, validate_default=True,
                               description="Validation/test metric the methods select on and are compared by; "
                                           "default: the kind's.")
    mode: Literal["max"] = Field("max", description="Higher is better: the bench ranks methods and draws its curves "
                                                    "that way, so it takes metrics where higher is better only.")
    splits: SplitsSpec = Field(default_factory=SplitsSpec)
    max_rows: MaxRowsSpec = Field(default_factory=MaxRowsSpec)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        kinds = _text_kinds()
        if value not in kinds:
            raise ValueError(f"expected one of {', '.join(kinds)} (the task kinds that read text columns and a label)")
        return value

    @field_validator("metric")
    @classmethod
    def _kind_metric(cls, value: str | None, info: ValidationInfo) -> str | None:
        from autopeft.tasks import MINIMISED_METRICS, get_task

        if "kind" not in info.data:  # the kind is wrong: that error is the one to read
            return value
        kind = get_task(info.data["kind"])
        if value is None:
            return kind.default_metric
        higher = [m for m in kind.metric_names if m not in MINIMISED_METRICS]
        if value not in higher:
            raise ValueError(f"expected a metric {kind.name} reports where higher is better: {', '.join(higher)}")
        return value

    @field_validator("splits")
    @classmethod
    def _whole_sentences(cls, value: SplitsSpec, info: ValidationInfo) -> SplitsSpec:
        files, columns = info.data.get("files"), info.data.get("columns")
        if value.whole_sentence_validation and files is not None and files.validation is None:
            raise ValueError("whole_sentence_validation keeps the whole sentences of files.validation; "
                             "expected a files.validation file, found no files.validation")
        if value.whole_sentence_validation and columns is not None and len(columns.text) != 1:
            raise ValueError(f"whole_sentence_validation compares one text column; expected one in columns.text, "
                             f"found {len(columns.text)}")
        return value


@dataclass(frozen=True)
class Task:
    """A checked task file: its settings and the data files it names, resolved."""

    spec: TaskSpec
    source: Path
    train: Path
    test: Path
    validation: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def file(self, split: str) -> Path | None:
        return {"train": self.train, "validation": self.validation, "test": self.test}[split]


@dataclass
class TaskFiles:
    task: str
    train: Path
    validation: Path
    test: Path
    text_columns: list[str]
    label_column: str
    sizes: dict[str, int]
    kind: str = "sequence_classification"
    metric: str = "accuracy"
    mode: str = "max"
    #: The task file it came from.
    source: str = ""


def shipped_tasks() -> list[str]:
    """The names ``--task`` takes for the task files in ``bench/tasks``."""
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def is_task_path(task: str | Path) -> bool:
    """Whether ``--task`` was given a path (ends in .yaml/.yml or holds a '/'), not a shipped name."""
    text = str(task)
    return text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text


def task_path(task: str | Path) -> Path:
    """A shipped task's name (sst2 -> bench/tasks/sst2.yaml) or a task file's path, as given."""
    return Path(task).expanduser() if is_task_path(task) else TASKS_DIR / f"{task}.yaml"


def load_task(task: str | Path, glue_dir: str | Path, *, files: bool = True) -> Task:
    """The task file ``task`` names, validated; with ``files``, its data files found and the
    columns it names checked against each file's header (without, the paths are resolved only).
    TaskError, one line, for anything wrong."""
    path = task_path(task)
    if not path.is_file():
        if is_task_path(task):
            raise TaskError(f"--task: no such task file {str(path)!r}")
        raise TaskError(f"--task: expected a task file (.yaml) or one of {', '.join(shipped_tasks())} "
                        f"(bench/tasks/<name>.yaml), found {str(task)!r}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TaskError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise TaskError(f"{path}: expected a mapping of task settings (name, files, columns, ...), "
                        f"found {type(raw).__name__}")
    from autopeft._validation import one_line

    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        raise TaskError(f"{path}: {one_line(exc, TaskSpec)}") from None
    glue = spec.files.relative_to == "glue_dir"
    base = Path(glue_dir).expanduser() if glue else path.resolve().parent
    found: dict[str, Path] = {}
    for split in SPLITS:
        given = getattr(spec.files, split)
        if given is None:
            continue
        file = base / Path(given).expanduser()  # an absolute path stays itself
        where = f"--glue-dir {str(glue_dir)!r}" if glue else f"the task file's folder {str(base)!r}"
        if files and not is_data(file):
            raise TaskError(f"{path}: files.{split}: no such file {str(file)!r} (relative to {where})")
        if saved_dataset(file) is None and data_suffix(file) not in DATA_SUFFIXES:
            raise TaskError(f"{path}: files.{split}: expected a {', '.join(DATA_SUFFIXES)} file (or a folder "
                            f"datasets' save_to_disk wrote), found {file.name!r}")
        found[split] = file
    loaded = Task(spec=spec, source=path, **found)
    if files:
        check_columns(loaded)
    return loaded


def check_columns(task: Task) -> None:
    """TaskError (one line: the field, the file, the columns it has) for a column the task names
    that one of its files does not have."""
    for split in SPLITS:
        file = task.file(split)
        if file is None:
            continue
        header = list(read_table(file, task=task, split=split).columns)
        named = [("columns.text", name) for name in task.spec.columns.text] + [("columns.label", task.spec.columns.label)]
        for field, name in named:
            if name not in header:
                raise TaskError(f"{task.source}: {field}: column {name!r} is not in the {split} file {str(file)!r} "
                                f"(columns: {', '.join(header)}){did_you_mean(name, header)}")


def read_table(path: Path, *, task: Task | None = None, split: str = "train") -> pd.DataFrame:
    """A task's data file as ``autopeft search`` reads it (a frame with string column names); its
    errors, one line, name the task file's field."""
    where = f"{task.source}: files.{split}" if task is not None else str(path)
    try:
        return read_data(path, where, encoding=task.spec.files.encoding if task is not None else None)
    except DataError as exc:  # the field a task file names the encoding with
        raise TaskError(str(exc).replace("data.encoding", "files.encoding")) from None


def whole_sentence_validation(train: pd.DataFrame, validation: pd.DataFrame, column: str, *,
                              at_least: int = 0, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the validation rows no other row contains (whole sentences), and drop from train every
    row contained in one of them (their phrases), so validation judges sentences no trial saw.

    With ``at_least`` above the whole sentences validation holds, whole sentences of train, in an
    order drawn with ``seed``, join validation until it holds ``at_least`` rows.
    """
    # newline-joined: a row matches inside one text, never across two (rows hold no newlines)
    every_row = "\n".join([*train[column], *validation[column]])
    whole = validation[[every_row.count(text) == 1 for text in validation[column]]]
    if len(whole) < at_least:
        # checked one by one in the drawn order: about one train row in seven is a whole
        # sentence, and each check scans all rows, so stopping early saves most of the scan
        drawn: list[int] = []
        for index, text in train[column].sample(frac=1.0, random_state=seed).items():
            if len(whole) + len(drawn) >= at_least:
                break
            if every_row.count(text) == 1:
                drawn.append(index)
        whole = pd.concat([whole, train.loc[drawn]])
    kept_text = "\n".join(whole[column])
    unseen = train[[text not in kept_text for text in train[column]]]
    return unseen.reset_index(drop=True), whole.reset_index(drop=True)


def _cap(*limits: int | None) -> int | None:
    """The smallest of the caps that are set (None: no cap)."""
    given = [n for n in limits if n]
    return min(given) if given else None


def prepare_task(task: str | Path | Task, glue_dir: str | Path, out_dir: Path, *, max_train: int | None,
                 max_validation: int | None, max_test: int | None, data_seed: int = 0,
                 top_up_validation: bool = False) -> TaskFiles:
    """Write the benchmark's splits of ``task`` (a loaded task, a shipped task's name or a task
    file's path) to ``out_dir`` and return their paths. Each split is cut to the smaller of the
    bench's ``max_*`` and the task's ``max_rows``.

    The data seed is fixed (not the run seed): every seed and method is judged on the same rows.
    """
    if not isinstance(task, Task):
        try:
            task = load_task(task, glue_dir)
        except TaskError as exc:
            raise SystemExit(str(exc)) from None
    spec = task.spec
    cols = [*spec.columns.text, spec.columns.label]
    caps = {"train": _cap(max_train, spec.max_rows.train), "validation": _cap(max_validation, spec.max_rows.validation),
            "test": _cap(max_test, spec.max_rows.test)}
    train = read_table(task.train, task=task, split="train")[cols]
    test = read_table(task.test, task=task, split="test")[cols]
    if task.validation is not None:
        validation = read_table(task.validation, task=task, split="validation")[cols]
        if spec.splits.whole_sentence_validation:
            train, validation = whole_sentence_validation(
                train, validation, spec.columns.text[0], seed=data_seed,
                at_least=(caps["validation"] or 0) if top_up_validation else 0)
    else:  # carve validation from train (fixed seed), e.g. as GLUE's test labels are not public
        shuffled = train.sample(frac=1.0, random_state=data_seed).reset_index(drop=True)
        n_val = max(1, int(round(len(shuffled) * spec.splits.validation_fraction)))
        if len(shuffled) - n_val < 1:
            raise TaskError(f"{task.source}: files.train: {len(shuffled)} rows are too few to carve a validation "
                            f"split ({spec.splits.validation_fraction:g}) out of")
        validation, train = shuffled.iloc[:n_val], shuffled.iloc[n_val:]

    def cut(frame: pd.DataFrame, n: int | None) -> pd.DataFrame:
        frame = frame.reset_index(drop=True)
        return frame if not n or len(frame) <= n else frame.sample(n=n, random_state=data_seed).reset_index(drop=True)

    frames = {"train": cut(train, caps["train"]), "validation": cut(validation, caps["validation"]),
              "test": cut(test, caps["test"])}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, frame in frames.items():
        if frame.empty:
            raise TaskError(f"{task.source}: the {split} split has no rows")
        # parquet, not CSV: a sentence such as "null" or "NA" stays text when read back
        paths[split] = out_dir / f"{task.name}-{split}.parquet"
        frame.to_parquet(paths[split], index=False)
    return TaskFiles(task=task.name, train=paths["train"], validation=paths["validation"], test=paths["test"],
                     text_columns=list(spec.columns.text), label_column=spec.columns.label,
                     sizes={k: len(v) for k, v in frames.items()}, kind=spec.kind, metric=str(spec.metric),
                     mode=spec.mode, source=str(task.source))


def check_splits(files: TaskFiles) -> None:
    """TaskError where autopeft's own loader refuses the written splits (a test label train does
    not have, a regression label that is not a number, an empty text, ...): the check every method
    would fail on, made once before any of them trains."""
    from autopeft.config import DataConfig
    from autopeft.data import load
    from autopeft.errors import DataError
    from autopeft.tasks import get_task

    cfg = DataConfig(train=str(files.train), validation=str(files.validation), test=str(files.test),
                     text_columns=files.text_columns, label_column=files.label_column)
    try:
        load(cfg, get_task(files.kind), seed=0)
    except DataError as exc:  # named as the task file names it: data.label_column -> columns.label
        message = " ".join(str(exc).split())
        for field, ours in _TASK_FIELDS.items():
            message = message.replace(field, ours)
        raise TaskError(f"{files.source or files.task}: {message}") from None


#: autopeft's DataConfig fields and what a task file calls them, for autopeft's messages.
_TASK_FIELDS = {"data.text_columns": "columns.text", "data.label_column": "columns.label"}
