"""Data files as people have them: no header, a byte-order mark, quoted fields, .txt lines,
a column name that is nearly right. Real files in tmp_path, read by the real loader."""

from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from autopeft.config import DataConfig
from autopeft.data import detect_header, load, read_table
from autopeft.errors import DataError
from autopeft.tasks import get_task
from tests.conftest import read_tsv, resolve_config

CLS = get_task("sequence_classification")
SENTENCES = [f"review number {i} was fine" for i in range(12)]
LABELS = ["pos", "neg", "pos", "neg", "neg", "pos", "pos", "neg", "pos", "neg", "neg", "pos"]


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def rows(frame: pd.DataFrame) -> list[list]:
    return frame.to_numpy().tolist()


def reads_as(path: Path, **kwargs) -> tuple[list[str], list[list]]:
    frame = read_table(path, "data.train", **kwargs)
    return list(frame.columns), rows(frame)


def message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------- headerless csv/tsv


def headerless_csv(tmp_path: Path) -> Path:
    return write(tmp_path / "train.csv", "".join(f"{s},{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True)))


def test_headerless_csv_with_column_names(tmp_path):
    path = headerless_csv(tmp_path)
    raw = load(DataConfig(train=str(path), header=False, columns=["review", "stars"], text_columns=["review"],
                          label_column="stars"), CLS, seed=0)
    assert raw.label_names == ["neg", "pos"]
    assert sum(raw.sizes.values()) == 12  # the first row is an example, not names
    both = pd.concat([raw.frames["train"], raw.frames["validation"]])
    assert sorted(both.review) == sorted(SENTENCES)


def test_column_names_alone_mean_no_header(tmp_path):
    frame = read_table(headerless_csv(tmp_path), "data.train", columns=["review", "stars"])
    assert list(frame.columns) == ["review", "stars"]
    assert rows(frame)[0] == [SENTENCES[0], "pos"]


def test_header_true_with_column_names_renames(tmp_path):
    path = write(tmp_path / "train.csv", "a,b\nhello,pos\nbye,neg\n")
    assert reads_as(path, header=True, columns=["text", "label"]) == (["text", "label"], [["hello", "pos"], ["bye", "neg"]])


def test_headerless_columns_are_named_by_position(tmp_path):
    path = headerless_csv(tmp_path)
    raw = load(DataConfig(train=str(path), header=False, text_columns=[0], label_column=1), CLS, seed=0)
    assert raw.text_columns == ["0"] and raw.label_column == "1"
    assert list(raw.frames["train"].columns) == ["0", "1"]
    assert sum(raw.sizes.values()) == 12


def test_positions_in_yaml_are_column_names(tmp_path):
    """`label_column: 1` and `text_columns: [0]` in the YAML file, through the real loader."""
    path = headerless_csv(tmp_path)
    resolved = resolve_config(tmp_path, data={"train": str(path), "header": False, "text_columns": [0],
                                              "label_column": 1})
    assert resolved.config.data.text_columns == ["0"] and resolved.config.data.label_column == "1"
    assert load(resolved.config.data, CLS, seed=0).label_names == ["neg", "pos"]


def test_positions_name_the_columns_task_kinds_add():
    cfg = DataConfig(train="t.csv", text_columns=0, prompt_column=0, response_column=1, tokens_column=2,
                     columns=[0, "b"])
    assert (cfg.text_columns, cfg.prompt_column, cfg.response_column, cfg.tokens_column, cfg.columns) == (
        ["0"], "0", "1", "2", ["0", "b"])


def test_wrong_number_of_column_names(tmp_path):
    path = headerless_csv(tmp_path)
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(path), header=False, columns=["review", "stars", "extra"], text_columns=["review"]),
             CLS, seed=0)
    assert message(excinfo) == f"data.columns: expected 2 names, one per column of {str(path)!r}, found 3"


# --------------------------------------------------------------------------- header detection


