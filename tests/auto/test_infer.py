"""Zero-config inference on files exactly as people have them: each kind's printed choices.

Real files in the test's folder (or the GLUE TSVs as they are), the packaged MiniLM or the tiny
task models, real tokenizers; nothing is mocked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from autopeft.auto.infer import Request, infer, names_for
from autopeft.cli.app import app
from autopeft.config import resolve_mapping
from autopeft.data import load
from autopeft.errors import DataError
from autopeft.tasks import get_task
from tests.tiny_tasks import ner_frame, sft_frame, write_conll, write_images, write_jsonl


def chosen(inference) -> dict[str, object]:
    return {c.field: c.value for c in inference.choices}


def reasons(inference) -> dict[str, str]:
    return {c.field: c.reason for c in inference.choices}


def test_sst2_tsv_as_it_is(glue_dir: Path, minilm_path: str, tmp_path: Path) -> None:
    train = tmp_path / "sst2" / "train.tsv"
    train.parent.mkdir()
    # the GLUE file as it is, cut to its first 600 lines so the test stays quick
    train.write_text("".join((glue_dir / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines(True)[:600]))
    inference = infer(Request(model="minilm", train=str(train)))
    got = chosen(inference)
    assert got["task.kind"] == "sequence_classification"
    assert got["data.text_columns"] == ["sentence"]
    assert got["data.label_column"] == "label"
    assert got["objective.metric"] == "accuracy"
    assert got["space"] == "lora-family"
    assert got["tracking.experiment"] == "autopeft-sst2"  # named after the folder, not 'train'
    assert 16 <= got["model.max_length"] <= 128 and got["model.max_length"] % 8 == 0  # type: ignore[operator]
    assert "95th percentile" in reasons(inference)["model.max_length"]
    # the choices make a config that validates as a file would
    resolved = resolve_mapping(inference.raw_config())
    assert resolved.config.task.kind == "sequence_classification"
    assert resolved.config.budget.time == "15m"


def test_rte_pairs_skip_the_index(glue_dir: Path, minilm_path: str) -> None:
    inference = infer(Request(model="minilm", train=str(glue_dir / "rte" / "train.tsv"), time="45m"))
    got = chosen(inference)
    assert got["data.text_columns"] == ["sentence1", "sentence2"]  # 'index' is a row id, not an input
    assert got["data.label_column"] == "label"
    assert got["task.kind"] == "sequence_classification"
    assert got["budget.time"] == "45m"
    assert got["model.max_length"] > 64  # type: ignore[operator]  # pairs are longer than single sentences


def test_headerless_file(minilm_path: str, tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    rows = [(f"the film number {i} was {'great' if i % 2 else 'dull'}", i % 2) for i in range(60)]
    path.write_text("".join(f'"{text}",{label}\n' for text, label in rows))
    inference = infer(Request(model="minilm", train=str(path)))
    got = chosen(inference)
    assert got["data.header"] is False
    assert got["data.text_columns"] == ["0"] and got["data.label_column"] == "1"  # named by position
    assert reasons(inference)["data.label_column"].startswith("the only column that can be a label")
    assert got["task.kind"] == "sequence_classification"


def test_byte_order_mark(minilm_path: str, tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    frame = pd.DataFrame({"review": [f"a review with words {i} and more" for i in range(40)],
                          "label": ["pos", "neg"] * 20})
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).encode("utf-8"))
    got = chosen(infer(Request(model="minilm", train=str(path))))
    assert got["data.text_columns"] == ["review"] and got["data.label_column"] == "label"


def test_regression(minilm_path: str, tmp_path: Path) -> None:
    path = tmp_path / "similarity.csv"
    pd.DataFrame({"sentence1": [f"first sentence {i} here" for i in range(80)],
                  "sentence2": [f"second sentence {i * 7} there" for i in range(80)],
                  "score": [round(i * 5 / 79, 3) for i in range(80)]}).to_csv(path, index=False)
    inference = infer(Request(model="minilm", train=str(path)))
    got = chosen(inference)
    assert got["task.kind"] == "regression"
    assert "80 distinct values" in reasons(inference)["task.kind"]
    assert got["data.label_column"] == "score" and got["data.text_columns"] == ["sentence1", "sentence2"]
    assert got["objective.metric"] == "pearson"


def test_imbalanced_classes_choose_mcc(minilm_path: str, tmp_path: Path) -> None:
    path = tmp_path / "acceptability.csv"
    pd.DataFrame({"sentence": [f"sentence number {i} is here" for i in range(100)],
                  "label": [1] * 75 + [0] * 25}).to_csv(path, index=False)
    inference = infer(Request(model="minilm", train=str(path)))
    assert chosen(inference)["objective.metric"] == "mcc"
    assert "imbalanced classes (75% of train is '1')" in reasons(inference)["objective.metric"]


def many_classes(rows: int = 1500, classes: int = 77) -> tuple[list[str], list[int]]:
    """Texts of ``classes`` intents (Banking77's shape), each intent ``rows // classes`` times."""
    return [f"how do I change my setting number {i % classes}, asks customer {i}" for i in range(rows)], \
        [i % classes for i in range(rows)]


@pytest.mark.parametrize("name", ["label", "intent", "Category"])
def test_dozens_of_classes_saved_as_ids_are_classes(tmp_path: Path, name: str) -> None:
    """77 intents saved as ids 0..76 (a Hub ClassLabel) were a regression on the ids."""
    texts, ids = many_classes()
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": texts, name: ids}).to_csv(path, index=False)
    inference = infer(Request(model="minilm", train=str(path)))
    assert chosen(inference)["task.kind"] == "sequence_classification"
    assert reasons(inference)["task.kind"] == f"label {name!r} holds the ids 0..76, each present: 77 classes"
    # ids with one missing, or numbers under a target's name, are still a regression's values
    for column, values in (("label", [i + 1 for i in ids]), ("score", ids)):
        pd.DataFrame({"text": texts, column: values}).to_csv(path, index=False)
        assert chosen(infer(Request(model="minilm", train=str(path))))["task.kind"] == "regression"


@pytest.mark.parametrize("name", ["intent_name", "category", "topic"])
def test_dozens_of_classes_by_name_are_the_label(tmp_path: Path, name: str) -> None:
    """77 intent names among 1,500 rows: over the 50 values a label had at most, so no column could
    be the label."""
    texts, ids = many_classes()
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": texts, name: [f"intent_{i}" for i in ids]}).to_csv(path, index=False)
    got = chosen(infer(Request(model="minilm", train=str(path))))
    assert (got["task.kind"], got["data.label_column"], got["data.text_columns"]) == \
        ("sequence_classification", name, ["text"])
    # a column of long texts that repeat as often is still a text, not a label
    pd.DataFrame({"text": texts, "remark": [f"a longer note on case {i} of the customer's" for i in ids]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"^--label: cannot tell which column is the label"):
        infer(Request(model="minilm", train=str(path)))


def test_ids_names_dates_and_urls_beside_the_text_are_not_read(tmp_path: Path) -> None:
    """A review file as exported (a review id, the user, the date, a link): each of those columns
    has distinct values, and the model was given 'review_id' and 'text' as a sentence pair."""
    n = 120
    reviews = [f"the film was {['good', 'bad', 'fine'][i % 3]} and I would see it again, says reviewer {i}"
               for i in range(n)]
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review_id": [f"{i:08x}-9c1e-4b7a-8f2d-{i * 7919:012x}" for i in range(n)],
                  "user": [f"user{i * 37 % 1000}" for i in range(n)],
                  "date": [f"2021-03-{i % 28 + 1:02d} 10:{i % 60:02d}:00 -0800" for i in range(n)],  # 3 words, digits
                  "link": [f"https://example.com/review/{i}" for i in range(n)], "text": reviews,
                  "label": [i % 2 for i in range(n)]}).to_csv(path, index=False)
    inference = infer(Request(model="minilm", train=str(path)))
    assert chosen(inference)["data.text_columns"] == ["text"]
    assert reasons(inference)["data.text_columns"] == ("the only column of sentences ('review_id', 'user', 'date', "
                                                       "'link': fewer than 3 words a row on average, or mostly digits)")
    # with a title of sentences too, the two are the pair
    pd.read_csv(path).assign(title=[f"my view of film number {i}" for i in range(n)]).to_csv(path, index=False)
    assert chosen(infer(Request(model="minilm", train=str(path))))["data.text_columns"] == ["text", "title"]
    # sentences in a script written without spaces are sentences too, beside an English title
    pd.DataFrame({"title": [f"my view of film number {i}" for i in range(n)], "user": [f"user{i}" for i in range(n)],
                  "text": [f"这部电影非常好看我很喜欢第{i}次" for i in range(n)], "label": [i % 2 for i in range(n)]}
                 ).to_csv(path, index=False)
    assert chosen(infer(Request(model="minilm", train=str(path))))["data.text_columns"] == ["title", "text"]
    # and where no column holds sentences, the short distinct values are the text (a query, a name)
    pd.DataFrame({"query": [f"weather{i}" for i in range(n)], "label": [i % 2 for i in range(n)]}).to_csv(path, index=False)
    assert chosen(infer(Request(model="minilm", train=str(path))))["data.text_columns"] == ["query"]


