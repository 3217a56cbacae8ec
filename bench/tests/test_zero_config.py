"""The zero-config bench method (``autopeft-zero-config``): what it hands ``autopeft.search``, its
time budget, the per-seed comparison with autopeft-lora in the report, and one real run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

#: A short time a zero-config study holds on 2 CPU cores shared with other work: the product asks
#: for about 2.6 min for its minimal study (4 trials of 40 steps) when the probe meets a busy machine,
#: so 150s (tests/integration/test_zero_config.py, on a quiet machine) is refused about as often.
TIME_S = 180


def _context(tmp_path: Path, **settings):
    from bench.data import TaskFiles
    from bench.methods import Context

    splits = {"train": ["a gorgeous film", "drags"], "validation": ["a warm and witty comedy"],
              "test": ["a film that never settles down", "null"]}
    paths = {}
    for split, rows in splits.items():
        paths[split] = tmp_path / f"{split}.parquet"
        pd.DataFrame({"sentence": rows, "label": [i % 2 for i in range(len(rows))]}).to_parquet(paths[split])
    files = TaskFiles(task="sst2", train=paths["train"], validation=paths["validation"], test=paths["test"],
                      text_columns=["sentence"], label_column="label", sizes={k: len(v) for k, v in splits.items()})
    return Context(files=files, seed=1, workdir=tmp_path / "work", **settings)


def test_its_train_file_holds_the_train_and_validation_rows_the_other_methods_use(tmp_path: Path) -> None:
    from bench.methods import write_zero_config_data

    train, test, missing = write_zero_config_data(_context(tmp_path))
    assert (train.suffix, test.suffix) == (".csv", ".csv")
    assert pd.read_csv(train).to_dict("list") == {
        "sentence": ["a gorgeous film", "drags", "a warm and witty comedy"], "label": [0, 1, 0]}
    assert pd.read_csv(test, keep_default_na=False)["sentence"].tolist() == ["a film that never settles down", "null"]
    assert missing == 1  # "null" reads back as a missing value from a CSV: counted, not hidden


def test_its_time_is_autopeft_lora_wall_time_on_the_same_seed_else_the_setting(tmp_path: Path) -> None:
    from bench.methods import zero_config_budget

    ctx = _context(tmp_path, zero_config_time="12m")
    assert zero_config_budget(ctx) == (720.0, "zero_config_time 12m")
    ctx.earlier = {"default": {"wall_time_s": 48.0}, "autopeft-lora": {"wall_time_s": 712.9}}
    assert zero_config_budget(ctx) == (712.0, "autopeft-lora's wall time, seed 1")


def test_a_bad_zero_config_time_is_refused_before_any_run(capsys) -> None:
    from bench.run import parse_args

    assert parse_args(["--methods", "autopeft-zero-config", "--zero-config-time", "90s"])["zero_config_time"] == "90s"
    parse_args(["--zero-config-time", "soon"])  # only checked where the method runs
    with pytest.raises(SystemExit):
        parse_args(["--methods", "autopeft-zero-config", "--zero-config-time", "soon"])
    assert "--zero-config-time: expected a duration" in capsys.readouterr().err


def _rec(method: str, seed: int, test: float, wall: float, **extra) -> dict:
    return {"task": "sst2", "method": method, "seed": seed, "test_metric": test, "val_metric": 0.8,
            "trainable_params": 1, "total_steps": 800, "wall_time_s": wall, "trials": [], **extra}


def _zero(seed: int, test: float, wall: float, budget: float, **extra) -> dict:
    fields = {"time_budget_s": budget, "time_budget_source": f"autopeft-lora's wall time, seed {seed}",
              "plan": {"trials": 10, "max_steps": 120, "final_steps": 360}, "split_sizes": {"test": 872},
              "test_rows": 872, "study_test_metric": test,
              "inferred": {"metric": "accuracy", "space": "lora-family", "max_length": 56}}
    return _rec("autopeft-zero-config", seed, test, wall, **{**fields, **extra})


def test_the_report_compares_zero_config_with_autopeft_lora_seed_by_seed() -> None:
    from bench.report import markdown, summarize, zero_config_comparison

    records = [_rec("autopeft-lora", 0, 0.846, 712.0), _zero(0, 0.836, 700.0, 712.0),
               _rec("autopeft-lora", 1, 0.831, 690.0), _zero(1, 0.841, 740.0, 690.0),
               _zero(2, 0.80, 600.0, 720.0, time_budget_source="zero_config_time 12m")]
    c = zero_config_comparison(records)["sst2"]
    rows = {r["seed"]: r for r in c["per_seed"]}
    assert rows[0]["difference"] == pytest.approx(-0.010) and rows[1]["difference"] == pytest.approx(0.010)
    assert rows[2]["difference"] is None and rows[2]["hand_written_test"] is None  # autopeft-lora did not run
    assert [rows[s]["within_budget"] for s in (0, 1, 2)] == [True, False, True]  # 740 > 690 * 1.05
    assert (c["ahead"], c["level"], c["behind"], c["within_budget"], c["timed"]) == (1, 0, 1, 2, 3)
    meta = {"date": "d", "scale": "s", "command": "c", "split_sizes": {"sst2": {"validation": 2000, "test": 872}}}
    text = markdown({"name": "zero-config", "meta": meta, "summary": summarize(records), "paired": {},
                     "records": records})
    assert "## Zero-config vs autopeft-lora (sst2)" in text
    assert "| 0 | 84.6 | 83.6 | -1.0 | 712 | 700 | 712 | yes (98%) | 10 x 120 + 360 | accuracy, lora-family, 56 |" in text
    assert "| 1 | 83.1 | 84.1 | +1.0 | 690 | 740 | 690 | **no** (107%) |" in text
    assert "| 2 | n/a | 80.0 | n/a | n/a | 600 | 720 (zero_config_time 12m) | yes (83%) |" in text
    assert "Ended within its time +5% in 2 of 3 seeds." in text
    assert "study's own test evaluation" not in text
    # a plan that cut the study's own test split is said, with the study's figure on its rows
    records[3].update(split_sizes={"test": 500}, study_test_metric=0.852)  # seed 1
    text = markdown({"name": "zero-config", "meta": meta, "summary": summarize(records), "paired": {},
                     "records": records})
    assert "on all 872 test examples. The study's own test evaluation used fewer" in text
    assert "seed 1: 85.2% on 500." in text


def test_other_runs_have_no_zero_config_section() -> None:
    from bench.report import markdown, summarize, zero_config_comparison

    records = [_rec("autopeft-lora", 0, 0.846, 712.0), _rec("random", 0, 0.81, 466.0)]
    assert zero_config_comparison(records) == {}
    text = markdown({"name": "x", "meta": {"date": "d", "scale": "s", "command": "c"},
                     "summary": summarize(records), "paired": {}, "records": records})
    assert "Zero-config" not in text


# slow: about 3 minutes; tests/integration/test_zero_config.py runs the same product path in make test
@pytest.mark.integration
@pytest.mark.slow
def test_a_zero_config_search_runs_in_the_bench_within_its_time(tmp_path: Path, glue_dir: Path,
                                                                  minilm_path: str) -> None:
    """A tiny SST-2 slice, the zero-config method alone, the shortest time a study holds: the
    harness records a test metric, the product's plan and choices, and a wall time within the
    time +5%. About 3 minutes on 2 CPU cores (the time, and 15 s to write the bench's splits)."""
    from bench.run import main

    smoke = yaml.safe_load((REPO / "bench" / "configs" / "smoke.yaml").read_text())
    config = tmp_path / "zero-config-smoke.yaml"
    config.write_text(yaml.safe_dump({
        # the shipped task by name: smoke.yaml's path is relative to bench/configs, not to tmp_path
        **smoke, "tasks": ["sst2"], "name": "zero-config-smoke", "methods": ["autopeft-zero-config"], "max_train": 240,
        "max_validation": 60, "max_test": 64, "zero_config_time": f"{TIME_S}s", "overhead": {}}))
    assert main(["--config", str(config), "--glue-dir", str(glue_dir), "--out", str(tmp_path)]) == 0

    [json_path] = tmp_path.glob("*-zero-config-smoke.json")
    result = json.loads(json_path.read_text())
    refused = [f["error"] for f in result["failures"] if "cannot hold a study on this machine" in f["error"]]
    if refused:  # the product's own refusal, in seconds: the probe found this machine too busy for TIME_S now
        pytest.skip(f"the machine is too loaded for a {TIME_S}s study now: {refused[0]}")
    assert result["failures"] == []
    [rec] = result["records"]
    assert rec["method"] == "autopeft-zero-config" and 0.0 <= rec["test_metric"] <= 1.0
    assert rec["time_budget_s"] == TIME_S and rec["time_budget_source"] == f"zero_config_time {TIME_S}s"
    assert rec["wall_time_s"] <= TIME_S * 1.05, f"took {rec['wall_time_s']:.0f}s of {TIME_S}s"
    # the product's own choices, not the bench's (smoke.yaml's max_length 32, 2-step trials)
    assert rec["inferred"]["metric"] == "accuracy" and rec["inferred"]["space"] == "lora-family"
    assert isinstance(rec["inferred"]["max_length"], int)
    assert any(line.startswith("model.max_length = ") for line in rec["lines"])
    assert rec["plan"]["trials"] >= 4 and rec["plan"]["max_steps"] >= 40
    assert any(line.startswith(f"budget.time = {TIME_S}s") for line in rec["lines"])
    # every row of train and validation reached it: it carved its own validation from them
    assert rec["split_sizes"]["train"] + rec["split_sizes"]["validation"] == 240 + 60
    assert rec["split_sizes"]["test"] == rec["test_rows"] == 64
    # the registered adapter loaded by the bench scores what the study's own evaluation scored
    assert rec["test_metric"] == pytest.approx(rec["study_test_metric"], abs=1 / 64 + 1e-9)
    assert rec["total_steps"] == sum(t["steps"] for t in rec["trials"]) + rec["final_steps"]
    text = json_path.with_suffix(".md").read_text()
    assert "## Zero-config vs autopeft-lora (sst2)" in text and "| autopeft-zero-config |" in text