@pytest.mark.parametrize("text", [
    "sentence,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(SENTENCES)),  # a word over numbers
    "sentence,label\n" + "".join(f"{s},{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True)),  # a name over classes
    "index,text,label\n" + "".join(f"{i},{s},{lab}\n" for i, (s, lab) in enumerate(zip(SENTENCES, LABELS, strict=True))),
    "question,answer\nwho is it,nobody\nwhat is it,nothing\nwhere,nowhere\n",  # cannot tell: a header
    "sentence,label\nonly one row,pos\n",
    "0,1\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(SENTENCES)),  # pandas' positional names, written out
])
def test_a_file_with_a_header_keeps_it(tmp_path, text):
    path = write(tmp_path / "train.csv", text)
    assert detect_header(path) is True
    expected = pd.read_csv(path)
    assert read_table(path, "data.train").equals(expected)


@pytest.mark.parametrize("text", [
    "".join(f"{s},{i % 2}\n" for i, s in enumerate(SENTENCES)),  # a number over numbers
    "".join(f"{s},{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True)),  # a label that repeats below
    "".join(f"{i},{s},{lab}\n" for i, (s, lab) in enumerate(zip(SENTENCES, LABELS, strict=True))),
    "great film,pos\nawful,neg\nfine,pos\n",
])
def test_a_file_without_a_header_is_detected(tmp_path, text):
    path = write(tmp_path / "train.csv", text)
    assert detect_header(path) is False
    frame = read_table(path, "data.train")
    assert list(frame.columns) == [str(i) for i in range(frame.shape[1])]
    assert len(frame) == text.count("\n")  # the first row is data


def test_headerless_file_loads_without_saying_so(tmp_path):
    path = headerless_csv(tmp_path)
    raw = load(DataConfig(train=str(path), text_columns=["0"], label_column="1"), CLS, seed=0)
    assert sum(raw.sizes.values()) == 12 and raw.label_names == ["neg", "pos"]


def test_header_false_overrides_detection(tmp_path):
    path = write(tmp_path / "train.csv", "sentence,label\nhello,1\nbye,0\n")
    assert reads_as(path, header=False) == (["0", "1"], [["sentence", "label"], ["hello", "1"], ["bye", "0"]])


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_record_formats_always_have_names(tmp_path, suffix):
    path = tmp_path / f"train.{suffix}"
    frame = pd.DataFrame({"sentence": ["1", "2"], "label": [1, 0]})
    frame.to_parquet(path) if suffix == "parquet" else frame.to_json(path, orient="records", lines=True)
    assert detect_header(path) is True


def glue_like_tsv(path: Path, header: bool) -> Path:
    """RTE's shape: an index, two sentences with stray quote characters, a label of two words."""
    lines = [
        '0\tValero said it found "extensive" damage.\tValero produces oil.\tnot_entailment',
        '1\t"Stop," he said, and left.\tHe left.\tentailment',
        '2\tThe "best film of the year\tA film.\tentailment',
        '3\t"Yes."\tSomeone agreed.\tnot_entailment',
        '4\tShe said it was 5" wide.\tIt was wide.\tentailment',
    ]
    return write(path, ("index\tsentence1\tsentence2\tlabel\n" if header else "") + "\n".join(lines) + "\n")


@pytest.mark.parametrize("header", [True, False])
def test_glue_format_tsv(tmp_path, header):
    path = glue_like_tsv(tmp_path / "train.tsv", header)
    assert detect_header(path) is header
    frame = read_table(path, "data.train")
    if header:
        assert frame.equals(read_tsv(path))
    assert list(frame.columns) == (["index", "sentence1", "sentence2", "label"] if header else ["0", "1", "2", "3"])
    assert list(frame.iloc[:, 1]) == [
        'Valero said it found "extensive" damage.', '"Stop," he said, and left.', 'The "best film of the year',
        '"Yes."', 'She said it was 5" wide.']


def test_glue_files_read_as_before(glue_dir, tmp_path):
    """The shared GLUE files: a header detected, read exactly as the GLUE loader reads them; the
    same rows without their header line: detected as data, every row kept."""
    for task, name in [("sst2", "test.tsv"), ("rte", "dev.tsv"), ("qnli", "test.tsv")]:
        path = glue_dir / task / name
        assert detect_header(path) is True, path
        expected = read_tsv(path)
        assert read_table(path, "data.train").equals(expected), path
        bare = write(tmp_path / f"{task}.tsv", path.read_bytes().split(b"\n", 1)[1])
        assert detect_header(bare) is False, path
        frame = read_table(bare, "data.train")
        assert list(frame.columns) == [str(i) for i in range(expected.shape[1])]
        assert rows(frame) == rows(expected), path


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("suffix, text", [
    ("csv", "sentence,label\nhello,pos\nbye,neg\n"),
    ("tsv", "sentence\tlabel\nhello\tpos\nbye\tneg\n"),
    ("jsonl", '{"sentence": "hello", "label": "pos"}\n{"sentence": "bye", "label": "neg"}\n'),
    ("txt", "hello\tpos\nbye\tneg\n"),
])
def test_byte_order_mark(tmp_path, suffix, text):
    path = write(tmp_path / f"train.{suffix}", b"\xef\xbb\xbf" + text.encode("utf-8"))
    first = "text" if suffix == "txt" else "sentence"
    assert reads_as(path) == ([first, "label"], [["hello", "pos"], ["bye", "neg"]])


def test_byte_order_mark_through_load(tmp_path):
    path = write(tmp_path / "train.csv", b"\xef\xbb\xbf" + ("sentence,label\n" + "".join(
        f"{s},{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True))).encode("utf-8"))
    raw = load(DataConfig(train=str(path), text_columns=["sentence"]), CLS, seed=0)
    assert raw.text_columns == ["sentence"] and sum(raw.sizes.values()) == 12


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_not_utf8(tmp_path, bom):
    write(tmp_path / "train.csv", "sentence,label\n" + "".join(f"{s},{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True)))
    test = write(tmp_path / "test.tsv", bom + "sentence\tlabel\ncafé\tpos\n".encode("latin-1"))
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(tmp_path / "train.csv"), test=str(test), text_columns=["sentence"]), CLS, seed=0)
    offset = len(bom) + len("sentence\tlabel\ncaf")
    # without a mark, the file may be in another encoding: the error names the field that says which
    fix = "save it as UTF-8" if bom else ("save it as UTF-8, or name its encoding with data.encoding (Excel on "
                                          "Windows saves csv as cp1252)")
    assert message(excinfo) == f"data.test: {str(test)!r} is not UTF-8 text (byte 0xe9 at offset {offset}); {fix}"


def test_a_file_in_a_named_encoding(tmp_path):
    """Excel on Windows saves csv as cp1252 ('ANSI'): it could only be refused. data.encoding names
    the encoding of every data file; a byte the encoding has no character for is one line."""
    text = "sentence,label\n" + "".join(f"\u201c{s}\u201d caf\u00e9,{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True))
    train = write(tmp_path / "train.csv", text.encode("cp1252"))
    test = write(tmp_path / "test.csv", "sentence,label\nna\u00efve,pos\n".encode("cp1252"))
    config = DataConfig(train=str(train), test=str(test), text_columns=["sentence"], encoding="Windows-1252")
    assert config.encoding == "cp1252"  # Python's name for it
    raw = load(config, CLS, seed=0)
    assert raw.frames["test"]["sentence"].tolist() == ["na\u00efve"]
    assert all(s.endswith("\u201d caf\u00e9") for s in raw.frames["train"]["sentence"])
    bad = write(tmp_path / "bad.csv", b"sentence,label\nok\x81,pos\n")  # 0x81: no character in cp1252
    with pytest.raises(DataError) as excinfo:
        read_table(bad, "data.train", encoding="cp1252")
    assert message(excinfo) == f"data.train: {str(bad)!r} is not cp1252 text (byte 0x81 at offset 17); check data.encoding"
    # a UTF-8 mark under an encoding named UTF-8 is no part of the first column's name
    marked = write(tmp_path / "marked.csv", "\ufeffsentence,label\nok,pos\n".encode("utf-8"))
    assert list(read_table(marked, "data.train", encoding="utf-8").columns) == ["sentence", "label"]


@pytest.mark.parametrize("value", ["utf9", "base64", ""])
def test_an_encoding_python_does_not_know_as_text_is_refused(value):
    with pytest.raises(ValueError, match=f"expected a text encoding Python knows, such as utf-8, cp1252 or "
                                         f"latin-1, found {value!r}"):
        DataConfig(train="train.csv", encoding=value)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark(tmp_path, encoding):
    """Some Windows tools save UTF-16 with no mark: every other byte of Latin text is zero, which
    no other text file holds. It was refused as 'not UTF-8'."""
    text = "sentence,label\r\ncaf\u00e9 au lait,pos\r\n\u65e5\u672c,neg\r\nok,pos\r\n"
    path = write(tmp_path / "train.csv", text.encode(encoding))
    assert reads_as(path) == (["sentence", "label"], [["caf\u00e9 au lait", "pos"], ["\u65e5\u672c", "neg"], ["ok", "pos"]])


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
@pytest.mark.parametrize("name", ["train.txt", "train.csv", "train.tsv"])
def test_a_unicode_file_with_its_byte_order_mark(tmp_path, encoding, name):
    """Excel's 'Unicode Text' saves UTF-16 (a mark, tabs, CRLF), PowerShell too: it was refused as
    'not UTF-8'. The mark names the encoding, so it is read, under any of the names users give it."""
    text = "sentence\tlabel\r\ncaf\u00e9, d\u00e9j\u00e0 vu\tpos\r\n\u65e5\u672c\tneg\r\nok\tpos\r\n"
    path = write(tmp_path / name, ("\ufeff" + text).encode(encoding))
    first = "text" if name.endswith(".txt") else "sentence"
    assert reads_as(path) == ([first, "label"], [["caf\u00e9, d\u00e9j\u00e0 vu", "pos"], ["\u65e5\u672c", "neg"], ["ok", "pos"]])


def test_utf16_that_is_not_says_which_encoding(tmp_path):
    path = write(tmp_path / "train.csv", codecs.BOM_UTF16_LE + "text,label\n".encode("utf-16-le") + b"\x00\xd8")
    with pytest.raises(DataError, match=r"is not UTF-16-LE text \(byte 0x00 at offset 24\); save it as UTF-8$"):
        read_table(path, "data.train")


@pytest.mark.parametrize("compress", ["gzip", "bz2", "lzma"])
def test_compressed_data_under_a_plain_name_is_read(tmp_path, compress):
    """A download saved as train.csv that the server sent gzipped: its first bytes say so."""
    import importlib

    text = "text,label\nfine film,pos\nbad film,neg\n"
    path = write(tmp_path / "train.csv", importlib.import_module(compress).compress(text.encode()))
    assert reads_as(path) == (["text", "label"], [["fine film", "pos"], ["bad film", "neg"]])


@pytest.mark.parametrize("name", ["train.csv.gz", "train.csv"])
def test_a_decompression_bomb_is_refused_before_it_fills_the_memory(tmp_path, monkeypatch, name):
    """A few KiB of gzip that unpack to GiB of text: it was unpacked whole, and the process was
    killed for memory. Text is read no further than a quarter of the machine's memory (here
    patched to 1 MiB); a plain file past that is refused as well, before it is read."""
    import gzip
    import importlib

    # the module, not the package's load() function, which its name resolves to as an attribute
    monkeypatch.setattr(importlib.import_module("autopeft.data.load"), "text_limit", lambda: 1 << 20)
    bomb = write(tmp_path / name, gzip.compress(b"text,label\n" + b"a fine film,pos\n" * 200_000))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError) as excinfo:
        read_table(bomb, "data.train")
    assert message(excinfo) == (f"data.train: {str(bomb)!r} decompresses to more than 1.0 MiB of text, more than "
                                "this machine reads into memory (a quarter of it)")
    big = write(tmp_path / "big.csv", b"text,label\n" + b"a fine film,pos\n" * 100_000)
    with pytest.raises(DataError) as excinfo:
        read_table(big, "data.train")
    assert message(excinfo) == (f"data.train: {str(big)!r} holds 1.5 MiB of text, more than this machine reads "
                                "into memory (1.0 MiB, a quarter of it); split the file, or read a sample of it")


def test_text_that_starts_like_compressed_data_is_text(tmp_path):
    path = write(tmp_path / "train.csv", "BZh,label\nfine,pos\nbad,neg\n")
    assert reads_as(path) == (["BZh", "label"], [["fine", "pos"], ["bad", "neg"]])


@pytest.mark.parametrize("head, what", [
    (b"PK\x03\x04", "a zip archive (an Excel workbook is one: name it .xlsx; else unzip it)"),
    (b"PAR1", "a Parquet file (name it .parquet)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel .xls workbook (save it as .xlsx or csv)"),
])
def test_a_binary_file_under_a_text_name_says_what_it_is(tmp_path, head, what):
    path = write(tmp_path / "train.csv", head + bytes(range(256)))
    with pytest.raises(DataError) as excinfo:
        read_table(path, "data.train")
    assert message(excinfo) == f"data.train: {str(path)!r} is {what}, not csv text"


@pytest.mark.parametrize("suffix", ["jsonl", "json"])
def test_json_values_are_read_as_written(tmp_path, suffix):
    """A sentence that looks like a number or a date stays the text it is (pandas' read_json made
    "007" the integer 7 and "2020-01-02" a timestamp); numbers, nulls and lists keep their JSON types."""
    records = [{"id": "007", "sentence": "12", "date": "2020-01-02", "label": 1, "score": 0.5, "tokens": ["a", "b"]},
               {"id": "008", "sentence": "3.5", "date": "2020-01-03", "label": 0, "score": None, "tokens": ["c"]}]
    text = ("\n".join(json.dumps(r) for r in records) + "\n") if suffix == "jsonl" else json.dumps(records)
    frame = read_table(write(tmp_path / f"train.{suffix}", text), "data.train")
    assert list(frame.columns) == ["id", "sentence", "date", "label", "score", "tokens"]
    assert frame["id"].tolist() == ["007", "008"] and frame["sentence"].tolist() == ["12", "3.5"]
    assert frame["date"].tolist() == ["2020-01-02", "2020-01-03"]
    assert frame["label"].dtype == "int64" and frame["tokens"].tolist() == [["a", "b"], ["c"]]
    assert frame["score"].iloc[0] == 0.5 and pd.isna(frame["score"].iloc[1])


@pytest.mark.parametrize("orient", ["records", "columns", "index", "split", "table", "values"])
def test_json_as_pandas_writes_it_in_every_orient(tmp_path, orient):
    """``DataFrame.to_json`` writes six layouts; 'split' failed in pandas ('All arrays must be of the
    same length'), 'index' read each row as a column, 'values' was refused."""
    frame = pd.DataFrame({"sentence": SENTENCES, "label": LABELS})
    path = tmp_path / "train.json"
    frame.to_json(path, orient=orient)
    read = read_table(path, "data.train")
    if orient == "table":  # its records carry the row index, as a column (zero-config skips it as an id)
        assert read.pop("index").tolist() == list(range(12))
    names = ["0", "1"] if orient == "values" else ["sentence", "label"]  # rows without names: by position
    assert (list(read.columns), rows(read)) == (names, rows(frame))


def test_json_mapping_by_column(tmp_path):
    path = write(tmp_path / "train.json", json.dumps({"sentence": {"0": "hello", "1": "bye"}, "label": {"0": "pos", "1": "neg"}}))
    assert reads_as(path) == (["sentence", "label"], [["hello", "pos"], ["bye", "neg"]])


# --------------------------------------------------------------------------- quoting


def test_quoted_csv_fields(tmp_path):
    path = write(tmp_path / "train.csv", 'sentence,label\n"one, two",pos\n"first line\nsecond line",neg\n'
                                         '"she said ""hi""",pos\nplain,neg\n')
    assert reads_as(path) == (["sentence", "label"], [
        ["one, two", "pos"], ["first line\nsecond line", "neg"], ['she said "hi"', "pos"], ["plain", "neg"]])


@pytest.mark.parametrize("head", ['"sentence"\t"label"', "sentence\tlabel"])
def test_quoted_tsv_fields_lose_their_quotes(tmp_path, head):
    path = write(tmp_path / "train.tsv", head + '\n"one\ttwo"\tpos\n"first line\nsecond line"\tneg\n'
                                               '"she said ""hi"""\tpos\n"plain"\tneg\n')
    assert reads_as(path) == (["sentence", "label"], [
        ["one\ttwo", "pos"], ["first line\nsecond line", "neg"], ['she said "hi"', "pos"], ["plain", "neg"]])


def test_quoted_text_and_bare_numbers_tsv(tmp_path):
    """What R's write.table and pandas' QUOTE_NONNUMERIC write: quoted strings, bare numbers."""
    path = write(tmp_path / "train.tsv", '"sentence"\t"label"\n"good, ""really"""\t1\n"bad"\t0\n')
    assert reads_as(path) == (["sentence", "label"], [['good, "really"', 1], ["bad", 0]])


def test_tsv_with_some_quoted_fields_keeps_its_quotes(tmp_path):
    path = write(tmp_path / "train.tsv", 'sentence\tlabel\n"quoted"\tpos\nbare\tneg\n')
    assert reads_as(path) == (["sentence", "label"], [['"quoted"', "pos"], ["bare", "neg"]])


# --------------------------------------------------------------------------- txt


def test_txt_lines_load(tmp_path):
    path = write(tmp_path / "train.txt", "".join(f"{s}\t{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True))
                 + "\n   \nwith\ta tab inside\tpos\r\n")
    frame = read_table(path, "data.train")
    assert list(frame.columns) == ["text", "label"]
    assert rows(frame) == [[s, lab] for s, lab in zip(SENTENCES, LABELS, strict=True)] + [["with\ta tab inside", "pos"]]
    raw = load(DataConfig(train=str(path), text_columns=["text"]), CLS, seed=0)
    assert raw.label_names == ["neg", "pos"] and sum(raw.sizes.values()) == 13


def test_txt_numeric_labels_are_numbers(tmp_path):
    path = write(tmp_path / "train.txt", "good\t1\nbad\t0\nfine\t1\n")
    assert reads_as(path) == (["text", "label"], [["good", 1], ["bad", 0], ["fine", 1]])


@pytest.mark.parametrize("labels", [["1", "0", "1", "0"], ["pos", "neg", "pos", "neg"]])
def test_txt_header_line_is_skipped(tmp_path, labels):
    path = write(tmp_path / "train.txt", "sentence\tlabel\n" + "".join(
        f"{s}\t{lab}\n" for s, lab in zip(SENTENCES[:4], labels, strict=True)))
    assert detect_header(path) is True
    frame = read_table(path, "data.train")
    assert len(frame) == 4 and frame.text.iloc[0] == SENTENCES[0]


def test_txt_first_line_is_an_example_unless_it_stands_out(tmp_path):
    path = write(tmp_path / "train.txt", "good one\tpos\nbad one\tneg\ngreat\tpos\n")
    assert detect_header(path) is False
    assert len(read_table(path, "data.train")) == 3


def test_a_txt_in_fasttexts_format(tmp_path):
    """fastText's ``__label__NAME text`` lines (Amazon and Yelp reviews ship so): each line failed on
    'has no tab-separated label', or, with a comma in every line, read as a csv of halves."""
    lines = ["__label__2 Great CD: My lovely Pat has one of the GREAT voices, truly",
             "__label__1 Buyer beware, this is a self-published book",
             "__label__2 Excellent, a fine and rare read"]
    path = write(tmp_path / "train.ft.txt", "\n".join(lines) + "\n")
    assert reads_as(path) == (["text", "label"], [["Great CD: My lovely Pat has one of the GREAT voices, truly", 2],
                                                  ["Buyer beware, this is a self-published book", 1],
                                                  ["Excellent, a fine and rare read", 2]])
    assert detect_header(path) is False
    several = write(tmp_path / "tags.txt", "__label__sports __label__news a match report\n")
    with pytest.raises(DataError, match=r"^data\.train: line 1 of '.*tags\.txt' has two labels or more \(__label__sports, "
                                        r"__label__news\); multi-label classification is not a task autopeft runs$"):
        read_table(several, "data.train")
    unmarked = write(tmp_path / "mixed.txt", "__label__pos fine\nbad, really\n")
    with pytest.raises(DataError, match=r"^data\.train: line 2 of '.*mixed\.txt' has no __label__ before its text"):
        read_table(unmarked, "data.train")


def test_txt_line_without_a_tab(tmp_path):
    path = write(tmp_path / "train.txt", "good\tpos\n\nno label here\nbad\tneg\n")
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(path), text_columns=["text"]), CLS, seed=0)
    assert message(excinfo) == f"data.train: line 3 of {str(path)!r} has no tab-separated label"


@pytest.mark.parametrize("name, text, problem", [
    ("train.jsonl", '{"sentence": "good", "label": "pos"}\n\n[1, 2]\n', "expected a JSON object on each line of {path}, "
     "found a list on line 3"),
    ("train.jsonl", '{"sentence": "good", "label": "pos"}\n42\n', "expected a JSON object on each line of {path}, "
     "found a number on line 2"),
    ("train.jsonl", '{"sentence": "good", "label": "pos"}\n{"sentence": "bad",\n', "line 2 of {path} is not valid "
     "JSON (Expecting property name enclosed in double quotes at column 20)"),
    ("train.json", '[{"sentence": "good", "label": "pos"}, "bad"]', "expected a list of JSON objects in {path}, found "
     "a string as item 1"),
    ("train.json", "5", "expected a list of JSON objects in {path}, found a number"),
])
def test_json_that_holds_no_records_says_where(tmp_path, name, text, problem):
    """pandas says 'cannot convert dictionary update sequence element #0 to a sequence' or
    ''int' object is not iterable'; the line and what it holds tell a user what to fix."""
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(path), text_columns=["sentence"]), CLS, seed=0)
    assert message(excinfo) == "data.train: " + problem.format(path=repr(str(path)))


@pytest.mark.parametrize("suffix, sep", [("csv", ","), ("tsv", "\t")])
def test_a_column_named_twice_in_the_header(tmp_path, suffix, sep):
    """pandas renamed the second 'label' to 'label.1' and the study read the first, unsaid."""
    path = write(tmp_path / f"train.{suffix}", sep.join(["sentence", "label", "label"]) + "\n"
                 + "".join(sep.join([s, lab, lab]) + "\n" for s, lab in zip(SENTENCES, LABELS, strict=True)))
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(path), text_columns=["sentence"]), CLS, seed=0)
    assert message(excinfo) == (f"data.train: column 'label' appears twice in the header of {str(path)!r}; expected "
                                "each column named once")
    # a headerless file's columns are named by position or by data.columns, not by its first row
    assert list(read_table(path, "data.train", columns=["a", "b", "c"]).columns) == ["a", "b", "c"]


