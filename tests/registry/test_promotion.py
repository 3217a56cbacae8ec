"""The promotion gates as a pure decision: measurements in, pass/fail with both numbers out."""

from __future__ import annotations

import pandas as pd
import pytest

from autopeft.config import PromotionConfig
from autopeft.errors import UserInputError
from autopeft.registry.promotion import Measurement, comparable, decide, read_test_data


def m(version: str, value: float | None, *, metric: str = "accuracy", mode: str = "max", fp: str = "t1",
      share: float | None = 0.01, latency: float | None = None) -> Measurement:
    return Measurement(version=version, metric=metric, mode=mode, value=value, test_fingerprint=fp,
                       trainable_share=share, latency_ms=latency)


def failed(results):
    return [r.gate for r in results if not r.passed]


def test_first_promotion_has_no_comparison_and_passes():
    assert decide(m("1", 0.7), None, PromotionConfig()) == []


def test_worse_candidate_is_refused_with_both_numbers():
    [result] = decide(m("2", 0.61), m("1", 0.75), PromotionConfig())
    assert not result.passed and result.gate == "not_worse"
    assert "0.6100" in result.message and "0.7500" in result.message and "version 1" in result.message
    assert (result.candidate, result.reference) == (0.61, 0.75)


@pytest.mark.parametrize("candidate,holder,ok", [(0.75, 0.75, True), (0.76, 0.75, True), (0.7499, 0.75, False)])
def test_equal_is_not_worse_when_maximising(candidate, holder, ok):
    assert decide(m("2", candidate), m("1", holder), PromotionConfig())[0].passed is ok


@pytest.mark.parametrize("candidate,holder,ok", [(0.20, 0.25, True), (0.25, 0.25, True), (0.30, 0.25, False)])
def test_lower_is_better_when_minimising(candidate, holder, ok):
    result = decide(m("2", candidate, metric="mse", mode="min"), m("1", holder, metric="mse", mode="min"),
                    PromotionConfig())[0]
    assert result.passed is ok


def test_thresholds_each_report_their_numbers():
    config = PromotionConfig(min_metric=0.8, max_trainable_share=0.005, max_latency_ms=50)
    results = decide(m("2", 0.79, share=0.01, latency=80.0), None, config)
    assert failed(results) == ["min_metric", "max_trainable_share", "max_latency_ms"]
    text = " ".join(r.message for r in results)
    assert "0.7900" in text and "0.8000" in text and "1.0000%" in text and "80.0 ms" in text


def test_thresholds_pass_when_met():
    config = PromotionConfig(min_metric=0.7, max_trainable_share=0.02, max_latency_ms=50)
    assert failed(decide(m("2", 0.8, share=0.01, latency=10.0), m("1", 0.7), config)) == []


def test_min_metric_for_a_minimised_metric_is_a_ceiling():
    config = PromotionConfig(min_metric=0.3)
    assert failed(decide(m("2", 0.2, metric="mse", mode="min"), None, config)) == []
    assert failed(decide(m("2", 0.4, metric="mse", mode="min"), None, config)) == ["min_metric"]


def test_unknown_latency_or_metric_fails_rather_than_passes():
    results = decide(m("2", None, latency=None), None, PromotionConfig(min_metric=0.5, max_latency_ms=10))
    assert failed(results) == ["min_metric", "max_latency_ms"]


def test_comparable_only_on_the_same_test_set_and_metric():
    assert comparable(m("2", 0.7), m("1", 0.8)) is None
    assert "different test sets" in comparable(m("2", 0.7, fp="a"), m("1", 0.8, fp="b"))
    assert "different test sets" in comparable(m("2", 0.7, fp=""), m("1", 0.8, fp=""))
    assert "different metrics" in comparable(m("2", 0.7), m("1", 0.8, metric="f1"))
    assert "no recorded test" in comparable(m("2", None), m("1", 0.8))


def test_config_rejects_nonsense_thresholds():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        PromotionConfig(max_trainable_share=1.5)
    with pytest.raises(ValidationError):
        PromotionConfig(min_accuracy=0.5)  # unknown key: a typo must not silently disable a gate


def test_test_data_fingerprint_matches_the_search(tmp_path):
    """The same file gives the fingerprint the search recorded (same columns, same hash)."""
    from autopeft.data import RawData, split_fingerprint

    frame = pd.DataFrame({"sentence": ["good", "bad", "fine"], "label": [1, 0, 1], "extra": [0, 0, 0]})
    path = tmp_path / "test.csv"
    frame.to_csv(path, index=False)
    meta = {"text_columns": ["sentence"], "label_column": "label", "label_names": ["0", "1"]}
    loaded, fp = read_test_data(path, meta)
    assert list(loaded.columns) == ["sentence", "label"]
    raw = RawData(frames={"test": pd.read_csv(path)[["sentence", "label"]]}, label_names=["0", "1"],
                  text_columns=["sentence"], label_column="label")
    assert fp == split_fingerprint(raw, "test")
    with pytest.raises(UserInputError, match="column 'y' is missing"):
        read_test_data(path, {**meta, "label_column": "y"})
    # the same classes written as floats (1.0), as the search reads them
    frame.assign(label=frame["label"].astype(float)).to_csv(tmp_path / "floats.csv", index=False)
    assert read_test_data(tmp_path / "floats.csv", meta)[1] == fp
    # classes spelled with spaces around them, as the search reads them: without
    named = frame.assign(label=frame["label"].map({0: "neg", 1: "pos"}))
    named.to_csv(tmp_path / "named.csv", index=False)
    named.assign(label=named["label"] + " ").to_csv(tmp_path / "spaced.csv", index=False)
    named_meta = {**meta, "label_names": ["neg", "pos"]}
    assert read_test_data(tmp_path / "spaced.csv", named_meta)[1] == read_test_data(tmp_path / "named.csv", named_meta)[1]
    # the same data behind a URL (fetched once), and a saved dataset's folder, are the same test set
    assert read_test_data(path.as_uri(), meta)[1] == fp
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(tmp_path / "saved"))
    assert read_test_data(tmp_path / "saved", meta)[1] == fp
    with pytest.raises(UserInputError, match=r"^--test-data: column 'y' is missing in file://"):
        read_test_data(path.as_uri(), {**meta, "label_column": "y"})


def test_test_data_in_another_encoding_is_read_in_the_one_given(tmp_path):
    """A test file saved by Excel on Windows (cp1252): refused with the flag that names it, and read
    with --encoding as the same test set as its UTF-8 twin."""
    frame = pd.DataFrame({"sentence": ["caf\u00e9 cr\u00e8me", "na\u00efve", "fine"], "label": [1, 0, 1]})
    meta = {"text_columns": ["sentence"], "label_column": "label", "label_names": ["0", "1"]}
    utf8, ansi = tmp_path / "test.csv", tmp_path / "ansi.csv"
    frame.to_csv(utf8, index=False)
    frame.to_csv(ansi, index=False, encoding="cp1252")
    with pytest.raises(UserInputError, match=r"is not UTF-8 text .*name its encoding with --encoding"):
        read_test_data(ansi, meta)
    loaded, fingerprint = read_test_data(ansi, meta, "cp1252")
    assert loaded["sentence"].tolist() == frame["sentence"].tolist()
    assert fingerprint == read_test_data(utf8, meta)[1]
