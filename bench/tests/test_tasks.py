"""Benchmark tasks as YAML files: the shipped SST-2, RTE and QNLI, a user's own task beside its
data, and the one-line errors a task that cannot run gets before anything trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.data import TASKS_DIR, TaskError, check_splits, load_task, prepare_task, shipped_tasks
from tests.conftest import REPO

#: The shipped tasks and what ../shared/data/glue/README.md says their files hold.
SHIPPED = {
    "sst2": {"train": "sst2/train.tsv", "validation": "sst2/dev.tsv", "test": "sst2/test.tsv", "text": ["sentence"]},
    "rte": {"train": "rte/train.tsv", "validation": None, "test": "rte/dev.tsv", "text": ["sentence1", "sentence2"]},
    "qnli": {"train": "qnli/train.tsv", "validation": None, "test": "qnli/test.tsv", "text": ["question", "sentence"]},
}


def write_task(folder: Path, filename: str = "task.yaml", **fields) -> Path:
    """A user's task file in ``folder`` (its data in ``folder/data``), ``fields`` merged over it."""
    task = {"name": "reviews", "files": {"train": "data/train.csv", "test": "data/test.csv"},
            "columns": {"text": "review", "label": "stars"}}
    for key, value in fields.items():
        task[key] = {**task[key], **value} if isinstance(task.get(key), dict) and isinstance(value, dict) else value
    path = folder / filename
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def write_data(folder: Path, train_rows: int = 20) -> None:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    reviews = [f"review number {i}" for i in range(train_rows)]
    reviews[0] = "null"  # a text a CSV reader would turn into a missing value
    pd.DataFrame({"review": reviews, "stars": [i % 2 for i in range(train_rows)]}).to_csv(data / "train.csv", index=False)
    pd.DataFrame({"review": ["a test review", "another one"], "stars": [0, 1]}).to_csv(data / "test.csv", index=False)


def one_line_error(path: Path, glue_dir: Path | str = "unused") -> str:
    with pytest.raises(TaskError) as exc:
        load_task(path, glue_dir)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


# --------------------------------------------------------------------------- the shipped tasks


def test_the_shipped_task_files_validate_and_replace_the_task_table() -> None:
    assert shipped_tasks() == sorted(SHIPPED)
    for name, expected in SHIPPED.items():
        task = load_task(name, "/glue", files=False)  # the settings alone: no data needed
        assert task.source == TASKS_DIR / f"{name}.yaml" and task.name == name
        assert (task.spec.kind, task.spec.metric, task.spec.mode) == ("sequence_classification", "accuracy", "max")
        assert task.spec.files.relative_to == "glue_dir"
        assert task.spec.columns.text == expected["text"] and task.spec.columns.label == "label"
        for split in ("train", "validation", "test"):
            file = task.file(split)
            assert (file if file is None else str(file)) == (expected[split] and f"/glue/{expected[split]}"), split
    assert load_task("sst2", "/glue", files=False).spec.splits.whole_sentence_validation


def test_the_shipped_task_files_point_to_existing_files_with_their_columns(glue_dir: Path) -> None:
    for name in SHIPPED:
        task = load_task(name, glue_dir)  # files found, every column checked against each header
        for split in ("train", "validation", "test"):
            assert task.file(split) is None or task.file(split).is_file()


def test_a_name_that_is_not_shipped_lists_the_shipped_ones() -> None:
    with pytest.raises(TaskError, match=r"^--task: expected a task file \(\.yaml\) or one of qnli, rte, sst2 "
                                        r"\(bench/tasks/<name>\.yaml\), found 'sst3'$"):
        load_task("sst3", "/glue")
    with pytest.raises(TaskError, match="no such task file 'nowhere/task.yaml'"):
        load_task("nowhere/task.yaml", "/glue")


# --------------------------------------------------------------------------- a user's task


