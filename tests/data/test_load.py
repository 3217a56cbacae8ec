from __future__ import annotations

import json

import pandas as pd
import pytest

from autopeft.config import DataConfig
from autopeft.data import load
from autopeft.errors import DataError
from autopeft.tasks import collate, get_task, tokenize

CLS = get_task("sequence_classification")
FRAME = pd.DataFrame({"sentence": [f"text number {i}" for i in range(40)], "label": ["pos", "neg"] * 20})


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_local_formats_load(tmp_path, suffix):
    path = tmp_path / f"train.{suffix}"
    {"csv": lambda: FRAME.to_csv(path, index=False),
     "tsv": lambda: FRAME.to_csv(path, sep="\t", index=False),
     "jsonl": lambda: FRAME.to_json(path, orient="records", lines=True),
     "parquet": lambda: FRAME.to_parquet(path)}[suffix]()
    raw = load(DataConfig(train=str(path), text_columns=["sentence"]), CLS, seed=0)
    assert raw.label_names == ["neg", "pos"]
    assert raw.sizes == {"train": 36, "validation": 4}


def test_validation_is_carved_with_a_fixed_seed(tmp_path):
    path = tmp_path / "train.csv"
    FRAME.to_csv(path, index=False)
    cfg = DataConfig(train=str(path), text_columns="sentence", validation_fraction=0.25)
    a, b, c = (load(cfg, CLS, seed=s) for s in (1, 1, 2))
    assert a.frames["validation"].equals(b.frames["validation"])
    assert not a.frames["validation"].equals(c.frames["validation"])
    assert set(a.frames["validation"].sentence).isdisjoint(a.frames["train"].sentence)


def test_a_class_the_carve_would_take_whole_stays_in_train(tmp_path):
    """Ten classes of one example each beside two large ones: a carved validation split drew some
    of them, and the study failed on 'validation has label ... that train does not have', a
    split the user never gave."""
    path = tmp_path / "train.csv"
    frame = pd.DataFrame({"sentence": [f"sentence {i}" for i in range(90)],
                          "label": ["a", "b"] * 40 + [f"rare{i}" for i in range(10)]})
    frame.to_csv(path, index=False)
    cfg = DataConfig(train=str(path), text_columns="sentence", validation_fraction=0.2)
    for seed in range(5):
        raw = load(cfg, CLS, seed=seed)
        assert set(raw.frames["validation"].label) <= set(raw.frames["train"].label) == set(frame.label)
        assert raw.sizes["train"] + raw.sizes["validation"] == 90 and raw.sizes["validation"] >= 14
    lone = tmp_path / "lone.csv"
    pd.DataFrame({"sentence": ["x", "y"], "label": ["a", "b"]}).to_csv(lone, index=False)
    with pytest.raises(DataError, match=r"^data\.label_column: no row carved out of train for validation has a class "
                                        r"with another example left in train; give data\.validation, or more than "
                                        r"one example per class$"):
        load(DataConfig(train=str(lone), text_columns="sentence"), CLS, seed=0)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"data\.train: no such file"):
        load(DataConfig(train=str(tmp_path / "nope.csv"), text_columns=["sentence"]), CLS, seed=0)


def test_a_folder_given_as_the_data_is_named_as_one(tmp_path):
    with pytest.raises(DataError, match=r"^data\.train: '.*' is a folder; expected one data file \(\.csv"):
        load(DataConfig(train=str(tmp_path), text_columns=["sentence"]), CLS, seed=0)


def test_text_column_not_in_data(tmp_path):
    path = tmp_path / "train.csv"
    FRAME.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"data\.text_columns: column 'text' is not in the train data \(columns: sentence, label\)"):
        load(DataConfig(train=str(path), text_columns=["text"]), CLS, seed=0)


def test_label_column_not_in_data(tmp_path):
    path = tmp_path / "train.csv"
    FRAME.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"data\.label_column: column 'target' is not in the train data"):
        load(DataConfig(train=str(path), text_columns=["sentence"], label_column="target"), CLS, seed=0)


def test_test_label_unknown_to_train(tmp_path):
    FRAME.to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"sentence": ["x"], "label": ["meh"]}).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError, match=r"test has label 'meh' that train does not have"):
        load(DataConfig(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), text_columns=["sentence"]), CLS, seed=0)