def test_unknown_suffix_lists_txt(tmp_path):
    path = write(tmp_path / "train.xls", b"PK")
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(path), text_columns=["text"]), CLS, seed=0)
    assert message(excinfo) == ("data.train: expected a .csv, .tsv, .txt, .conll, .jsonl, .json, .parquet, .arrow, "
                                ".feather or .xlsx "
                               "file (a text one may also be compressed: .gz, .bz2 or .xz), found 'train.xls'")


@pytest.mark.parametrize("suffix, compress", [(".gz", "gzip"), (".bz2", "bz2"), (".xz", "lzma")])
@pytest.mark.parametrize("inner", [".csv", ".tsv", ".jsonl"])
def test_compressed_text_files_load_as_the_plain_ones(tmp_path, suffix, compress, inner):
    import importlib

    frame = pd.DataFrame({"text": [f"sentence {i}, with a comma" for i in range(6)], "label": ["a", "b"] * 3})
    plain = tmp_path / f"train{inner}"
    if inner == ".jsonl":
        frame.to_json(plain, orient="records", lines=True)
    else:
        frame.to_csv(plain, sep="\t" if inner == ".tsv" else ",", index=False)
    packed = write(tmp_path / f"train{inner}{suffix}", importlib.import_module(compress).compress(plain.read_bytes()))
    pd.testing.assert_frame_equal(read_table(packed, "data.train"), read_table(plain, "data.train"))
    assert detect_header(packed) is True
    data = load(DataConfig(train=str(packed), text_columns=["text"]), CLS, seed=0)
    assert data.label_names == ["a", "b"]