@pytest.mark.parametrize(("label", "reason"), [
    ("sentiment", "its conventional name"),
    ("airline_sentiment", "the only column whose name ends in 'sentiment'"),
    ("gold_label", "the only column whose name ends in 'label'"),
])
def test_a_label_named_for_what_it_holds_beside_other_columns_of_classes(tmp_path: Path, label: str,
                                                                        reason: str) -> None:
    """A tweet file with its metadata (the airline, retweets, a constant language): every column of
    few values was a label candidate, and zero-config asked which."""
    n = 200
    path = tmp_path / "tweets.csv"
    pd.DataFrame({label: [["negative", "neutral", "positive"][i % 3] for i in range(n)],
                  "airline": [["Virgin", "United", "Delta"][i % 3] for i in range(n)], "lang": ["en"] * n,
                  "retweets": [i % 4 for i in range(n)],
                  "text": [f"my flight with you was {['late', 'fine', 'great'][i % 3]} again, trip {i}" for i in range(n)]}
                 ).to_csv(path, index=False)
    inference = infer(Request(model="minilm", train=str(path)))
    assert (chosen(inference)["data.label_column"], reasons(inference)["data.label_column"]) == (label, reason)


def test_token_classification_jsonl(task_models: dict[str, str], tmp_path: Path) -> None:
    path = write_jsonl(ner_frame(30), tmp_path / "ner.jsonl")
    got = chosen(infer(Request(model=task_models["token_classification"], train=str(path))))
    assert got["task.kind"] == "token_classification"
    assert got["data.tokens_column"] == "tokens" and got["data.tags_column"] == "tags"
    assert got["objective.metric"] == "f1"


