"""GLUE-format tasks for the benchmark: read the TSVs, subsample with a fixed seed, write the
splits the methods share (train / validation / test parquet files) so every method sees the same rows.

SST-2: train.tsv -> train, dev.tsv -> validation (it is part of GLUE's SST-2 train), test.tsv
(the official GLUE dev set) -> test. RTE: validation carved from train.tsv, dev.tsv (the official
GLUE dev set) -> test. TSVs are read with ``quoting=csv.QUOTE_NONE`` (sentences hold quotes).

SST-2's train split holds every *phrase* of each review sentence (median 7 words), its test split
whole sentences (median 19). Drawn at random, about three in four validation phrases are parts of
training rows, so validation rewards memorising them and picked adapters that did worse on test.
SST-2's validation therefore keeps only whole sentences (rows no other row contains: median 19
words, like test) and train drops every phrase of them.

dev.tsv holds only 676 whole sentences: one standard error of about 1.6 points near 80% accuracy,
as large as the differences between search methods. ``top_up_validation`` adds whole sentences
drawn from train.tsv (data seed) until validation holds ``max_validation`` rows; their phrases
leave train like those of dev.tsv's sentences.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

TASKS: dict[str, dict] = {
    "sst2": {"folder": "sst2", "text_columns": ["sentence"], "validation": "dev.tsv", "test": "test.tsv",
             "whole_sentence_validation": True},
    "rte": {"folder": "rte", "text_columns": ["sentence1", "sentence2"], "validation": None, "test": "dev.tsv",
            "whole_sentence_validation": False},
}


@dataclass
class TaskFiles:
    task: str
    train: Path
    validation: Path
    test: Path
    text_columns: list[str]
    label_column: str
    sizes: dict[str, int]


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)


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


def prepare_task(task: str, glue_dir: Path, out_dir: Path, *, max_train: int | None, max_validation: int | None,
                 max_test: int | None, validation_fraction: float = 0.1, data_seed: int = 0,
                 top_up_validation: bool = False) -> TaskFiles:
    """Write the benchmark's splits of ``task`` to ``out_dir`` and return their paths.

    The data seed is fixed (not the run seed): every seed and method is judged on the same rows.
    """
    if task not in TASKS:
        raise SystemExit(f"--task: expected one of {', '.join(TASKS)}, found {task!r}")
    spec = TASKS[task]
    folder = Path(glue_dir) / spec["folder"]
    if not (folder / "train.tsv").is_file():
        raise SystemExit(f"--glue-dir: no {spec['folder']}/train.tsv under {str(glue_dir)!r}")
    cols = [*spec["text_columns"], "label"]
    train = read_tsv(folder / "train.tsv")[cols]
    test = read_tsv(folder / spec["test"])[cols]
    if spec["validation"]:
        validation = read_tsv(folder / spec["validation"])[cols]
        if spec["whole_sentence_validation"]:
            train, validation = whole_sentence_validation(
                train, validation, spec["text_columns"][0], seed=data_seed,
                at_least=(max_validation or 0) if top_up_validation else 0)
    else:  # carve validation from train (fixed seed), as GLUE's test labels are not public
        shuffled = train.sample(frac=1.0, random_state=data_seed).reset_index(drop=True)
        n_val = max(1, int(round(len(shuffled) * validation_fraction)))
        validation, train = shuffled.iloc[:n_val], shuffled.iloc[n_val:]

    def cut(frame: pd.DataFrame, n: int | None) -> pd.DataFrame:
        frame = frame.reset_index(drop=True)
        return frame if not n or len(frame) <= n else frame.sample(n=n, random_state=data_seed).reset_index(drop=True)

    frames = {"train": cut(train, max_train), "validation": cut(validation, max_validation), "test": cut(test, max_test)}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, frame in frames.items():
        # parquet, not CSV: a sentence such as "null" or "NA" stays text when read back
        paths[split] = out_dir / f"{task}-{split}.parquet"
        frame.to_parquet(paths[split], index=False)
    return TaskFiles(task=task, train=paths["train"], validation=paths["validation"], test=paths["test"],
                     text_columns=list(spec["text_columns"]), label_column="label",
                     sizes={k: len(v) for k, v in frames.items()})
