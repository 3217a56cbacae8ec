"""The portfolio procedure (bench/portfolio.py) without training: normalisation against the trivial
level, the greedy cover on hand-made score tables, the space fill, and resuming from the cache
with a fake trainer."""

from __future__ import annotations

import json
import math

import pytest

from bench.portfolio import (
    Budget,
    Candidate,
    TaskData,
    gaps,
    greedy,
    measure,
    parse_draws,
    respell,
    select,
    trivial_level,
)


def test_gap_is_relative_to_the_span_between_the_best_and_the_trivial_level():
    gap, informative = gaps({"a": {"x": 0.9, "y": 0.7, "z": 0.4, "f": float("nan")}}, {"a": 0.5})
    assert informative == ["a"]
    assert gap["a"]["x"] == 0.0
    assert gap["a"]["y"] == pytest.approx(0.5)      # half-way between the best (0.9) and trivial (0.5)
    assert gap["a"]["z"] == pytest.approx(1.25)     # worse than the constant predictor: above 1
    assert gap["a"]["f"] == math.inf                # a failed run


def test_a_task_no_candidate_learns_is_left_out_of_the_coverage():
    gap, informative = gaps({"learned": {"x": 0.8, "y": 0.6}, "hard": {"x": 0.5, "y": 0.5}},
                            {"learned": 0.5, "hard": 0.5})
    assert informative == ["learned"]
    assert all(math.isnan(v) for v in gap["hard"].values())


def test_trivial_level_is_the_kinds_metric_on_a_constant_prediction():
    # the training split's majority class (1), scored on validation labels of which 2 of 5 are 1
    assert trivial_level("sequence_classification", "accuracy", [1, 1, 0], [0, 1, 0, 1, 0], 2) == pytest.approx(0.4)
    # regression: the training mean, whose correlation with anything is 0
    assert trivial_level("regression", "pearson", [1.0, 2.0, 3.0], [0.5, 1.5, 2.5], 0) == 0.0


#: task -> candidate -> gap: "solo" is the best on t1 only and poor elsewhere; "broad" is close on
#: three tasks; "pair" covers t4 and t1; "near" is a slightly worse copy of "broad".
TABLE = {
    "t1": {"solo": 0.0, "broad": 0.05, "pair": 0.1, "near": 0.08},
    "t2": {"solo": 0.9, "broad": 0.0, "pair": 0.5, "near": 0.05},
    "t3": {"solo": 0.8, "broad": 0.1, "pair": 0.6, "near": 0.12},
    "t4": {"solo": 0.7, "broad": 0.4, "pair": 0.0, "near": 0.5},
}


def test_greedy_covers_the_most_tasks_first_and_no_task_decides_alone():
    chosen, reasons = greedy(TABLE, list(TABLE), delta=0.15, k=2)
    assert chosen == ["broad", "pair"]  # broad: t1-t3, then pair: the t4 left (and t1)
    assert "solo" not in chosen         # best on t1, within delta nowhere else
    assert "round 1" in reasons["broad"] and "t4" in reasons["pair"]


def test_once_every_task_is_covered_a_new_round_covers_them_again():
    chosen, reasons = greedy(TABLE, list(TABLE), delta=0.15, k=4)
    assert chosen == ["broad", "pair", "near"]  # solo is never eligible, whatever k
    assert reasons["near"].startswith("round 2")


def test_ties_go_to_the_lowest_mean_gap_then_the_name_and_the_order_is_deterministic():
    table = {"t1": {"b": 0.1, "a": 0.1, "c": 0.0}, "t2": {"b": 0.1, "a": 0.1, "c": 0.05}}
    assert greedy(table, ["t1", "t2"], delta=0.15, k=3)[0] == ["c", "a", "b"]
    assert greedy(dict(reversed(list(table.items()))), ["t2", "t1"], delta=0.15, k=3)[0] == ["c", "a", "b"]


def test_with_one_informative_task_an_entry_needs_only_that_one():
    chosen, _ = greedy({"t1": {"a": 0.0, "b": 0.5}}, ["t1"], delta=0.15, k=2)
    assert chosen == ["a"]


def test_select_fills_a_space_none_of_the_cover_fits_with_an_eligible_candidate():
    from autopeft.space import load_space

    pool = [Candidate("wide", {"adapter": "lora", "learning_rate": 5e-3}, "x"),
            Candidate("ia3", {"adapter": "ia3", "learning_rate": 1e-2}, "x"),
            Candidate("ia3-solo", {"adapter": "ia3", "learning_rate": 3e-2}, "x")]
    scores = {"t1": {"wide": 0.9, "ia3": 0.85, "ia3-solo": 0.9}, "t2": {"wide": 0.8, "ia3": 0.78, "ia3-solo": 0.6}}
    spaces = {"lora-only": load_space({"adapters": {"lora": {}}}),
              "ia3-only": load_space({"adapters": {"ia3": {}}, "learning_rate": {"low": 1e-3, "high": 5e-2, "log": True}}),
              "dora-only": load_space({"adapters": {"dora": {}}})}
    sel = select(scores, {"t1": 0.5, "t2": 0.5}, pool, delta=0.15, k=1, spaces=spaces)
    assert sel.entries == ["wide", "ia3"]  # ia3-solo is best on t1 alone: not eligible
    assert "fills ia3-only" in sel.reasons["ia3"]
    assert "dora-only" in sel.unfilled


