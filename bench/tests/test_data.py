"""The benchmark's SST-2 splits: validation holds whole sentences that no training row is part of."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.data import prepare_task

TRAIN = ["a gorgeous film", "gorgeous", "the plot drags", "drags", "an utterly forgettable sequel",
         "a warm and witty comedy", "witty comedy"]
DEV = ["a gorgeous film about the sea", "the plot drags on and on", "forgettable sequel", "warm and witty"]


def write_sst2(root: Path) -> None:
    folder = root / "sst2"
    folder.mkdir(parents=True)
    for name, rows in {"train": TRAIN, "dev": DEV, "test": ["a film that never settles down"]}.items():
        pd.DataFrame({"sentence": rows, "label": [i % 2 for i in range(len(rows))]}).to_csv(
            folder / f"{name}.tsv", sep="\t", index=False)


def test_sst2_validation_is_whole_sentences_and_train_drops_their_phrases(tmp_path: Path) -> None:
    write_sst2(tmp_path / "glue")
    files = prepare_task("sst2", tmp_path / "glue", tmp_path / "out", max_train=None, max_validation=None, max_test=None)
    validation = set(pd.read_parquet(files.validation)["sentence"])
    train = set(pd.read_parquet(files.train)["sentence"])
    # a phrase of a training row ("forgettable sequel") or of another row is not a whole sentence
    assert validation == {"a gorgeous film about the sea", "the plot drags on and on"}
    # every phrase of a validation sentence left train; the rest stayed
    assert train == {"an utterly forgettable sequel", "a warm and witty comedy", "witty comedy"}
    assert files.sizes == {"train": 3, "validation": 2, "test": 1}


def test_rte_validation_is_carved_from_train_without_overlap(tmp_path: Path) -> None:
    folder = tmp_path / "glue" / "rte"
    folder.mkdir(parents=True)
    pairs = pd.DataFrame({"sentence1": [f"premise {i}" for i in range(20)],
                          "sentence2": [f"hypothesis {i}" for i in range(20)], "label": [i % 2 for i in range(20)]})
    pairs.to_csv(folder / "train.tsv", sep="\t", index=False)
    pairs.head(4).to_csv(folder / "dev.tsv", sep="\t", index=False)
    files = prepare_task("rte", tmp_path / "glue", tmp_path / "out", max_train=None, max_validation=None, max_test=None)
    train, validation = pd.read_parquet(files.train), pd.read_parquet(files.validation)
    assert len(validation) == 2 and len(train) == 18
    assert not set(validation["sentence1"]) & set(train["sentence1"])
    assert files.sizes["test"] == len(pairs.head(4)) == 4


def test_sst2_validation_tops_up_with_a_whole_training_sentence_and_its_phrases_leave_train(tmp_path: Path) -> None:
    write_sst2(tmp_path / "glue")
    files = prepare_task("sst2", tmp_path / "glue", tmp_path / "out", max_train=None, max_validation=3, max_test=None,
                         top_up_validation=True)
    validation = list(pd.read_parquet(files.validation)["sentence"])
    train = set(pd.read_parquet(files.train)["sentence"])
    # dev's two whole sentences first, then one of train's two whole ones; train's other rows
    # are phrases of a validation sentence and are never drawn
    assert validation[:2] == ["a gorgeous film about the sea", "the plot drags on and on"]
    left_in_train = {"an utterly forgettable sequel": {"a warm and witty comedy", "witty comedy"},
                     "a warm and witty comedy": {"an utterly forgettable sequel"}}
    assert len(validation) == 3 and validation[2] in left_in_train
    # the drawn sentence and its phrases left train; the other whole sentence and its phrase stayed
    assert train == left_in_train[validation[2]]
    assert files.sizes == {"train": len(train), "validation": 3, "test": 1}


def test_sst2_top_up_is_off_by_default(tmp_path: Path) -> None:
    write_sst2(tmp_path / "glue")
    files = prepare_task("sst2", tmp_path / "glue", tmp_path / "out", max_train=None, max_validation=3, max_test=None)
    assert files.sizes["validation"] == 2


@pytest.mark.parametrize(("settings", "says"), [
    ({"tasks": ["sst2"], "max_validation": None}, "needs --max-validation"),
    ({"tasks": ["rte"], "max_validation": 2000}, "applies to tasks with splits.whole_sentence_validation"),
])
def test_a_top_up_that_would_do_nothing_is_refused_before_any_run(tmp_path: Path, settings, says, capsys) -> None:
    from bench.run import parse_args

    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({"top_up_validation": True, **settings}))
    with pytest.raises(SystemExit) as exc:
        parse_args(["--config", str(config)])
    assert exc.value.code != 0
    assert says in capsys.readouterr().err
    assert parse_args(["--config", str(config), "--task", "sst2", "--max-validation", "2000"])["top_up_validation"]


def test_a_task_picked_from_a_config_that_tops_up_another_of_its_tasks_runs(tmp_path: Path, capsys) -> None:
    from bench.run import parse_args

    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({"top_up_validation": True, "tasks": ["sst2", "qnli"], "max_validation": 2000}))
    assert parse_args(["--config", str(config), "--task", "qnli"])["tasks"] == ["qnli"]  # QNLI carves its own
    with pytest.raises(SystemExit):  # asked for on the command line for a task without such a split
        parse_args(["--config", str(config), "--task", "qnli", "--top-up-validation"])
    assert "applies to tasks with splits.whole_sentence_validation" in capsys.readouterr().err


def test_first_seed_moves_the_seeds_run_so_an_earlier_run_can_be_extended(capsys) -> None:
    from bench.run import parse_args, seed_range

    assert list(seed_range(parse_args(["--seeds", "3"]))) == [0, 1, 2]
    assert list(seed_range(parse_args(["--seeds", "3", "--first-seed", "3"]))) == [3, 4, 5]
    with pytest.raises(SystemExit):
        parse_args(["--first-seed", "-1"])
    assert "--first-seed must be 0 or more, found -1" in capsys.readouterr().err