def test_compressed_file_that_is_not_says_so(tmp_path):
    path = write(tmp_path / "train.csv.gz", b"text,label\nhi,a\n")
    with pytest.raises(DataError) as excinfo:
        read_table(path, "data.train")
    assert message(excinfo).startswith(f"data.train: {str(path)!r} is not gz-compressed data (")
    # parquet compresses itself: a .parquet.gz is not a format pandas or autopeft reads
    with pytest.raises(DataError, match=r"expected a \.csv.*found 'train\.parquet\.gz'$"):
        read_table(write(tmp_path / "train.parquet.gz", b"x"), "data.train")


# --------------------------------------------------------------------------- did you mean


@pytest.mark.parametrize("given, field, meant", [
    ("label", "label_column", "Label"),
    (" LABEL ", "label_column", "Label"),
    ("review text", "text_columns", "Review_Text"),
    ("review-text", "text_columns", "Review_Text"),
    ("reviewtext", "text_columns", "Review_Text"),
    ("Review  Text", "text_columns", "Review_Text"),
    ("lable", "label_column", "Label"),
    ("review_txt", "text_columns", "Review_Text"),
])
def test_did_you_mean(tmp_path, given, field, meant):
    path = write(tmp_path / "train.csv", "Review_Text,Label\n" + "".join(
        f"{s},{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True)))
    names = {"text_columns": ["Review_Text"], "label_column": "Label", field: [given] if field == "text_columns" else given}
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(path), **names), CLS, seed=0)
    assert message(excinfo) == (f"data.{field}: column {given!r} is not in the train data "
                                f"(columns: Review_Text, Label); did you mean {meant!r}?")


