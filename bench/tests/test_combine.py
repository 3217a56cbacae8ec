"""bench.combine: one table from several benchmark runs, only when they measured the same thing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.combine import CombineError, combine, main, parse_methods, parse_seeds

SETTINGS = {"model": "minilm", "max_length": 64, "trial_steps": 100, "budget_steps": 800, "eval_interval": 25,
            "max_train": 8000, "max_validation": 2000, "top_up_validation": True, "max_test": None,
            "final_steps": 400}
SIZES = {"sst2": {"train": 8000, "validation": 2000, "test": 872}}


def _record(method: str, seed: int, test: float) -> dict:
    return {"method": method, "task": "sst2", "seed": seed, "metric": "accuracy", "test_metric": test,
            "val_metric": test, "trainable_params": 1000, "total_steps": 800, "wall_time_s": 10.0, "trials": []}


def _results(path: Path, records: list[dict], *, partial: bool = False, sizes: dict | None = None,
             **settings) -> Path:
    meta = {"date": "2026-11-28", "command": f"python -m bench.run --name {path.stem}",
            "settings": {**SETTINGS, **settings}, "split_sizes": sizes or SIZES}
    path.write_text(json.dumps({"name": path.stem, "partial": partial, "meta": meta, "records": records}))
    return path


def test_methods_from_two_runs_are_paired_by_seed_and_each_names_its_source(tmp_path):
    new = _results(tmp_path / "new.json", [_record("autopeft-lora", s, 0.85) for s in range(3)]
                   + [_record("random-final", s, 0.80) for s in range(3)])
    old = _results(tmp_path / "old.json", [_record("hf-optuna", s, 0.78 + 0.1 * (s == 2)) for s in range(3)]
                   + [_record("random-final", s, 0.70) for s in range(3)])
    out = tmp_path / "out"
    assert main(["--name", "both", "--out", str(out), "--take", str(new), "autopeft-lora,random-final",
                 "--take", str(old), "hf-optuna,random-final=random-final-before"]) == 0
    (md,) = out.glob("*-both.md")
    result = json.loads(md.with_suffix(".json").read_text())
    assert set(result["summary"]["sst2"]) == {"autopeft-lora", "random-final", "hf-optuna", "random-final-before"}
    pairs = result["paired"]["sst2"]
    assert (pairs["autopeft-lora vs hf-optuna"]["ahead"], pairs["autopeft-lora vs hf-optuna"]["behind"]) == (2, 1)
    assert pairs["autopeft-lora vs random-final"]["ahead"] == 3
    text = md.read_text()
    assert "| hf-optuna | 0, 1, 2 | `" + str(old) in text
    assert "| random-final-before | 0, 1, 2 | `" + str(old) in text
    assert {r["source"] for r in result["records"] if r["method"] == "autopeft-lora"} == {str(new)}


@pytest.mark.parametrize("change, says", [
    ({"settings": {"budget_steps": 400}}, "budget_steps is 400"),
    ({"sizes": {"sst2": {"train": 8000, "validation": 500, "test": 872}}}, "sst2's splits are"),
    ({"partial": True}, "a partial run"),
])
def test_runs_that_measured_different_things_are_not_combined(tmp_path, change, says):
    first = _results(tmp_path / "a.json", [_record("autopeft-lora", 0, 0.85)])
    second = _results(tmp_path / "b.json", [_record("default", 0, 0.5)], partial=change.get("partial", False),
                      sizes=change.get("sizes"), **change.get("settings", {}))
    with pytest.raises(CombineError, match=says):
        combine([(first, {"autopeft-lora": "autopeft-lora"}), (second, {"default": "default"})])


def test_a_run_cut_short_gives_the_methods_it_finished_and_no_other(tmp_path):
    cut = _results(tmp_path / "cut.json", [_record("autopeft-lora", 3, 0.85), _record("random-final", 3, 0.8)],
                   partial=True, tasks=["sst2"], seeds=1, first_seed=3)
    records, _, _ = combine([(cut, {"autopeft-lora": "autopeft-lora", "random-final": "random-final"})])
    assert {(r["method"], r["seed"]) for r in records} == {("autopeft-lora", 3), ("random-final", 3)}
    with pytest.raises(CombineError, match="a partial run .* without hf-optuna on sst2 seed 3"):
        combine([(cut, {"hf-optuna": "hf-optuna"})])


def test_the_same_method_and_seed_taken_twice_is_an_error(tmp_path):
    a = _results(tmp_path / "a.json", [_record("default", 0, 0.5)])
    b = _results(tmp_path / "b.json", [_record("default", 0, 0.5)])
    with pytest.raises(CombineError, match="default on sst2 seed 0 is also taken from"):
        combine([(a, {"default": "default"}), (b, {"default": "default"})])


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    a = _results(tmp_path / "a.json", [_record("default", 0, 0.5)])
    out = tmp_path / "out"
    for argv in (["--take", str(a), "grid"], ["--take", str(tmp_path / "missing.json"), "default"],
                 ["--take", str(a), "default=,"], ["--take", str(a), "default", "--seeds", "0-x"]):
        with pytest.raises(SystemExit) as exit_:
            main(["--name", "x", "--out", str(out), *argv])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("bench.combine: ") and "\n" not in err
    assert not out.exists()


def test_methods_parse_with_renames():
    assert parse_methods("a, b=c,") == {"a": "a", "b": "c"}
    with pytest.raises(CombineError):
        parse_methods(" , ")


def test_seeds_keep_every_method_to_the_same_seeds(tmp_path):
    # a search rerun on 4 seeds beside baselines run on 5: --seeds 0-3 compares them on those 4
    new = _results(tmp_path / "new.json", [_record("autopeft-lora", s, 0.85) for s in range(4)])
    old = _results(tmp_path / "old.json", [_record("hf-optuna", s, 0.80 + 0.1 * (s == 4)) for s in range(5)])
    out = tmp_path / "out"
    assert main(["--name", "four", "--out", str(out), "--seeds", "0-3", "--take", str(new), "autopeft-lora",
                 "--take", str(old), "hf-optuna"]) == 0
    result = json.loads(next(out.glob("*-four.json")).read_text())
    assert result["summary"]["sst2"]["hf-optuna"]["seeds"] == [0, 1, 2, 3]
    assert result["summary"]["sst2"]["hf-optuna"]["test_metric"]["max"] == pytest.approx(0.80)
    assert "| hf-optuna | 0, 1, 2, 3 | `" in (out / next(out.glob("*-four.md")).name).read_text()
    assert parse_seeds("0-2,4") == {0, 1, 2, 4} and parse_seeds("3") == {3}
    with pytest.raises(CombineError, match="--seeds"):
        parse_seeds("a")