def test_token_classification_conll(task_models: dict[str, str], tmp_path: Path) -> None:
    path = write_conll(ner_frame(30), tmp_path / "ner.txt")
    got = chosen(infer(Request(model=task_models["token_classification"], train=str(path))))
    assert got["task.kind"] == "token_classification" and "data.header" not in got
    assert got["data.tokens_column"] == "tokens" and got["data.tags_column"] == "tags"


def test_token_classification_csv_of_list_columns_as_pandas_writes_them(task_models: dict[str, str],
                                                                        tmp_path: Path) -> None:
    """``DataFrame.to_csv`` writes a list column as Python's repr (``['the', 'cat']``), not JSON: the
    lists read as text, and zero-config asked which of the two 'texts' was the label."""
    path = tmp_path / "ner.csv"
    ner_frame(30).rename(columns={"tags": "ner_tags"}).to_csv(path, index=False)
    assert "['the', " in path.read_text()
    inference = infer(Request(model=task_models["token_classification"], train=str(path)))
    got = chosen(inference)
    assert (got["task.kind"], got["data.tokens_column"], got["data.tags_column"]) == \
        ("token_classification", "tokens", "ner_tags")
    config = resolve_mapping(inference.raw_config()).config
    raw = load(config.data, get_task(config.task.kind), seed=0)
    assert raw.label_names == ["ANI", "COL", "O"] and raw.frames["train"]["tokens"][0][0] == "the"


def test_prompt_response_jsonl(task_models: dict[str, str], tmp_path: Path) -> None:
    frame = sft_frame(30).rename(columns={"prompt": "instruction", "response": "output"})
    path = write_jsonl(frame, tmp_path / "sft.jsonl")
    inference = infer(Request(model=task_models["causal_lm"], train=str(path)))
    got = chosen(inference)
    assert got["task.kind"] == "causal_lm"
    assert (got["data.prompt_column"], got["data.response_column"]) == ("instruction", "output")
    assert "the model is a causal LM" in reasons(inference)["task.kind"]
    assert got["space"] == "llm-sft" and got["objective.metric"] == "loss"


@pytest.mark.parametrize(("columns", "kind", "texts", "label"), [
    # a label beside the pair: the label judges the answer (it was causal_lm, the label dropped)
    ({"question": "q", "answer": "a", "label": "01"}, "sequence_classification", ["question", "answer"], "label"),
    # a 'target' of numbers is a regression's target, not a response to write
    ({"source": "q", "target": "number"}, "regression", ["source"], "target"),
    # an 'output' of yes/no is a classification's label
    ({"input": "q", "output": "yesno"}, "sequence_classification", ["input"], "output"),
])
def test_a_prompt_response_naming_that_holds_a_label_is_not_causal_lm(tmp_path: Path, columns, kind, texts,
                                                                      label) -> None:
    values = {"q": [f"what did reviewer {i} think of the film" for i in range(60)],
              "a": [f"they thought it was {['fine', 'dull', 'great'][i % 3]} overall, {i}" for i in range(60)],
              "01": [i % 2 for i in range(60)], "number": [round(i * 0.37 % 5, 2) for i in range(60)],
              "yesno": [["yes", "no"][i % 2] for i in range(60)]}
    path = tmp_path / "train.csv"
    pd.DataFrame({name: values[source] for name, source in columns.items()}).to_csv(path, index=False)
    got = chosen(infer(Request(model="minilm", train=str(path))))
    assert (got["task.kind"], got["data.text_columns"], got["data.label_column"]) == (kind, texts, label)