def test_class_ids_written_as_floats_are_the_classes_written_as_ints(tmp_path):
    """pandas writes a column of class ids as 1.0 once it held a missing value or came from a
    computation; the test file beside it says 1. The study failed on "test has label '0' that
    train does not have (train labels: 0.0, 1.0)", and the classes were named 0.0 and 1.0."""
    frame = FRAME.assign(label=[1.0, 0.0] * 20)
    frame.to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"sentence": ["x", "y"], "label": [0, 1]}).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    raw = load(DataConfig(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.jsonl"),
                          text_columns=["sentence"]), CLS, seed=0)
    assert raw.label_names == ["0", "1"] and set(raw.frames["train"]["label"]) == {0, 1}
    # classes that are fractions stay as written
    FRAME.assign(label=[0.5, 1.5] * 20).to_csv(tmp_path / "halves.csv", index=False)
    assert load(DataConfig(train=str(tmp_path / "halves.csv"), text_columns=["sentence"]), CLS,
                seed=0).label_names == ["0.5", "1.5"]


def test_a_class_spelled_two_ways_is_one_class_or_one_line(tmp_path):
    """A hand-labelled sheet: 'positive ' (a space no one sees) was a class beside 'positive', and
    the study asked the model to tell them apart. Spaces go; classes that differ only in case
    ('Positive') are the data's to settle, in one line before anything runs."""
    spaced = FRAME.assign(label=[" pos", "neg ", "pos", "neg"] * 10)
    spaced.to_csv(tmp_path / "train.csv", index=False)
    raw = load(DataConfig(train=str(tmp_path / "train.csv"), text_columns=["sentence"]), CLS, seed=0)
    assert raw.label_names == ["neg", "pos"]
    FRAME.assign(label=["pos", "neg", "Pos", "neg"] * 10).to_csv(tmp_path / "cased.csv", index=False)
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(tmp_path / "cased.csv"), text_columns=["sentence"]), CLS, seed=0)
    assert str(excinfo.value) == ("data.label_column: train has classes 'Pos' and 'pos', which differ only in case; "
                                  "spell each one way in the data")
    # word tags alike: spaces go, the words keep theirs
    ner = pd.DataFrame({"tokens": [["EU ", "rejects"], ["Peter", "Blackburn"]] * 10,
                        "tags": [["B-ORG ", "O"], ["B-PER", " I-PER"]] * 10})
    ner.to_json(tmp_path / "ner.jsonl", orient="records", lines=True)
    raw = load(DataConfig(train=str(tmp_path / "ner.jsonl")), get_task("token_classification"), seed=0)
    assert raw.label_names == ["B-ORG", "B-PER", "I-PER", "O"] and ["EU ", "rejects"] in raw.frames["train"]["tokens"].tolist()


def test_a_column_read_twice_is_one_line(tmp_path):
    """The label as its own input (a model that reads its answer) or a pair of one text: each
    loaded as if fine, the first with an error listing every text as a train label."""
    FRAME.to_csv(tmp_path / "train.csv", index=False)
    train = str(tmp_path / "train.csv")
    with pytest.raises(DataError, match=r"^data\.label_column: column 'sentence' is also named by data\.text_columns; "
                                        r"each column the task reads must be another$"):
        load(DataConfig(train=train, text_columns=["sentence"], label_column="sentence"), CLS, seed=0)
    with pytest.raises(DataError, match=r"^data\.text_columns: column 'sentence' is named twice"):
        load(DataConfig(train=train, text_columns=["sentence", "sentence"]), CLS, seed=0)


def test_an_unknown_test_label_lists_ten_train_labels_at_most(tmp_path):
    pd.DataFrame({"sentence": [f"text {i}" for i in range(60)], "label": [f"c{i:02d}" for i in range(30)] * 2}).to_csv(
        tmp_path / "train.csv", index=False)
    pd.DataFrame({"sentence": ["x"], "label": ["meh"]}).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError, match=r"test has label 'meh' that train does not have \(train labels: c00, c01, "
                                        r"c02, c03, c04, c05, c06, c07, c08, c09, \.\.\. \(30 in all\)\)$"):
        load(DataConfig(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), text_columns=["sentence"]),
             CLS, seed=0)


def test_a_text_column_of_records_or_lists_is_one_line(tmp_path):
    """A parquet struct (or a list) named as text was read as its Python repr: "{'a': 1}"."""
    frame = FRAME.assign(meta=[{"source": "web", "n": i} for i in range(40)], words=[["a", "b"]] * 40)
    frame.to_parquet(tmp_path / "train.parquet")
    for column, found in (("meta", "dict"), ("words", "ndarray")):
        with pytest.raises(DataError, match=rf"^data\.text_columns: expected text in '{column}' \(train row 0\), "
                                            rf"found {found}$"):
            load(DataConfig(train=str(tmp_path / "train.parquet"), text_columns=[column]), CLS, seed=0)


def test_empty_text(tmp_path):
    frame = FRAME.copy()
    frame.loc[3, "sentence"] = "  "
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match=r"'sentence' is empty in train row 3"):
        load(DataConfig(train=str(tmp_path / "train.csv"), text_columns=["sentence"]), CLS, seed=0)