def test_no_suggestion_when_nothing_is_near(tmp_path):
    path = write(tmp_path / "train.csv", "Review_Text,Label\nhello,pos\nbye,neg\n")
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(path), text_columns=["comment"], label_column="Label"), CLS, seed=0)
    assert message(excinfo) == "data.text_columns: column 'comment' is not in the train data (columns: Review_Text, Label)"


def test_dialect_is_kept_for_plain_tsv(tmp_path):
    """A tsv without any quote character reads exactly as with QUOTE_NONE (the GLUE reader)."""
    path = write(tmp_path / "train.tsv", "a\tb\n1\tx y\n2\tz\n")
    assert read_table(path, "data.train").equals(pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE))


def test_a_semicolon_separated_csv_is_read_by_its_columns(tmp_path):
    """Spreadsheets in locales whose decimal mark is a comma save .csv with ';': it read as one
    column named 'sentence;label', and zero-config offered that as the label."""
    texts = ["rated 3,5 of 5, fine", "poor", "a 4,5: good"]
    path = write(tmp_path / "train.csv", "sentence;label\n" + "".join(f"{s};{lab}\n" for s, lab in zip(texts, LABELS[:3], strict=True)))
    assert reads_as(path) == (["sentence", "label"], [[s, lab] for s, lab in zip(texts, LABELS[:3], strict=True)])
    # a comma-separated file whose texts hold semicolons (as many per line as commas) stays comma-separated
    path = write(tmp_path / "reviews.csv", "good; really,pos\nbad; very,neg\n")
    assert reads_as(path, header=False) == (["0", "1"], [["good; really", "pos"], ["bad; very", "neg"]])


@pytest.mark.parametrize(("name", "sep"), [("train.csv", ";"), ("train.csv", "\t"), ("train.tsv", ","), ("train.txt", ";")])
def test_reviews_of_several_lines_do_not_hide_the_separator(tmp_path, name, sep):
    """Quoted reviews with line breaks and blank lines inside, as pandas and spreadsheets write them:
    the separator was decided on the file's first 50 lines, which cut the last review in two (and
    dropped its blank lines), so a ';' file read as one column 'review;rating;id'."""
    review = 'fine, really.\n\nSecond paragraph; with "quotes", and more, {i}'
    frame = pd.DataFrame({"review": [review.format(i=i) for i in range(40)], "rating": LABELS * 3 + LABELS[:4],
                          "id": range(40)})
    path = tmp_path / name
    frame.to_csv(path, sep=sep, index=False)
    assert reads_as(path) == (["review", "rating", "id"], rows(frame))