def test_image_folder_csv(task_models: dict[str, str], tmp_path: Path) -> None:
    write_images(tmp_path, 20).to_csv(tmp_path / "images.csv", index=False)
    got = chosen(infer(Request(model=task_models["image_classification"], train=str(tmp_path / "images.csv"))))
    assert got["task.kind"] == "image_classification"
    assert got["data.image_column"] == "image" and got["data.label_column"] == "label"
    assert "model.max_length" not in got  # images have no tokens


def test_text_file_with_tab_labels(minilm_path: str, tmp_path: Path) -> None:
    path = tmp_path / "reviews.txt"
    path.write_text("".join(f"a line of text number {i}\t{'yes' if i % 3 else 'no'}\n" for i in range(45)))
    got = chosen(infer(Request(model="minilm", train=str(path))))
    assert got["data.text_columns"] == ["text"] and got["data.label_column"] == "label"


def test_ambiguous_label_lists_candidates(minilm_path: str, tmp_path: Path) -> None:
    path = tmp_path / "two.csv"
    pd.DataFrame({"sentence": [f"words in sentence {i}" for i in range(60)], "topic": ["a", "b", "c"] * 20,
                  "mood": ["pos", "neg"] * 30}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"^--label: cannot tell which column is the label \(candidates: topic, "
                                        r"mood\); name it with --label COLUMN$"):
        infer(Request(model="minilm", train=str(path)))
    got = chosen(infer(Request(model="minilm", train=str(path), label="Mood ")))  # case and spacing
    assert got["data.label_column"] == "mood"
    with pytest.raises(DataError, match=r"did you mean 'mood'\?$"):
        infer(Request(model="minilm", train=str(path), label="modo"))


def test_a_column_of_label_lists_is_named_as_what_autopeft_does_not_run(tmp_path: Path) -> None:
    path = write_jsonl(pd.DataFrame({"text": [f"a news story about item {i}" for i in range(40)],
                                     "topics": [["sports", "arts"][: 1 + i % 2] for i in range(40)]}), tmp_path / "m.jsonl")
    with pytest.raises(DataError, match=r"^--label: cannot tell which column is the label \(candidates: text, topics\); "
                                        r"name it with --label COLUMN; 'topics' holds lists, and multi-label "
                                        r"classification is not a task autopeft runs$"):
        infer(Request(model="minilm", train=str(path)))


def test_a_headerless_file_of_codes_and_class_ids(tmp_path: Path) -> None:
    """CoLA's tsv as GLUE ships it: no header; a source code, the label 0/1, the original '*' mark,
    the sentence. Both the codes and the ids could be a label, and zero-config asked which."""
    path = tmp_path / "in_domain_train.tsv"
    path.write_text("".join(f"{['gj04', 'bc01', 'ks08', 'r-67'][i % 4]}\t{int(i % 3 != 0)}\t{'*' if i % 3 == 0 else ''}\t"
                            f"The {i}th sentence {'is' if i % 3 else 'are'} here.\n" for i in range(90)))
    inference = infer(Request(model="minilm", train=str(path)))
    got = chosen(inference)
    assert (got["data.header"], got["data.label_column"], got["data.text_columns"]) == (False, "1", ["3"])
    assert reasons(inference)["data.label_column"] == "no column is named (no header): the only column of class ids 0..K-1"
    # with names, a name decides, as before
    named = tmp_path / "named.tsv"
    named.write_text("source\tgrade\tsentence\n" + "".join(
        f"{['gj04', 'bc01'][i % 2]}\t{i % 3}\tThe {i}th sentence is here.\n" for i in range(90)))
    with pytest.raises(DataError, match=r"^--label: cannot tell which column is the label \(candidates: source, grade\)"):
        infer(Request(model="minilm", train=str(named)))


def test_a_label_of_one_class_says_so(tmp_path: Path) -> None:
    """An export filtered to one class: the label column was no candidate, and the error offered
    the text as one ('candidates: text')."""
    path = tmp_path / "positives.csv"
    pd.DataFrame({"text": [f"a fine film, number {i}" for i in range(60)], "label": ["pos"] * 60}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"^--label: column 'label' holds one value in every row; a label needs two "
                                        r"classes or more \(check the file, or name another column with --label COLUMN\)$"):
        infer(Request(model="minilm", train=str(path)))