def test_parse_draws():
    assert parse_draws("all-adapters=4, lora-family=0") == [("all-adapters", 4), ("lora-family", 0)]
    with pytest.raises(ValueError, match="SPACE=N"):
        parse_draws("all-adapters")


def _task(name: str) -> TaskData:
    return TaskData(name=name, files=None, fingerprint=f"fp-{name}", trivial=0.5, metric="accuracy")


def test_measure_resumes_from_the_cache_and_retrains_only_what_changed(tmp_path):
    calls: list[tuple[str, str]] = []

    def fake(task, candidate, budget, work):
        calls.append((task.name, candidate.name))
        if candidate.name == "broken":
            raise RuntimeError("no")
        return {"metric": 0.6 + 0.1 * len(candidate.name) / 10, "trainable_params": 7}

    tasks = [_task("a"), _task("b")]
    pool = [Candidate("c1", {"adapter": "lora", "learning_rate": 1e-3}, "x"),
            Candidate("broken", {"adapter": "ia3"}, "x")]
    cache = tmp_path / "cache"
    first = measure(tasks, pool, Budget(steps=5), cache, tmp_path, trainer=fake, log=lambda _: None)
    assert calls == [("a", "c1"), ("b", "c1"), ("a", "broken"), ("b", "broken")]  # candidates outer: whole columns
    assert math.isnan(first["a"]["broken"]) and first["a"]["c1"] == pytest.approx(0.62)
    record = json.loads((cache / "a--c1.json").read_text())
    assert record["budget"]["steps"] == 5 and record["data_fingerprint"] == "fp-a" and record["trainable_params"] == 7

    calls.clear()  # a rerun reuses every result, failed ones too
    assert measure(tasks, pool, Budget(steps=5), cache, tmp_path, trainer=fake, log=lambda _: None) == {
        "a": {"c1": pytest.approx(0.62), "broken": pytest.approx(first["a"]["broken"], nan_ok=True)},
        "b": {"c1": pytest.approx(0.62), "broken": pytest.approx(first["b"]["broken"], nan_ok=True)}}
    assert calls == []

    (cache / "b--c1.json").unlink()  # an interrupted run: only the missing result is trained
    measure(tasks, pool, Budget(steps=5), cache, tmp_path, trainer=fake, log=lambda _: None)
    assert calls == [("b", "c1")]

    calls.clear()  # another budget, or other data, is another measurement
    measure([_task("a")], pool[:1], Budget(steps=6), cache, tmp_path, trainer=fake, log=lambda _: None)
    measure([TaskData("a", None, "changed", 0.5, "accuracy")], pool[:1], Budget(steps=6), cache, tmp_path,
            trainer=fake, log=lambda _: None)
    assert calls == [("a", "c1"), ("a", "c1")]


TOP = {"adapter": "lora", "lora.r": 16, "placement.layers": "last-4", "placement.roles": "query,key,value,attention_output",
       "learning_rate": 2e-3}


def _space(layers, roles, high=1e-2):
    from autopeft.space import load_space

    return load_space({"adapters": {"lora": {"r": {"choices": [8, 16]}}},
                       "placement": {"layers": {"choices": layers}, "roles": {"choices": roles}},
                       "learning_rate": {"low": 1e-4, "high": high, "log": True}})


def test_respell_moves_a_config_to_the_nearest_point_of_a_space_or_gives_up():
    assert respell(TOP, _space(["all", "last-2"], ["attention", "all-linear"])) == {
        **TOP, "placement.layers": "last-2", "placement.roles": "attention"}  # the same modules on BERT
    assert respell(TOP, _space(["all", "last-4"], ["all-linear", ["query", "key", "value", "attention_output"]],
                               high=1e-3))["learning_rate"] == 1e-3  # clipped into the range
    assert respell(TOP, _space(["all", "every-2"], ["attention"])) is None   # no last-M to move to
    assert respell(TOP, _space(["last-4"], [["query", "value"]])) is None    # other roles: another config


@pytest.mark.parametrize(("variant_score", "kept"), [(0.88, True), (0.55, False)])
def test_a_space_the_cover_misses_gets_a_measured_variant_only_if_it_is_close_enough(variant_score, kept):
    pool = [Candidate("top", TOP, "x"), Candidate("other", {**TOP, "learning_rate": 1e-4}, "x")]
    scores = {"t1": {"top": 0.9, "other": 0.6}, "t2": {"top": 0.8, "other": 0.55}}
    asked = []

    def fake(found):
        asked.extend(c.name for c in found)
        return {t: {c.name: variant_score for c in found} for t in scores}

    spaces = {"fits": _space(["last-4"], [["query", "key", "value", "attention_output"]]),
              "spelled": _space(["all", "last-2"], ["attention"])}
    sel = select(scores, {"t1": 0.5, "t2": 0.5}, pool, delta=0.15, k=2, spaces=spaces, measure_variants=fake)
    assert asked == ["top@spelled"]  # only the space the cover does not fit, only its chosen entry
    if kept:
        assert sel.entries == ["top", "top@spelled"] and sel.variant_of == {"top@spelled": "top"}
    else:
        assert sel.entries == ["top"] and "spelled" in sel.unfilled