@pytest.mark.parametrize("head", ["", "sentence;note,label\n"])
def test_a_first_line_longer_than_the_csv_modules_field_limit(tmp_path, head):
    """A document of 200,000 characters in the first line: the separator and spacing sniff read it
    with the csv module, whose field limit (131,072) refused the file."""
    long = "word " * 40_000
    path = write(tmp_path / "train.csv", head + f'"{long}",pos\n' + "".join(f"{s},{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True)))
    frame = read_table(path, "data.train")
    assert len(frame) == 13 and frame.iloc[0, 0] == long


def test_a_tab_separated_csv_is_read_by_its_columns(tmp_path):
    """Many exports (and Excel's 'Unicode Text' saved as .csv) name a tab-separated file .csv; read
    with ',' its texts' commas split rows into different numbers of fields, and pandas gave up."""
    texts = ["slow, then wonderful", "bad", "good, good, good"]
    path = write(tmp_path / "train.csv", "sentence\tlabel\n" + "".join(f"{s}\t{lab}\n" for s, lab in zip(texts, LABELS[:3], strict=True)))
    assert reads_as(path) == (["sentence", "label"], [[s, lab] for s, lab in zip(texts, LABELS[:3], strict=True)])
    # a comma-separated file with one tab in each line (a text's) stays comma-separated
    path = write(tmp_path / "tabbed.csv", "a\tb,pos\nc\td,neg\n")
    assert reads_as(path, header=False) == (["0", "1"], [["a\tb", "pos"], ["c\td", "neg"]])


@pytest.mark.parametrize(("name", "sep"), [("train.tsv", ","), ("train.txt", ","), ("train.txt", ";"), ("train.tsv", ";")])
def test_a_csv_under_a_tsv_or_txt_name_is_read_as_a_csv(tmp_path, name, sep):
    """An export saved under the wrong name: a .tsv read as one column 'sentence,label', and a .txt
    failed on 'line 1 has no tab-separated label'."""
    texts = [f'"review {i}{sep} fine"' for i in range(12)]
    path = write(tmp_path / name, f"sentence{sep}label\n" + "".join(f"{t}{sep}{lab}\n" for t, lab in zip(texts, LABELS, strict=True)))
    assert reads_as(path) == (["sentence", "label"], [[f"review {i}{sep} fine", lab] for i, lab in enumerate(LABELS)])
    assert detect_header(path) is True
    # a txt of one example a line, with a comma in some, is still text and label at the last tab
    plain = write(tmp_path / "plain.txt", "fine, really\tpos\nbad\tneg\n")
    assert reads_as(plain) == (["text", "label"], [["fine, really", "pos"], ["bad", "neg"]])


def test_amounts_as_reports_format_them_are_numbers(tmp_path):
    """Prices and salaries exported with thousands groups and currency signs ("1,957.25",
    "$403.84", "1.234,50 €" in a ';' file) read as text: zero-config could not tell the label,
    and named it made a classification of 300 classes (one per price)."""
    us = write(tmp_path / "us.csv", 'text,price,code\na,"$1,234.50","1,2"\nb,950.25,"3,4"\nc,"-2,000",x\nd,NA,y\n')
    frame = read_table(us, "data.train")
    assert frame["price"].tolist()[:3] == [1234.5, 950.25, -2000.0] and pd.isna(frame["price"][3])
    assert frame["code"].tolist() == ["1,2", "3,4", "x", "y"]  # not grouped in thousands: text
    eu = write(tmp_path / "eu.csv", "text;amount\nfine flat;1.234,50 \u20ac\nsmall flat;950,00 \u20ac\nbig;12.000 \u20ac\n")
    assert read_table(eu, "data.train")["amount"].tolist() == [1234.5, 950.0, 12000.0]


def test_decimal_commas_of_a_semicolon_separated_csv_are_numbers(tmp_path):
    """Such a spreadsheet writes 2,45 for 2.45: the scores read as strings, and zero-config made a
    regression target of 126 values a classification of 126 classes."""
    path = write(tmp_path / "train.csv", "sentence;score;stars;note\n" + "".join(
        f"review {i};{i},{i % 7}5;{1 + i % 5};{i},{i + 1}x\n" for i in range(12)))
    frame = read_table(path, "data.train")
    assert frame["score"].tolist() == [float(f"{i}.{i % 7}5") for i in range(12)]
    assert frame["stars"].tolist() == [1 + i % 5 for i in range(12)]
    assert frame["note"].tolist() == [f"{i},{i + 1}x" for i in range(12)]  # not a number: kept as written
    # without a header, the first row's decimal comma is data, as a decimal point's would be
    headerless = write(tmp_path / "values.csv", "".join(f"review {i};{i},5\n" for i in range(12)))
    assert detect_header(headerless) is False
    assert read_table(headerless, "data.train")["1"].tolist() == [i + 0.5 for i in range(12)]
    # a missing score stays missing; and in a comma-separated file, quoted "1,5" is text
    gaps = write(tmp_path / "gaps.csv", "sentence;score\na;1,5\nb;\nc;2,25\n")
    assert rows(read_table(gaps, "data.train"))[1][0] == "b" and pd.isna(read_table(gaps, "data.train")["score"][1])
    quoted = write(tmp_path / "quoted.csv", 'sentence,score\na,"1,5"\nb,"2,5"\n')
    assert read_table(quoted, "data.train")["score"].tolist() == ["1,5", "2,5"]


def test_a_csv_written_with_a_space_after_each_comma(tmp_path):
    """``text, label`` by hand: the space is not part of the field. It had made the column ' label'
    and the classes ' pos' and ' neg', and a quoted text after ', ' was cut at its commas."""
    body = "".join(f'"{s}, really", {lab}\n' for s, lab in zip(SENTENCES, LABELS, strict=True))
    path = write(tmp_path / "train.csv", "sentence, label\n" + body)
    assert reads_as(path) == (["sentence", "label"],
                              [[f"{s}, really", lab] for s, lab in zip(SENTENCES, LABELS, strict=True)])
    raw = load(DataConfig(train=str(path), text_columns=["sentence"], label_column="label"), CLS, seed=0)
    assert raw.label_names == ["neg", "pos"]
    headerless = write(tmp_path / "rows.csv", body)
    assert reads_as(headerless)[1][0] == [f"{SENTENCES[0]}, really", LABELS[0]]
    # a file whose fields are not all spaced keeps its spaces (they may be the writer's)
    mixed = write(tmp_path / "mixed.csv", "sentence,label\n" + "".join(f" {s}, {lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True)))
    assert reads_as(mixed)[1][0] == [f" {SENTENCES[0]}", f" {LABELS[0]}"]


def test_json_records_under_one_key(tmp_path):
    """``{"data": [...]}``, as exports and APIs write it: it read as one column 'data' of objects."""
    records = [{"sentence": "hello", "label": "pos"}, {"sentence": "bye", "label": "neg"}]
    path = write(tmp_path / "train.json", json.dumps({"version": "1.0", "data": records}))
    assert reads_as(path) == (["sentence", "label"], [["hello", "pos"], ["bye", "neg"]])
    # two such lists: which one is the data is not for the loader to guess
    path = write(tmp_path / "two.json", json.dumps({"train": records, "test": records}))
    assert reads_as(path)[0] == ["train", "test"]


# --------------------------------------------------------------------------- CoNLL


def conll_text(sep: str = " ", docstart: bool = True) -> str:
    sentences = [[("EU", "NNP", "B-ORG"), ("rejects", "VBZ", "O"), ("German", "JJ", "B-MISC")],
                 [("Peter", "NNP", "B-PER"), ("Blackburn", "NNP", "I-PER")]]
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for sentence in sentences:
        lines += [sep.join((word, pos, "I-NP", tag)) for word, pos, tag in sentence] + [""]
    return "\n".join(lines)


@pytest.mark.parametrize(("name", "sep"), [("train.conll", " "), ("train.txt", " "), ("train.txt", "\t"),
                                           ("train.conll.gz", "\t")])
def test_conll_reads_one_row_per_sentence(tmp_path, name, sep):
    """NER data as it is shipped (CoNLL-2003 and its kin): a .txt of tab-separated words was read as
    one text-classification example per word, a space-separated one was refused."""
    import gzip

    text = conll_text(sep)
    path = write(tmp_path / name, gzip.compress(text.encode()) if name.endswith(".gz") else text)
    assert reads_as(path) == (["tokens", "tags"], [[["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]],
                                                   [["Peter", "Blackburn"], ["B-PER", "I-PER"]]])
    assert detect_header(path) is True  # nothing to detect: no row of names
    raw = load(DataConfig(train=str(path), validation=str(path)), get_task("token_classification"), seed=0)
    assert raw.label_names == ["B-MISC", "B-ORG", "B-PER", "I-PER", "O"]


def test_a_txt_of_examples_is_not_taken_for_conll(tmp_path):
    # two-word texts in one block, or one example a block: not sentences of words
    for text in ("good film\tpos\nbad film\tneg\n\ngreat film\tpos\n", "good film\tpos\n\nbad film\tneg\n\n"):
        path = write(tmp_path / "train.txt", text)
        assert reads_as(path)[0] == ["text", "label"]


def test_a_conll_line_without_a_tag_is_one_line(tmp_path):
    path = write(tmp_path / "train.conll", "EU B-ORG\nrejects\n\n")
    with pytest.raises(DataError, match=r"^data\.train: line 2 of '.*train\.conll' holds 'rejects' alone; expected "
                                        r"a word and its tag \(CoNLL: one word a line"):
        read_table(path, "data.train")


def test_none_and_na_are_values_unless_a_column_holds_numbers(tmp_path):
    """pandas reads 'None', 'NA', 'null' as missing wherever they are: a class named 'None' (no
    emotion, no entity) or a text 'NA' became an empty label or text, and the study failed on it."""
    labels = ["None", "joy", "NA", "anger"] * 3
    texts = ["null", "what a day", "so so", "NaN"] * 3
    path = write(tmp_path / "train.csv", "sentence,label,score\n" + "".join(
        f"{t},{lab},{'NA' if i % 4 == 0 else i / 2}\n" for i, (t, lab) in enumerate(zip(texts, labels, strict=True))))
    frame = read_table(path, "data.train")
    assert frame["label"].tolist() == labels and frame["sentence"].tolist() == texts
    # a column of numbers reads its missing marks as missing, and stays numbers
    assert frame["score"].isna().tolist() == [i % 4 == 0 for i in range(12)]
    assert frame["score"].dropna().tolist() == [i / 2 for i in range(12) if i % 4]
    raw = load(DataConfig(train=str(path), validation=str(path), text_columns=["sentence"]), CLS, seed=0)
    assert raw.label_names == ["NA", "None", "anger", "joy"]
    # an empty field is missing, as before
    gaps = write(tmp_path / "gaps.tsv", "sentence\tlabel\nfine\t\nok\tpos\n")
    assert pd.isna(read_table(gaps, "data.train")["label"][0])


def test_blank_rows_and_empty_columns_of_a_spreadsheet_export_are_no_data(tmp_path):
    """Excel saves cells a user once touched: ',,' rows at the end and empty columns under empty
    header cells. The rows failed the study on 'text is empty', the columns on a header that named
    '' twice."""
    body = [f"{s},{lab},,\n" for s, lab in zip(SENTENCES, LABELS, strict=True)]
    path = write(tmp_path / "train.csv", "sentence,label,,\n" + "".join(body[:5]) + ",,,\n" + "".join(body[5:]) + ",,,\n,,,\n")
    assert reads_as(path) == (["sentence", "label"], [[s, lab] for s, lab in zip(SENTENCES, LABELS, strict=True)])
    raw = load(DataConfig(train=str(path), text_columns=["sentence"]), CLS, seed=0)
    assert sum(raw.sizes.values()) == 12
    # a column with an empty header cell that holds values (a saved index) is data, and kept
    indexed = write(tmp_path / "indexed.csv", ",sentence,label\n0,good,pos\n1,bad,neg\n")
    assert reads_as(indexed)[0] == ["Unnamed: 0", "sentence", "label"]
    # a row with some fields empty is an example, and its empty text still an error
    gap = write(tmp_path / "gap.csv", "sentence,label\n" + "".join(f"{s},{lab}\n" for s, lab in zip(SENTENCES, LABELS, strict=True)) + ",pos\n")
    with pytest.raises(DataError, match=r"'sentence' is empty in train row"):
        load(DataConfig(train=str(gap), validation=str(gap), text_columns=["sentence"]), CLS, seed=0)


def test_blank_rows_of_a_workbook_are_no_data(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    from openpyxl.styles import Font

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["sentence", "label"])
    sheet.append(["good", "pos"])
    sheet.append([None, None])
    sheet.append(["bad", "neg"])
    for row in (1, 3):  # a formatted empty column beside them
        sheet.cell(row=row, column=4).font = Font(bold=True)
    book.save(tmp_path / "train.xlsx")
    assert reads_as(tmp_path / "train.xlsx") == (["sentence", "label"], [["good", "pos"], ["bad", "neg"]])


@pytest.mark.parametrize("labels", [LABELS, [0, 1] * 6])
def test_a_header_repeated_by_joining_files_is_no_example(tmp_path, labels):
    """``cat a.csv b.csv > train.csv`` repeats the header: its 'label' repeated a value of the label
    column below the first row, so the first row read as data, and 'label' became a class."""
    head = "sentence,label\n"
    body = [f"{s},{lab}\n" for s, lab in zip(SENTENCES, labels, strict=True)]
    path = write(tmp_path / "train.csv", head + "".join(body[:6]) + head + "".join(body[6:]) + head.replace("\n", "\r\n"))
    assert detect_header(path) is True
    assert reads_as(path) == (["sentence", "label"], [[s, lab] for s, lab in zip(SENTENCES, labels, strict=True)])
    # a headerless file whose first example recurs keeps both as examples
    headerless = write(tmp_path / "rows.csv", "".join(body) + body[0])
    assert detect_header(headerless) is False and len(read_table(headerless, "data.train")) == 13


# --------------------------------------------------------------------------- datasets' save_to_disk


def save_dataset_dict(folder: Path, splits: dict[str, int]) -> Path:
    """A DatasetDict as ``datasets``' ``save_to_disk`` writes it: a folder per split, class labels as ids."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"]),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER"]))})
    datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"sentence": [f"{split} review {i}" for i in range(n)],
                                           "label": [i % 2 for i in range(n)],
                                           "tags": [[0, 1, 0]] * n}, features=features)
        for split, n in splits.items()}).save_to_disk(str(folder))
    return folder


def test_a_split_saved_by_datasets_reads_with_its_class_names(tmp_path):
    """``dataset.save_to_disk(folder)`` is how many users keep their data: the folder was refused as
    'a folder; expected one data file'. Class labels read as their names, as the dataset says them."""
    folder = save_dataset_dict(tmp_path / "reviews", {"train": 12, "test": 4})
    frame = read_table(folder / "train", "data.train")
    assert list(frame.columns) == ["sentence", "label", "tags"]
    assert frame["label"].tolist() == ["negative", "positive"] * 6 and frame["tags"][0] == ["O", "B-PER", "O"]
    assert detect_header(folder / "train") is True
    raw = load(DataConfig(train=str(folder / "train"), test=str(folder / "test"), text_columns=["sentence"]), CLS, seed=0)
    assert raw.label_names == ["negative", "positive"] and raw.sizes["test"] == 4
    # relative to the config's folder, as a file is
    assert load(DataConfig(train="reviews/train", text_columns=["sentence"]), CLS, seed=0, base_dir=tmp_path).sizes


@pytest.mark.parametrize("name", ["train.feather", "train.arrow"])
def test_arrow_files_read_as_parquet_does(tmp_path, name):
    """Feather (pandas' to_feather) and the Arrow stream ``datasets`` caches each split in (a .arrow
    file in ~/.cache/huggingface/datasets): both were refused as unknown formats."""
    import pyarrow as pa
    import pyarrow.feather as feather

    frame = pd.DataFrame({"sentence": SENTENCES, "label": LABELS})
    path = tmp_path / name
    if name.endswith(".feather"):
        feather.write_feather(frame, path)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as stream:
            stream.write_table(table)
    assert reads_as(path) == (["sentence", "label"], rows(frame)) and detect_header(path) is True
    # the file datasets caches a split in: its class labels by their names, as from the Hub
    (cached,) = save_dataset_dict(tmp_path / "saved", {"train": 4}).glob("train/*.arrow")
    assert read_table(cached, "data.train")["label"].tolist() == ["negative", "positive"] * 2
    with pytest.raises(DataError, match=r"^data\.train: cannot read '.*not\.arrow': "):
        read_table(write(tmp_path / "not.arrow", "sentence,label\n"), "data.train")


def test_a_saved_dataset_dict_is_named_by_its_splits(tmp_path):
    folder = save_dataset_dict(tmp_path / "reviews", {"train": 12, "test": 4})
    with pytest.raises(DataError) as excinfo:
        load(DataConfig(train=str(folder), text_columns=["sentence"]), CLS, seed=0)
    assert message(excinfo) == (f"data.train: {str(folder)!r} is a saved DatasetDict (splits: train, test); expected "
                                f"one split's folder, such as {str(folder / 'train')!r}")


# --------------------------------------------------------------------------- Excel


def test_an_excel_workbook_reads_its_first_sheet(tmp_path):
    """Annotators hand labels over as .xlsx: it was refused as an unknown format."""
    path = tmp_path / "train.xlsx"
    frame = pd.DataFrame({"sentence": SENTENCES[:4] + ["None"], "label": ["pos", "neg", "NA", "pos", "neg"],
                          "score": [0.5, None, 1.5, 2.0, 3.0]})
    with pd.ExcelWriter(path) as book:
        frame.to_excel(book, sheet_name="labels", index=False)
        pd.DataFrame({"note": ["a second sheet is not read"]}).to_excel(book, sheet_name="notes", index=False)
    read = read_table(path, "data.train")
    assert list(read.columns) == ["sentence", "label", "score"]
    assert read["sentence"].tolist() == SENTENCES[:4] + ["None"] and read["label"].tolist() == frame["label"].tolist()
    assert read["score"].isna().tolist() == [False, True, False, False, False]
    assert detect_header(path) is True
    raw = load(DataConfig(train=str(path), validation=str(path), text_columns=["sentence"]), CLS, seed=0)
    assert raw.label_names == ["NA", "neg", "pos"]
    # a sheet without a row of names, and a file that is not a workbook
    pd.DataFrame([["good one", "pos"], ["bad one", "neg"]]).to_excel(tmp_path / "rows.xlsx", header=False, index=False)
    assert reads_as(tmp_path / "rows.xlsx", header=False) == (["0", "1"], [["good one", "pos"], ["bad one", "neg"]])
    with pytest.raises(DataError, match=r"^data\.train: cannot read '.*fake\.xlsx': "):
        read_table(write(tmp_path / "fake.xlsx", "sentence,label\n"), "data.train")


def test_a_sheet_of_instructions_before_the_data_is_skipped(tmp_path):
    """Annotation workbooks often open with a sheet of guidelines: it was read as the data, and
    zero-config found no label in its one column."""
    path = tmp_path / "labels.xlsx"
    with pd.ExcelWriter(path) as book:
        pd.DataFrame({"How to label": ["Read each review.", "Mark it pos or neg."]}).to_excel(
            book, sheet_name="Instructions", index=False)
        pd.DataFrame({"sentence": SENTENCES, "label": LABELS}).to_excel(book, sheet_name="Data", index=False)
    assert reads_as(path) == (["sentence", "label"], [[t, lab] for t, lab in zip(SENTENCES, LABELS, strict=True)])


def test_an_excel_workbook_without_openpyxl_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "train.xlsx"
    pd.DataFrame({"sentence": ["a"], "label": ["pos"]}).to_excel(path, index=False)
    monkeypatch.setitem(__import__("sys").modules, "openpyxl", None)  # as where the extra is not installed
    with pytest.raises(DataError, match=r"^data\.train: reading 'train\.xlsx' needs the 'openpyxl' package "
                                        r"\(pip install 'autopeft\[excel\]'\), or save the sheet as csv$"):
        read_table(path, "data.train")


def test_a_hub_dataset_where_the_hub_does_not_answer_is_read_from_the_cache_alone(hub_at, tmp_path):
    """Without network, datasets retried the Hub for about 25 s ("Retrying in 8s" lines) before it
    looked in its cache; now one probe decides, and the cache is read at once, as with
    HF_HUB_OFFLINE=1. A dataset the cache lacks says why."""
    from autopeft.config import HubSource
    from autopeft.data import read_hub_split
    from tests.cli.test_bad_input import closed_port

    port = closed_port()
    hub_at(f"http://127.0.0.1:{port}", tmp_path / "cache")
    with pytest.raises(DataError) as excinfo:
        read_hub_split(HubSource(name="org/reviews"), "train")
    assert message(excinfo).startswith(f"data.hub: cannot load 'org/reviews' split 'train' (the Hub does not answer "
                                       f"at http://127.0.0.1:{port}: ")
    assert "read the cache alone" in message(excinfo)
    # a dataset folder on this machine is no Hub name: no probe stands in its way
    folder = save_dataset_dict(tmp_path / "reviews", {"train": 4})
    assert len(read_hub_split(HubSource(name=str(folder)), "train")) == 4