def test_measuring_long_texts_warns_of_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """max_length is measured on untruncated texts: transformers warned the user of 'indexing
    errors' for a text past the model's limit, which the study's truncation never meets."""
    path = tmp_path / "long.csv"
    pd.DataFrame({"text": [("a long review " * 300) + str(i) for i in range(40)], "label": ["pos", "neg"] * 20}
                 ).to_csv(path, index=False)
    got = chosen(infer(Request(model="minilm", train=str(path))))
    assert got["model.max_length"] == 512  # the model's limit
    assert "indexing errors" not in capfd.readouterr().err


def split_file(tmp_path: Path, name: str = "split", said: tuple[str, ...] = ("train", "dev", "test")) -> Path:
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": [f"a review of film {i}, {['fine', 'poor'][i % 2]}" for i in range(80)],
                  "label": ["pos", "neg"] * 40, name: [said[0]] * 60 + [said[1]] * 10 + [said[2]] * 10}
                 ).to_csv(path, index=False)
    return path


def test_a_column_of_splits_makes_the_splits(tmp_path: Path) -> None:
    """One file that holds every split (as Hub exports and Kaggle files do): its 'split' column was
    a second label candidate, or ignored, and the test rows were trained on."""
    inference = infer(Request(model="minilm", train=str(split_file(tmp_path))))
    got = chosen(inference)
    assert got["data.split_column"] == "split" and got["data.label_column"] == "label"
    assert got["data.text_columns"] == ["text"]
    assert reasons(inference)["data.split_column"] == "its values put each row in a split: 60 train, 10 validation, 10 test"
    assert "data.validation_fraction" not in got  # validation rows are given
    resolved = resolve_mapping(inference.raw_config())
    raw = load(resolved.config.data, get_task("sequence_classification"), seed=0)
    assert raw.sizes == {"train": 60, "validation": 10, "test": 10}
    # without validation rows, validation is carved from train as for any file
    got = chosen(infer(Request(model="minilm", train=str(split_file(tmp_path, said=("train", "train", "test"))))))
    assert got["data.split_column"] == "split" and got["data.validation_fraction"] == 0.1


def test_a_column_of_other_values_is_no_split_column(tmp_path: Path) -> None:
    # 'set' names a split column only where its values name splits
    got = chosen(infer(Request(model="minilm", train=str(split_file(tmp_path, "set", ("a", "b", "c"))), label="label")))
    assert "data.split_column" not in got


def test_a_split_column_beside_a_test_file_is_one_line(tmp_path: Path) -> None:
    path = split_file(tmp_path)
    with pytest.raises(DataError, match=r"^--train: column 'split' already puts each row in train, validation or "
                                        r"test; give --test or that column, not both$"):
        infer(Request(model="minilm", train=str(path), test=str(path)))