def test_a_user_task_reads_its_files_relative_to_its_own_folder(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "mine"
    write_data(folder)
    path = write_task(folder, max_rows={"test": 1})
    monkeypatch.chdir(tmp_path)  # not the task's folder: its paths do not depend on where the bench runs
    task = load_task(path.relative_to(tmp_path), "/glue")
    assert task.train == folder / "data" / "train.csv" and task.test == folder / "data" / "test.csv"
    assert task.validation is None

    files = prepare_task(task, "/glue", tmp_path / "out", max_train=None, max_validation=None, max_test=None)
    assert files.task == "reviews" and files.text_columns == ["review"] and files.label_column == "stars"
    # validation carved from train (10%, the default fraction); test cut to the task's max_rows
    assert files.sizes == {"train": 18, "validation": 2, "test": 1}
    assert (files.kind, files.metric, files.mode) == ("sequence_classification", "accuracy", "max")
    splits = pd.concat([pd.read_parquet(files.train), pd.read_parquet(files.validation)])
    assert "null" in set(splits["review"])  # text stays text
    check_splits(files)  # autopeft's loader takes the splits as they are written


def test_a_task_reads_every_file_autopeft_search_reads(tmp_path: Path) -> None:
    """The bench had its own reader (tsv, csv, json, parquet): a user's Excel sheet or saved dataset,
    which `autopeft search` reads, was refused by `make bench`."""
    import datasets

    write_data(tmp_path)
    frame = pd.read_csv(tmp_path / "data" / "train.csv", keep_default_na=False)
    frame.to_excel(tmp_path / "data" / "train.xlsx", index=False)
    datasets.Dataset.from_pandas(frame.head(2), preserve_index=False).save_to_disk(str(tmp_path / "data" / "test"))
    for train in ("data/train.xlsx", "data/train.csv"):
        task = load_task(write_task(tmp_path, files={"train": train, "test": "data/test"}), "/glue")
        files = prepare_task(task, "/glue", tmp_path / "out", max_train=None, max_validation=None, max_test=None)
        assert files.sizes == {"train": 18, "validation": 2, "test": 2}
        splits = pd.concat([pd.read_parquet(files.train), pd.read_parquet(files.validation)])
        assert sorted(splits["review"]) == sorted(frame["review"])  # "null" stays text
        check_splits(files)


def test_a_task_names_the_encoding_of_its_files(tmp_path: Path) -> None:
    """A task whose files Excel saved on Windows (cp1252): refused with no way to read them."""
    write_data(tmp_path)
    for name in ("train.csv", "test.csv"):
        path = tmp_path / "data" / name
        frame = pd.read_csv(path, keep_default_na=False)
        frame.assign(review="caf\u00e9 " + frame["review"]).to_csv(path, index=False, encoding="cp1252")
    message = one_line_error(write_task(tmp_path))
    assert "is not UTF-8 text" in message and "name its encoding with files.encoding" in message
    task = load_task(write_task(tmp_path, files={"encoding": "windows-1252"}), "/glue")
    assert task.spec.files.encoding == "cp1252"
    files = prepare_task(task, "/glue", tmp_path / "out", max_train=None, max_validation=None, max_test=None)
    assert pd.read_parquet(files.test)["review"].tolist() == ["caf\u00e9 a test review", "caf\u00e9 another one"]


def test_a_config_names_a_task_file_relative_to_the_config(tmp_path: Path) -> None:
    from bench.run import parse_args

    write_data(tmp_path / "tasks")
    task = write_task(tmp_path / "tasks")
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "bench.yaml"
    config.write_text(yaml.safe_dump({"tasks": ["../tasks/task.yaml", "rte"]}))
    settings = parse_args(["--config", str(config)])
    assert settings["tasks"] == ["reviews", "rte"]
    assert Path(settings["task_files"]["reviews"]).resolve() == task
    assert settings["task_files"]["rte"] == str(TASKS_DIR / "rte.yaml")
    # a flag replaces the config's tasks; its path is relative to where the bench runs
    assert parse_args(["--config", str(config), "--task", str(task)])["tasks"] == ["reviews"]


def test_row_caps_are_the_smaller_of_the_task_and_the_bench(tmp_path: Path) -> None:
    write_data(tmp_path, train_rows=40)
    task = load_task(write_task(tmp_path, max_rows={"train": 10}, splits={"validation_fraction": 0.25}), "/glue")
    files = prepare_task(task, "/glue", tmp_path / "out", max_train=20, max_validation=5, max_test=None)
    assert files.sizes == {"train": 10, "validation": 5, "test": 2}


# --------------------------------------------------------------------------- one-line errors


def test_a_column_the_file_lacks_is_one_line_naming_the_field_the_file_and_its_columns(tmp_path: Path) -> None:
    write_data(tmp_path)
    message = one_line_error(write_task(tmp_path, columns={"text": "Review"}))
    assert message.endswith(f": columns.text: column 'Review' is not in the train file "
                            f"'{tmp_path / 'data' / 'train.csv'}' (columns: review, stars); did you mean 'review'?")
    message = one_line_error(write_task(tmp_path, columns={"label": "rating"}))
    assert ": columns.label: column 'rating' is not in the train file" in message and "did you mean" not in message


def test_a_task_with_a_missing_column_exits_2_with_one_line_before_anything_trains(tmp_path: Path) -> None:
    write_data(tmp_path)
    task = write_task(tmp_path, columns={"text": "txt"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "bench.run", "--task", str(task), "--methods", "default",
                           "--seeds", "1", "--out", str(tmp_path / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"python -m bench.run: error: {task}: columns.text: column 'txt' is not in the train file "
                     f"'{tmp_path / 'data' / 'train.csv'}' (columns: review, stars)"]
    assert not (tmp_path / "out").exists()  # nothing started


@pytest.mark.parametrize(("fields", "says"), [
    ({"metrc": "f1"}, "metrc: unknown key; did you mean 'metric'?"),
    ({"files": {"tset": "data/test.csv"}}, "files.tset: unknown key; did you mean 'test'?"),
    ({"columns": {"labels": "stars"}}, "columns.labels: unknown key; did you mean 'label'?"),
    ({"splits": {"seed": 3}}, "splits.seed: unknown key (valid keys: validation_fraction, whole_sentence_validation)"),
])
def test_unknown_keys_are_refused(tmp_path: Path, fields: dict, says: str) -> None:
    write_data(tmp_path)
    assert one_line_error(write_task(tmp_path, **fields)).endswith(f": {says}")


@pytest.mark.parametrize(("fields", "says"), [
    ({"kind": "causal_lm"}, "kind: expected one of sequence_classification, regression (the task kinds that read "
                            "text columns and a label) (found 'causal_lm')"),
    ({"metric": "loss"}, "metric: expected a metric sequence_classification reports where higher is better: "
                         "accuracy, f1, mcc (found 'loss')"),
    ({"kind": "regression", "metric": "mse"}, "metric: expected a metric regression reports where higher is better: "
                                              "pearson, spearman (found 'mse')"),
    ({"mode": "min"}, "mode: Input should be 'max' (found 'min')"),
    ({"splits": {"validation_fraction": 1.5}}, "splits.validation_fraction: Input should be less than 1 (found 1.5)"),
    ({"max_rows": {"train": 0}}, "max_rows.train: Input should be greater than 0 (found 0)"),
    ({"splits": {"whole_sentence_validation": True}}, "splits: whole_sentence_validation keeps the whole sentences "
                                                      "of files.validation; expected a files.validation file, found no "
                                                      "files.validation"),
    ({"name": "my task"}, "name: String should match pattern"),
    ({"files": {"test": "data/missing.csv"}}, "files.test: no such file"),
    ({"files": {"train": "data/train.json.xls"}}, "files.train: expected a .csv, .tsv, .txt, .conll, .jsonl, .json, "
                                                  ".parquet, .arrow, .feather, .xlsx file (or a folder datasets' save_to_disk "
                                                  "wrote), "
                                                  "found 'train.json.xls'"),
])
def test_a_wrong_setting_is_one_line_naming_the_field_what_was_expected_and_what_was_found(
        tmp_path: Path, fields: dict, says: str) -> None:
    write_data(tmp_path)
    (tmp_path / "data" / "train.json.xls").write_text("")
    assert f": {says}" in one_line_error(write_task(tmp_path, **fields))


def test_a_regression_task_defaults_to_its_kinds_metric(tmp_path: Path) -> None:
    write_data(tmp_path)
    task = load_task(write_task(tmp_path, kind="regression"), "/glue")
    assert (task.spec.kind, task.spec.metric, task.spec.mode) == ("regression", "pearson", "max")


def test_rows_autopeft_would_refuse_are_one_line_before_anything_trains(tmp_path: Path) -> None:
    write_data(tmp_path)
    pd.DataFrame({"review": ["a test review"], "stars": [5]}).to_csv(tmp_path / "data" / "test.csv", index=False)
    path = write_task(tmp_path)
    files = prepare_task(load_task(path, "/glue"), "/glue", tmp_path / "out", max_train=None, max_validation=None,
                         max_test=None)
    with pytest.raises(TaskError) as exc:
        check_splits(files)
    # autopeft's message, in the task file's own field names
    assert str(exc.value) == f"{path}: columns.label: test has label '5' that train does not have (train labels: 0, 1)"


@pytest.mark.parametrize(("argv", "says"), [
    (["--task", "{task}"], "{task}: metrc: unknown key; did you mean 'metric'?"),
    (["--task", "sst2,{twin}"], "--task: every task needs its own name (the results are keyed by it); found 'sst2'"),
    (["--task", "{regression}", "--methods", "autopeft-zero-config"],
     "--methods autopeft-zero-config: compares test accuracy of a sequence_classification task; expected that, "
     "found task reviews (regression, pearson)"),
])
def test_the_bench_refuses_a_task_in_one_line_with_exit_status_2(tmp_path: Path, argv: list[str], says: str,
                                                                  capsys) -> None:
    from bench.run import parse_args

    write_data(tmp_path)
    paths = {"task": write_task(tmp_path, metrc="f1"), "twin": write_task(tmp_path, "twin.yaml", name="sst2"),
             "regression": write_task(tmp_path, "regression.yaml", kind="regression")}
    with pytest.raises(SystemExit) as exc:
        parse_args([arg.format(**paths) for arg in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"python -m bench.run: error: {says.format(**paths)}")