def test_tokenize_once_and_reuse_the_cache(tmp_path, minilm_path):
    from transformers import AutoTokenizer

    FRAME.to_csv(tmp_path / "train.csv", index=False)
    raw = load(DataConfig(train=str(tmp_path / "train.csv"), text_columns=["sentence"]), CLS, seed=0)
    tok = AutoTokenizer.from_pretrained(minilm_path)
    first = tokenize(raw, tok, 16, tokenizer_id="m", cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1
    assert cached[0].name == f"tokenized-{first.fingerprint}.pkl"  # the key caches of earlier releases have
    assert first.target_scale is None  # classes are not standardised
    second = tokenize(raw, tok, 16, tokenizer_id="m", cache_dir=tmp_path / "cache")
    assert second.fingerprint == first.fingerprint
    assert second.splits["train"].input_ids == first.splits["train"].input_ids
    other = tokenize(raw, tok, 8, tokenizer_id="m", cache_dir=tmp_path / "cache")
    assert other.fingerprint != first.fingerprint  # max_length changes tokens, so the key
    batch = collate(first.splits["train"], [0, 1, 2], first.pad_token_id)
    assert batch["input_ids"].shape[0] == 3 and batch["attention_mask"].sum() == sum(
        len(first.splits["train"].input_ids[i]) for i in range(3))


def test_a_cap_on_train_keeps_one_row_of_every_class(tmp_path):
    """data.max_train_examples drew 8 of 200 rows, 10 of them 'rare': the sample often had none, and
    the study failed on 'validation has label 'rare' that train does not have'."""
    frame = pd.DataFrame({"sentence": [f"sentence {i}" for i in range(200)], "label": ["common"] * 190 + ["rare"] * 10})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.tail(20).to_csv(tmp_path / "validation.csv", index=False)
    capped = DataConfig(train=str(tmp_path / "train.csv"), validation=str(tmp_path / "validation.csv"),
                        text_columns="sentence", max_train_examples=8)
    plain = capped.model_copy(update={"max_train_examples": None})
    for seed in range(6):
        train = load(capped, CLS, seed=seed).frames["train"]
        assert len(train) == 8 and set(train.label) == {"common", "rare"}
        assert set(train.sentence) <= set(frame.sentence)
        drawn = load(plain, CLS, seed=seed).frames["train"].sample(n=8, random_state=seed)
        if "rare" in set(drawn.label):  # a sample that had every class is the one it always was
            assert sorted(train.sentence) == sorted(drawn.sentence)


def test_a_cap_on_train_keeps_a_sentence_of_every_token_tag(tmp_path):
    """The same for token tags: 8 of 200 sentences drawn, 'B-MISC' in 4 of them, and validation has it."""
    tokens = [["Ann", "met", "Bob", str(i)] for i in range(200)]
    tags = [["B-PER", "O", "B-PER", "B-MISC" if i % 50 == 7 else "O"] for i in range(200)]
    frame = pd.DataFrame({"tokens": [json.dumps(t) for t in tokens], "tags": [json.dumps(t) for t in tags]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[[7, 57, 0]].to_csv(tmp_path / "validation.csv", index=False)
    capped = DataConfig(train=str(tmp_path / "train.csv"), validation=str(tmp_path / "validation.csv"),
                        max_train_examples=8)
    plain = capped.model_copy(update={"max_train_examples": None})
    token_task = get_task("token_classification")
    for seed in range(6):
        raw = load(capped, token_task, seed=seed)
        train = raw.frames["train"]
        assert len(train) == 8 and "B-MISC" in raw.label_names
        assert {tag for row in train.tags for tag in row} == {"B-PER", "O", "B-MISC"}
        drawn = load(plain, token_task, seed=seed).frames["train"].sample(n=8, random_state=seed)
        if any("B-MISC" in row for row in drawn.tags):  # a sample that had every tag is the one it always was
            assert sorted(map(str, train.tokens)) == sorted(map(str, drawn.tokens))


def test_max_validation_examples_cuts_validation_not_test(tmp_path):
    frame = pd.DataFrame({"sentence": [f"s{i}" for i in range(300)], "label": [i % 2 for i in range(300)]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.head(120).to_csv(tmp_path / "test.csv", index=False)
    cfg = DataConfig(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), text_columns=["sentence"],
                     validation_fraction=0.5, max_validation_examples=40)
    raw = load(cfg, get_task("sequence_classification"), seed=0)
    assert raw.sizes == {"train": 150, "validation": 40, "test": 120}


@pytest.mark.parametrize(("bad", "shown"), [("inf", "inf"), ("-inf", "-inf"), ("high", "'high'")])
def test_a_regression_target_that_is_not_a_finite_number_is_one_line_with_its_row(tmp_path, bad, shown):
    """'inf' parses as a number: it reached training, whose first loss was inf."""
    path = tmp_path / "train.csv"
    scores = [str(i / 10) for i in range(40)]
    scores[7] = bad
    pd.DataFrame({"sentence": FRAME.sentence, "score": scores}).to_csv(path, index=False)
    cfg = DataConfig(train=str(path), text_columns=["sentence"], label_column="score")
    with pytest.raises(DataError, match=rf"^data\.label_column: regression needs finite numbers in 'score', found "
                                        rf"{shown} in train row 7 \(1 in all\)$"):
        load(cfg, get_task("regression"), seed=0)


def test_a_token_tag_the_carve_would_take_whole_stays_in_train(tmp_path):
    """Token tags, as classes: a sentence whose tag nothing else has went to the carved validation
    split, and the study failed on 'validation has label 'B-RARE' that train does not have'."""
    tokens = [["the", "cat", "sat"]] * 40 + [["a", "zebra", "ran"]]
    tags = [["O", "B-ANI", "O"]] * 40 + [["O", "B-RARE", "O"]]
    path = tmp_path / "train.jsonl"
    pd.DataFrame({"tokens": tokens, "tags": tags}).to_json(path, orient="records", lines=True)
    for seed in range(8):
        raw = load(DataConfig(train=str(path), validation_fraction=0.2), get_task("token_classification"), seed=seed)
        assert ["O", "B-RARE", "O"] in raw.frames["train"].tags.tolist()
        assert raw.sizes["train"] + raw.sizes["validation"] == 41 and raw.sizes["validation"] >= 7


def test_a_label_column_of_lists_is_one_line(tmp_path):
    """Multi-label rows (['sports', 'politics']): each combination became a class named by its
    Python repr, and the study trained on that without a word."""
    path = tmp_path / "train.jsonl"
    pd.DataFrame({"sentence": [f"news story {i}" for i in range(12)],
                  "label": [["sports"], ["politics", "sports"], ["arts"]] * 4}).to_json(path, orient="records", lines=True)
    with pytest.raises(DataError, match=r"^data\.label_column: expected one label per example in 'label', found list "
                                        r"in train row 0 \(multi-label classification is not a task autopeft runs\)$"):
        load(DataConfig(train=str(path), text_columns=["sentence"]), CLS, seed=0)


# --------------------------------------------------------------------------- a column of splits


def one_file_of_splits(tmp_path, said=("train", "dev", "test")):
    """One file that holds every split, as many datasets ship: a column says which row is which."""
    path = tmp_path / "all.csv"
    pd.DataFrame({"sentence": [f"text number {i}" for i in range(30)], "label": ["pos", "neg"] * 15,
                  "split": [said[0]] * 20 + [said[1]] * 5 + [said[2]] * 5}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("said", [("train", "dev", "test"), ("Train", " validation ", "TEST"), ("training", "val", "tst")])
def test_a_split_column_makes_the_splits(tmp_path, said):
    path = one_file_of_splits(tmp_path, said)
    raw = load(DataConfig(train=str(path), split_column="split", text_columns="sentence"), CLS, seed=0)
    assert raw.sizes == {"train": 20, "validation": 5, "test": 5}
    assert list(raw.frames["test"].sentence) == [f"text number {i}" for i in range(25, 30)]
    assert "split" not in raw.frames["train"].columns
    assert raw.source["test"] == f"{path}, the rows whose 'split' says test"


def test_a_split_column_without_validation_rows_carves_them_from_train(tmp_path):
    path = one_file_of_splits(tmp_path, ("train", "train", "test"))
    raw = load(DataConfig(train=str(path), split_column="split", text_columns="sentence"), CLS, seed=0)
    assert raw.sizes == {"train": 23, "validation": 2, "test": 5}  # 10% of the 25 train rows


@pytest.mark.parametrize(("said", "column", "error"), [
    (("train", "holdout", "test"), "split",
     r"^data\.split_column: train row 20 has 'holdout' in column 'split' \(5 such rows\); expected a split's name "
     r"\(train: train, training, trn; validation: validation, valid, val, dev, development, eval, evaluation; "
     r"test: test, testing, tst\)$"),
    (("dev", "dev", "test"), "split", r"^data\.split_column: no row of column 'split' says train \(found: dev, test\)$"),
    (("train", "dev", "test"), "Split", r"^data\.split_column: column 'Split' is not in the train data \(columns: "
                                        r"sentence, label, split\); did you mean 'split'\?$"),
])
def test_a_split_column_that_does_not_split_is_one_line(tmp_path, said, column, error):
    path = one_file_of_splits(tmp_path, said)
    with pytest.raises(DataError, match=error):
        load(DataConfig(train=str(path), split_column=column, text_columns="sentence"), CLS, seed=0)