def test_cli_prints_every_choice_and_writes_nothing_on_bad_input(minilm_path: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "data" / "two.csv"
    path.parent.mkdir()
    pd.DataFrame({"sentence": [f"words in sentence {i}" for i in range(60)], "topic": ["a", "b", "c"] * 20,
                  "mood": ["pos", "neg"] * 30}).to_csv(path, index=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["search", "--model", "minilm", "--train", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --label: cannot tell which column is the label (candidates: topic, mood); name it with "
        "--label COLUMN"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing written
    result = CliRunner().invoke(app, ["search", "--model", "minilm", "--train", str(path), "--time", "soon"])
    assert result.exit_code == 2
    assert "--time: expected a duration such as 45m, 1h30m, 90s" in result.stderr


def test_init_writes_the_commented_config_it_would_run(minilm_path: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --time-planned fields left open, init needs no probe: with every budget field given
    it writes the inferred config as is, each inferred line commented."""
    shutil.copy(Path(__file__).resolve().parents[2] / "autopeft" / "demo" / "reviews-train.csv", tmp_path / "r.csv")
    monkeypatch.chdir(tmp_path)
    budget = ["--set", "budget.trials=3", "--set", "budget.max_steps=20", "--set", "budget.eval_interval=10",
              "--set", "budget.final_steps=null", "--set", "budget.time_limit_s=60"]
    result = CliRunner().invoke(app, ["init", "--model", "minilm", "--train", "r.csv", "-o", "s.yaml", *budget])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "s.yaml").read_text()
    assert "  label_column: label  # its conventional name\n" in text
    assert "kind: sequence_classification  # label 'label' holds 2 distinct values (classes)" in text
    written = resolve_mapping(json.loads(json.dumps(__import__("yaml").safe_load(text))))
    assert written.config.budget.trials == 3 and written.config.data.label_column == "label"
    again = CliRunner().invoke(app, ["init", "--model", "minilm", "--train", "r.csv", "-o", "s.yaml"])
    assert again.exit_code == 2 and "--output: 's.yaml' exists" in again.stderr


def test_hub_dataset(minilm_path: str, tmp_path: Path) -> None:
    """`--train hub:NAME` goes through `datasets.load_dataset`, as for a Hub id; a local dataset
    folder stands in for the Hub, which tests cannot reach."""
    folder = tmp_path / "reviews-dataset"
    folder.mkdir()
    for split, n in (("train", 60), ("test", 20)):
        pd.DataFrame({"text": [f"{split} review {i} with words" for i in range(n)],
                      "label": ["good", "bad"] * (n // 2)}).to_csv(folder / f"{split}.csv", index=False)
    inference = infer(Request(model="minilm", train=f"hub:{folder}", test="test"))
    got = chosen(inference)
    assert got["data.hub"] == {"name": str(folder), "train_split": "train", "test_split": "test"}
    assert got["data.text_columns"] == ["text"] and got["tracking.experiment"] == "autopeft-reviews-dataset"
    config = resolve_mapping(inference.raw_config()).config
    raw = load(config.data, get_task(config.task.kind), seed=0)
    assert raw.sizes == {"train": 54, "test": 20, "validation": 6}


def test_a_saved_dataset_dict_gives_its_splits(minilm_path: str, tmp_path: Path) -> None:
    """`--train FOLDER` that `DatasetDict.save_to_disk` wrote: its train, validation and test splits,
    each named with where it came from; a flag still names its own split."""
    from tests.data.test_read_files import save_dataset_dict

    folder = save_dataset_dict(tmp_path / "reviews", {"train": 40, "dev": 10, "test": 10})
    inference = infer(Request(model="minilm", train=str(folder)))
    got = chosen(inference)
    assert (got["data.train"], got["data.validation"], got["data.test"]) == \
        (str(folder / "train"), str(folder / "dev"), str(folder / "test"))
    assert reasons(inference)["data.validation"] == f"the 'dev' split of the saved DatasetDict --train {folder}"
    assert got["tracking.experiment"] == "autopeft-reviews"  # named after the folder, as for a train.csv
    config = resolve_mapping(inference.raw_config()).config
    raw = load(config.data, get_task(config.task.kind), seed=0)
    assert raw.sizes == {"train": 40, "validation": 10, "test": 10} and raw.label_names == ["negative", "positive"]
    other = tmp_path / "other.csv"
    pd.DataFrame({"sentence": [f"another review {i}" for i in range(6)], "label": ["negative", "positive"] * 3,
                  "tags": ['["O"]'] * 6}).to_csv(other, index=False)
    assert chosen(infer(Request(model="minilm", train=str(folder), test=str(other))))["data.test"] == str(other)
    nothing_to_train = save_dataset_dict(tmp_path / "eval-only", {"test": 10})
    with pytest.raises(DataError, match=r"^--train: the saved DatasetDict '.*eval-only' has no train split \(splits: "
                                        r"test\); give one split's folder with --train$"):
        infer(Request(model="minilm", train=str(nothing_to_train)))


def test_plain_text_for_a_causal_lm_says_what_is_needed(task_models: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "corpus.csv"
    pd.DataFrame({"text": [f"say the fox number {i} is red" for i in range(30)]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"^--train: one text column \('text'\) and a causal LM: .*--text RESPONSE\)$"):
        infer(Request(model=task_models["causal_lm"], train=str(path)))


def test_empty_cells_reach_the_data_checks_not_a_traceback(minilm_path: str, tmp_path: Path) -> None:
    """A missing text or label cell (pandas keeps it missing through astype(str)) is the data
    checks' one line, not the tokenizer's or the metric choice's traceback."""
    from autopeft.data import load
    from autopeft.tasks import get_task

    rows = [f"a review with words {i} in it" for i in range(40)]
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"sentence": rows[:5] + [None] + rows[6:], "label": ["pos", "neg"] * 20}).to_csv(texts, index=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"sentence": rows, "label": [None] * 40}).to_csv(labels, index=False)
    blank = tmp_path / "blank.csv"
    pd.DataFrame({"sentence": [""] * 40, "label": ["pos", "neg"] * 20}).to_csv(blank, index=False)
    for request, message in ((Request(model="minilm", train=str(texts)), r"^data\.text_columns: 'sentence' is empty "
                              r"in train row \d+ \(1 empty in all\)$"),
                             (Request(model="minilm", train=str(labels), label="label"),
                              r"^data\.label_column: 'label' is empty in train row 0 \(40 empty in all\)$"),
                             (Request(model="minilm", train=str(blank), text=("sentence",)),
                              r"^data\.text_columns: 'sentence' is empty in train row 0 \(40 empty in all\)$")):
        config = resolve_mapping(infer(request).raw_config()).config
        with pytest.raises(DataError, match=message):
            load(config.data, get_task(config.task.kind), seed=0)


def test_a_test_file_that_is_not_a_file_is_one_line(minilm_path: str, tmp_path: Path) -> None:
    """--test (or --validation) naming a folder, nothing or a symlink loop: the flag and the path,
    as for --train; a loop used to escape as pathlib's RuntimeError."""
    train = tmp_path / "reviews.csv"
    pd.DataFrame({"sentence": [f"a review with words {i} in it" for i in range(40)],
                  "label": ["pos", "neg"] * 20}).to_csv(train, index=False)
    (tmp_path / "loop.csv").symlink_to(tmp_path / "loop2.csv")
    (tmp_path / "loop2.csv").symlink_to(tmp_path / "loop.csv")
    (tmp_path / "folder.csv").mkdir()
    for flag, given in (("test", "loop.csv"), ("test", "missing.csv")):
        path = str(tmp_path / given)
        with pytest.raises(DataError, match=rf"^--{flag}: no such file '{path}'$"):
            infer(Request(model="minilm", train=str(train), **{flag: path}))
    folder = str(tmp_path / "folder.csv")
    with pytest.raises(DataError, match=rf"^--validation: '{folder}' is a folder; expected one data file \("):
        infer(Request(model="minilm", train=str(train), validation=folder))


def test_a_column_of_records_is_no_text(minilm_path: str, tmp_path: Path) -> None:
    """A parquet struct column was a free-text column (its Python repr has many distinct values),
    so the data became a 'sentence pair' of the text and the struct."""
    path = tmp_path / "reviews.parquet"
    pd.DataFrame({"sentence": [f"a review with words {i} in it" for i in range(40)], "label": ["pos", "neg"] * 20,
                  "meta": [{"source": "web", "n": i} for i in range(40)]}).to_parquet(path)
    got = chosen(infer(Request(model="minilm", train=str(path))))
    assert got["data.text_columns"] == ["sentence"] and got["data.label_column"] == "label"


def test_short_repeated_texts_in_a_text_column(minilm_path: str, tmp_path: Path) -> None:
    """Intents and titles repeat and are short, so the profile alone takes them for a label; a
    column named as a text column is read as the input (the file was refused with 'no column
    holds text to read')."""
    path = tmp_path / "intents.csv"
    utterances = ["book a flight", "cancel it", "play music", "stop", "weather today", "call mum"]
    pd.DataFrame({"utterance": [utterances[i % 6] for i in range(120)],
                  "intent": [["travel", "travel", "media", "media", "info", "phone"][i % 6] for i in range(120)]}
                 ).to_csv(path, index=False)
    inference = infer(Request(model="minilm", train=str(path)))
    assert chosen(inference)["data.text_columns"] == ["utterance"] and chosen(inference)["data.label_column"] == "intent"
    assert reasons(inference)["data.text_columns"].startswith("its conventional name")
    # without a conventional name nothing says which of two repeated columns is the input
    pd.DataFrame({"a": ["x y", "y z"] * 60, "b": ["p", "q"] * 60}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"^--text: no column holds text to read \(columns: a, b\)"):
        infer(Request(model="minilm", train=str(path), label="b"))


@pytest.mark.parametrize("train, experiment", [("reviews.csv.gz", "autopeft-reviews"), ("reviews.csv", "autopeft-reviews"),
                                               ("imdb/train.jsonl.xz", "autopeft-imdb")])
def test_a_compressed_file_names_the_study_as_the_plain_one(train: str, experiment: str) -> None:
    assert names_for(train)[0] == experiment


def test_a_file_in_another_encoding_is_read_in_the_one_given(minilm_path: str, tmp_path: Path) -> None:
    """An Excel export from Windows (cp1252, curly quotes): zero-config refused it, and the error
    names the flag; --encoding (or data.encoding in --set, or the API's settings) reads it, for
    inference and for the study alike."""
    from autopeft.auto.flow import resolve_request
    from autopeft.errors import ConfigError

    rows = "".join(f"\u201c{word} caf\u00e9 film\u201d,{label}\n" for word, label in
                   [("a fine", "pos"), ("a dull", "neg"), ("a bright", "pos"), ("a flat", "neg")] * 10)
    train = tmp_path / "reviews.csv"
    train.write_bytes(("review,label\n" + rows).encode("cp1252"))
    with pytest.raises(DataError, match=r"^--train: .* is not UTF-8 text .*name its encoding with --encoding"):
        infer(Request(model="minilm", train=str(train)))
    inference = infer(Request(model="minilm", train=str(train), encoding="windows-1252"))
    assert chosen(inference)["data.encoding"] == "cp1252" and chosen(inference)["data.text_columns"] == ["review"]
    inference, resolved = resolve_request(Request(model="minilm", train=str(train)), [(["data", "encoding"], "cp1252")])
    assert resolved.config.data.encoding == "cp1252"
    raw = load(resolved.config.data, get_task(resolved.config.task.kind), seed=0)
    assert raw.frames["train"]["review"].str.endswith("caf\u00e9 film\u201d").all()
    with pytest.raises(ConfigError, match=r"^--encoding: expected a text encoding Python knows, .* found 'utf9'$"):
        infer(Request(model="minilm", train=str(train), encoding="utf9"))


@pytest.mark.parametrize("layout", ["openai.jsonl", "sharegpt.jsonl", "pandas.csv", "trl.jsonl"])
def test_chat_data_is_a_causal_lm_study_of_its_conversations(task_models, tmp_path: Path, layout: str) -> None:
    """Chat data as LLM users have it (OpenAI/TRL messages, ShareGPT conversations, or a column of
    them written out by pandas): zero-config asked which column was the label, and 'messages
    holds lists' (multi-label classification)."""
    from tests.tiny_tasks import chat_frame

    frame = chat_frame(40).assign(id=range(40))
    if layout.startswith("sharegpt"):
        speakers = {"system": "system", "user": "human", "assistant": "gpt"}
        frame = pd.DataFrame({"conversations": [[{"from": speakers[t["role"]], "value": t["content"]} for t in turns]
                                                for turns in frame["messages"]]})
    if layout.startswith("trl"):  # TRL's conversational prompt-completion: the reply's turns apart
        frame = pd.DataFrame({"prompt": [turns[:-1] for turns in frame["messages"]],
                              "completion": [turns[-1:] for turns in frame["messages"]]})
    path = tmp_path / layout
    if layout.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        write_jsonl(frame, path)
    column = {"sharegpt.jsonl": "conversations", "trl.jsonl": ["prompt", "completion"]}.get(layout, "messages")
    inference = infer(Request(model=task_models["causal_lm"], train=str(path)))
    got = chosen(inference)
    assert got["task.kind"] == "causal_lm" and got["data.messages_column"] == column
    assert "prompt_column" not in str(got) and got["space"] == "llm-sft" and got["objective.metric"] == "loss"
    assert "95th percentile" in reasons(inference)["model.max_length"]
    resolved = resolve_mapping(inference.raw_config())
    raw = load(resolved.config.data, get_task("causal_lm"), seed=0)
    assert raw.frames["train"]["response"].str.startswith("the ").all()


@pytest.mark.parametrize("context", ["input", "context"])
def test_instruction_data_keeps_its_input_in_the_prompt(task_models, tmp_path: Path, context: str) -> None:
    """Alpaca (instruction, input, output) and Dolly (instruction, context, response, category):
    the input or context was left out of the prompt, so the model learnt answers to questions it
    was never shown."""
    rows = [{"instruction": "Add the two numbers." if i % 2 else f"Name a colour, friend {i}.",
             context: f"{i} and {i + 1}" if i % 2 else "",
             "response" if context == "context" else "output":
                 f"The sum of {i} and {i + 1} is {2 * i + 1}, as told." if i % 2 else f"Blue, friend {i}, is one."}
            for i in range(60)]
    path = tmp_path / "instructions.json"
    path.write_text(json.dumps(rows))
    inference = infer(Request(model=task_models["causal_lm"], train=str(path)))
    got = chosen(inference)
    assert got["task.kind"] == "causal_lm" and got["data.prompt_column"] == ["instruction", context]
    assert f"then {context!r} below it where a row has one" in reasons(inference)["data.prompt_column"]
    raw = load(resolve_mapping(inference.raw_config()).config.data, get_task("causal_lm"), seed=0)
    assert raw.text_columns == ["instruction", context]


def test_the_metric_is_chosen_on_the_classes_the_study_reads(minilm_path: str, tmp_path: Path) -> None:
    """'pos ' (a space no one sees) is 'pos' in the study; counted apart, 20 neg / 15 'pos ' / 5
    pos read as three imbalanced classes and chose macro F1 for a balanced binary task."""
    labels = ["neg"] * 20 + ["pos "] * 15 + ["pos"] * 5
    frame = pd.DataFrame({"review": [f"a review of the film, number {i}" for i in range(40)], "label": labels})
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    got = chosen(infer(Request(model="minilm", train=str(tmp_path / "reviews.csv"))))
    assert got["objective.metric"] == "accuracy"


def test_prices_formatted_for_reading_are_a_regression_target(minilm_path: str, tmp_path: Path) -> None:
    rows = [{"description": f"a flat of {i} rooms near the park, item {i}", "price": f"${1000 + 37.25 * i:,.2f}"}
            for i in range(60)]
    pd.DataFrame(rows).to_csv(tmp_path / "flats.csv", index=False)
    got = chosen(infer(Request(model="minilm", train=str(tmp_path / "flats.csv"))))
    assert got["task.kind"] == "regression" and got["data.label_column"] == "price"
