"""The benchmark harness end to end at smoke scale (bench/configs/smoke.yaml): a real autopeft
search and the default-LoRA baseline on a tiny SST-2 slice; checks what the harness writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.integration
def test_bench_smoke(tmp_path: Path, glue_dir: Path, minilm_path: str) -> None:
    from bench.run import main

    assert main(["--config", str(REPO / "bench" / "configs" / "smoke.yaml"), "--glue-dir", str(glue_dir),
                 "--out", str(tmp_path)]) == 0

    [json_path] = tmp_path.glob("*-smoke.json")
    result = json.loads(json_path.read_text())
    assert {"name", "meta", "summary", "overhead", "records", "failures"} <= set(result)
    assert result["failures"] == []
    assert result["meta"]["scale"] and result["meta"]["command"].startswith("python -m bench.run")
    sst2 = result["summary"]["sst2"]
    assert set(sst2) == {"autopeft-lora", "default"}
    for method, fields in sst2.items():
        for name in ("test_metric", "trainable_params", "total_steps", "wall_time_s"):
            assert set(fields[name]) == {"median", "min", "max", "n"}, (method, name)
            assert fields[name]["n"] == 1 and fields[name]["median"] is not None, (method, name)
        assert 0.0 <= fields["test_metric"]["median"] <= 1.0
    settings = result["meta"]["settings"]
    for rec in result["records"]:  # equal compute: no method used more than the budget
        assert 0 < rec["total_steps"] <= settings["budget_steps"], rec["method"]
    search = next(r for r in result["records"] if r["method"] == "autopeft-lora")
    assert search["trials"] and search["timeline"]["reports"]
    # budget.search_steps (the 4 steps less the final training's 2) holds one 2-step trial, though
    # the config asks for 2 trials: the step budget ended the search
    assert search["config"]["budget"]["search_steps"] == 2 and search["config"]["budget"]["trials"] == 2
    assert len(search["trials"]) == 1
    # its final training's steps count against the budget with the trials'
    assert search["final_steps"] == settings["final_steps"] == 2 and [s for s, _ in search["final_curve"]] == [1, 2]
    assert search["total_steps"] == sum(t["steps"] for t in search["trials"]) + 2
    # the record says which evaluation of it was registered (the trial, same config and steps, ties
    # it, and a tie keeps the final training's) and what the probes found (the smoke runs none)
    assert search["final_kept_step"] in (1, 2) and search["final_training_error"] is None
    # the probes would not fit the search's step budget: the calibration stepped aside, saying why
    assert search["calibration"] == {} and search["calibration_skipped"].startswith("the probes of lora, dora")
    assert all(t["train_time_s"] > 0 for t in search["trials"])
    overhead = result["overhead"]["searches"]["sst2/autopeft-lora/s0"]
    assert overhead["wall_over_in_trial"] > 1.0 and overhead["mlflow_s_per_trial"] is not None
    # start to first step excludes the first report's checkpoint and latency probe, which the
    # older start-up figure counts
    assert 0 < overhead["first_trial_to_first_step_s"] < overhead["first_trial_startup_s"]
    assert overhead["phases_s"]["trials"] < overhead["search_wall_s"]
    # the registered adapter's evaluation counts as evaluation in the orchestration share only
    assert overhead["phases_s"]["final_eval"] > 0
    assert 0 < overhead["orchestration_share"] < overhead["overhead_share"] < 1
    summary = result["overhead"]["all_searches"]
    assert summary["searches"] == 1 and summary["overhead_share"]["median"] == overhead["overhead_share"]
    assert result["overhead"]["step_time"]["bare_loop_step_s"] > 0
    assert result["overhead"]["tokenize_cache"]["cache_hit_s"] >= 0
    # the default bench measures evaluation with and without padding; an import it lost once
    # broke `make bench` at its end
    padding = result["overhead"]["eval_padding"]
    assert padding["examples"] == 16 and min(padding["sorted_dynamic_s"], padding["fixed_max_length_s"]) > 0

    markdown = json_path.with_suffix(".md").read_text()
    assert "| method | test accuracy (%)" in markdown and "| autopeft-lora |" in markdown and "| default |" in markdown
    assert "Scale:" in markdown
    assert json_path.with_suffix(".png").is_file()
