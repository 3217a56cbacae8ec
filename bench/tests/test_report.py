"""The benchmark's per-search overhead measures, from a search record."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.report import overhead_summary, search_overhead


def _record(trials: list[dict], wall: float, final_eval: float) -> dict:
    started = {t["trial_id"]: 100.0 + 10 * i for i, t in enumerate(trials)}
    return {
        "trials": trials,
        "search_wall_time_s": wall,
        "wall_time_s": wall + 1,
        "phase_times_s": {"trials": wall - final_eval - 2, "final_eval": final_eval, "report": 2.0},
        "timeline": {"started": started, "ended": {k: v + 9 for k, v in started.items()}, "reports": []},
    }


def test_shares_count_the_final_evaluation_as_evaluation_only_in_the_orchestration_share():
    trials = [{"trial_id": "a", "train_time_s": 60.0, "eval_time_s": 10.0},
              {"trial_id": "b", "train_time_s": 15.0, "eval_time_s": 5.0}]
    o = search_overhead(_record(trials, wall=100.0, final_eval=5.0))
    assert o is not None
    assert o["in_trial_train_eval_s"] == pytest.approx(90.0)
    assert o["overhead_share"] == pytest.approx(0.10)
    assert o["orchestration_share"] == pytest.approx(0.05)
    assert o["wall_over_in_trial"] == pytest.approx(100.0 / 90.0)


def test_a_final_training_counts_as_training_not_overhead():
    trials = [{"trial_id": "a", "train_time_s": 60.0, "eval_time_s": 10.0}]
    record = _record(trials, wall=100.0, final_eval=5.0)
    record["phase_times_s"]["final_training"] = 20.0
    o = search_overhead(record)
    assert o is not None
    assert o["in_trial_train_eval_s"] == pytest.approx(90.0)
    assert o["overhead_share"] == pytest.approx(0.10)
    # where the record has the final training's own train+eval time, its Ray task's start (the
    # rest of the phase) is overhead
    record["final_train_eval_s"] = 16.0
    o = search_overhead(record)
    assert o is not None
    assert o["in_trial_train_eval_s"] == pytest.approx(86.0)
    assert o["overhead_share"] == pytest.approx(0.14)


def test_a_failed_trial_adds_nothing_instead_of_making_every_share_nan():
    trials = [{"trial_id": "a", "train_time_s": 60.0, "eval_time_s": 10.0},
              {"trial_id": "f", "train_time_s": math.nan, "eval_time_s": None}]
    o = search_overhead(_record(trials, wall=80.0, final_eval=4.0))
    assert o is not None
    assert o["in_trial_train_eval_s"] == pytest.approx(70.0)
    assert o["overhead_share"] == pytest.approx(1 - 70.0 / 80.0)


def test_summary_is_median_min_max_over_searches_with_each_phase():
    searches = {}
    for i, wall in enumerate((100.0, 120.0, 200.0)):
        o = search_overhead(_record([{"trial_id": "a", "train_time_s": 80.0, "eval_time_s": 10.0}], wall, 5.0))
        assert o is not None
        searches[f"s{i}"] = o
    summary = overhead_summary(searches)
    assert summary["searches"] == 3
    shares = sorted(o["overhead_share"] for o in searches.values())
    assert summary["overhead_share"] == {"median": pytest.approx(shares[1]), "min": pytest.approx(shares[0]),
                                         "max": pytest.approx(shares[2]), "n": 3}
    assert set(summary["phases_s"]) == {"trials", "final_eval", "report"}
    assert summary["phases_s"]["final_eval"]["median"] == pytest.approx(5.0)


def _bench_context(tmp_path, **settings):
    """A bench Context over placeholder split paths (search_config only writes them into the config)."""
    from bench.data import TaskFiles
    from bench.methods import Context

    files = TaskFiles(task="sst2", train=tmp_path / "t.tsv", validation=tmp_path / "v.tsv", test=tmp_path / "s.tsv",
                      text_columns=["sentence"], label_column="label", sizes={})
    return Context(files=files, seed=0, workdir=tmp_path, **settings)


@pytest.mark.parametrize(("grace", "prune_metric"), [(1, None), (2, "loss")])
def test_the_bench_pruning_settings_reach_the_search_config_it_writes(tmp_path, grace, prune_metric):
    from bench.methods import search_config

    ctx = _bench_context(tmp_path, grace_period=grace, prune_metric=prune_metric)
    cfg = search_config(ctx, "x", space="lora-family", sampler="tpe", pruning=True, trials=8)
    assert cfg["pruning"] == {"enabled": True, "grace_period": grace, "reduction_factor": 2, "metric": prune_metric}
    assert cfg["warm_start"] == {"prior": True}  # autopeft's own prior share unless the bench sets one


def test_the_bench_prior_share_reaches_the_search_config_and_autopeft_takes_that_many_prior_trials(tmp_path):
    from autopeft.study.warmstart import WarmStartConfig, prior_slots
    from bench.methods import search_config
    from bench.run import parse_args

    assert parse_args(["--prior-share", "0.125"])["prior_share"] == 0.125
    cfg = search_config(_bench_context(tmp_path, prior_share=0.125), "x", space="lora-family", sampler="tpe",
                        pruning=True, trials=16)
    assert cfg["warm_start"] == {"prior": True, "prior_share": 0.125}
    assert prior_slots(WarmStartConfig(**cfg["warm_start"]), 16) == 2


def _search(seed: int, method: str, finals: list[tuple[int, float]]) -> dict:
    trials = [{"trial_id": f"{method}{i}", "steps": steps, "val": val} for i, (steps, val) in enumerate(finals)]
    return {"task": "sst2", "seed": seed, "method": method, "trials": trials}


def test_early_stopping_counts_the_seeds_where_asha_never_reached_the_reference():
    from bench.report import early_stopping, markdown

    records = [
        _search(0, "fifo", [(100, 0.80), (100, 0.82)]),
        _search(0, "asha", [(100, 0.819), (25, 0.5), (100, 0.70)]),  # within 0.5 points after its first trial
        _search(1, "fifo", [(100, 0.81), (100, 0.80)]),
        _search(1, "asha", [(25, 0.5), (100, 0.79), (50, 0.6)]),  # never within 0.5 points
    ]
    es = early_stopping(records, trial_steps=100, asha="asha", reference="fifo")
    assert [r["steps_ratio"] for r in sorted(es["per_seed"], key=lambda r: r["seed"])] == [0.5, None]
    assert (es["seeds"], es["seeds_reached"]) == (2, 1)
    assert es["steps_ratio"]["median"] == 0.5 and es["steps_ratio"]["n"] == 1
    text = markdown({"name": "x", "meta": {"date": "d", "scale": "s", "command": "c"}, "summary": {},
                     "early_stopping": es})
    assert "0.50 in 1 of 2 seeds; in the other 1, never within its whole budget" in text


def test_autopeft_is_compared_with_each_baseline_seed_by_seed():
    from bench.report import markdown, paired

    tests = {("autopeft-lora", 0): 0.80, ("autopeft-lora", 1): 0.82, ("autopeft-lora", 2): 0.81,
             ("random", 0): 0.81, ("random", 1): 0.80, ("random", 2): 0.81, ("default", 0): 0.5}
    records = [{"task": "sst2", "method": m, "seed": s, "test_metric": v} for (m, s), v in tests.items()]
    pairs = paired(records)["sst2"]
    assert set(pairs) == {"autopeft-lora vs random", "autopeft-lora vs default"}  # baselines are not compared
    vs_random = pairs["autopeft-lora vs random"]
    assert vs_random["difference"]["median"] == pytest.approx(0.0)
    assert vs_random["difference"]["min"] == pytest.approx(-0.01) and vs_random["difference"]["max"] == pytest.approx(0.02)
    assert (vs_random["ahead"], vs_random["level"], vs_random["behind"]) == (1, 1, 1)
    assert pairs["autopeft-lora vs default"]["difference"]["n"] == 1  # only the seed both ran
    text = markdown({"name": "x", "meta": {"date": "d", "scale": "s", "command": "c"}, "records": records,
                     "summary": {"sst2": {}}})
    assert "| autopeft-lora vs random | +0.0 [-1.0 to +2.0] | 1 / 1 / 1 |" in text


def test_the_table_states_the_sampling_noise_of_the_splits_it_was_measured_on():
    from bench.report import markdown, standard_error

    assert standard_error(0.8, 676) == pytest.approx(0.01538, abs=1e-5)
    summary = {"sst2": {"random": {f: {"median": v, "min": v, "max": v, "n": 1} for f, v in
                                   (("test_metric", 0.81), ("val_metric", 0.8), ("trainable_params", 1.0),
                                    ("total_steps", 800.0), ("wall_time_s", 1.0))}}}
    meta = {"date": "d", "scale": "s", "command": "c", "split_sizes": {"sst2": {"validation": 2000, "test": 872}}}
    text = markdown({"name": "x", "meta": meta, "summary": summary, "paired": {}})
    assert "one standard error of an accuracy near 81% is 1.3 points on the 872 test examples and 0.9 on the 2000" in text
    # without split sizes (result files written before they were stored) the line is left out
    assert "standard error" not in markdown({"name": "x", "meta": {**meta, "split_sizes": {}}, "summary": summary,
                                             "paired": {}})


def test_the_bench_final_steps_come_out_of_the_search_budget_and_reach_only_autopeft_searches(tmp_path):
    from autopeft.config import BudgetConfig
    from bench.methods import search_config
    from bench.run import parse_args

    assert parse_args(["--final-steps", "400"])["final_steps"] == 400
    for bad in ("-1", "800"):  # the search must keep at least one full trial of the 800 steps
        with pytest.raises(SystemExit):
            parse_args(["--final-steps", bad])
    ctx = _bench_context(tmp_path, budget_steps=800, trial_steps=100, final_steps=400)
    assert ctx.search_steps == 400 and ctx.search_full_trials == 4
    assert ctx.full_trials == 8  # baselines keep the whole budget
    cfg = search_config(ctx, "x", space="lora-family", sampler="tpe", pruning=True, trials=8, final_steps=400)
    assert BudgetConfig(**cfg["budget"]).final_steps == 400
    random = search_config(ctx, "random", space="lora-family", sampler="random", pruning=False, trials=8)
    assert BudgetConfig(**random["budget"]).final_steps is None
    # the control that gives random search the same final training needs final steps to give
    assert parse_args(["--methods", "random-final", "--final-steps", "400"])["methods"] == ["random-final"]
    with pytest.raises(SystemExit):
        parse_args(["--methods", "random-final"])


def test_the_random_search_baselines_run_without_the_learning_rate_probes(tmp_path, monkeypatch):
    # the control is a hand-rolled random search: the probes are part of what autopeft adds
    from autopeft.config import CalibrationConfig
    from bench import methods

    ctx = _bench_context(tmp_path, budget_steps=800, trial_steps=100, final_steps=400)
    written = {}
    monkeypatch.setattr(methods, "run_autopeft", lambda _ctx, name, cfg: written.setdefault(name, cfg))
    methods.run_random(ctx)
    methods.run_random_final(ctx)
    methods.METHODS["autopeft-lora"](ctx)
    assert not CalibrationConfig(**written["random"]["calibration"]).enabled
    assert not CalibrationConfig(**written["random-final"]["calibration"]).enabled
    assert CalibrationConfig(**written["autopeft-lora"]["calibration"]).enabled


def test_a_final_training_counts_its_steps_whichever_adapter_was_registered(tmp_path):
    # the study logs the final training's curve before it decides to keep the trial's adapter;
    # the bench reads the steps trained off that curve, so a discarded final training's steps
    # still count against the budget (its result.final_history is empty)
    from mlflow import MlflowClient

    from bench.methods import final_curve

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("x")).info.run_id
    assert final_curve(uri, run, "accuracy") == []  # no final training
    for step, value in ((400, 0.80), (200, 0.78), (600, 0.79)):
        client.log_metric(run, "final_accuracy", value, step=step)
    client.log_metric(run, "final_loss", 0.5, step=800)  # another metric's curve is not read
    assert final_curve(uri, run, "accuracy") == [(200, 0.78), (400, 0.80), (600, 0.79)]


#: every committed bench config (bench/configs/*.yaml)
CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def test_the_committed_bench_configs_are_found():
    # an empty list would make the parametrized check below skip without a word
    assert len(CONFIGS) >= 5 and all(p.parent.name == "configs" for p in CONFIGS), CONFIGS


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_committed_bench_config_passes_the_harness_checks(config):
    # what `make bench*` and the README's commands run: a key or method renamed since would stop
    # it at once with an argparse error (SystemExit), before any training
    from bench.run import parse_args

    settings = parse_args(["--config", str(config)])
    assert settings["methods"] and settings["tasks"] and settings["seeds"] >= 1


def test_the_report_says_how_many_trials_stayed_trivial_where_winners_came_from_and_what_probes_found():
    from autopeft.schema import CalibrationRun
    from bench.report import markdown, search_diagnostics

    def trials(*flags):  # ASHA stopped the trivial ones at 50 steps; the others ran 200
        return [{"trial_id": str(i), "trivial": f, "steps": 50 if f else 200} for i, f in enumerate(flags)]

    kept, calibrated, by_hand = (CalibrationRun.KEPT, CalibrationRun.CALIBRATED, CalibrationRun.SET_BY_HAND)
    records = [
        {"task": "rte", "method": "autopeft-lora", "seed": 0, "trials": trials(True, True, False, False),
         "winner_source": "portfolio:lora-all-linear",
         "calibration": {"lora": {"outcome": calibrated}, "dora": {"outcome": kept}, "ia3": {"outcome": by_hand}},
         "final_steps": 400, "final_training_error": None},
        {"task": "rte", "method": "autopeft-lora", "seed": 1, "trials": trials(True, False, False, False),
         "winner_source": "sampler",
         "calibration": {"lora": {"outcome": kept}, "dora": {"outcome": kept}, "ia3": {"outcome": by_hand}},
         # the trial's adapter was registered: the final training ended below it
         "final_steps": 0, "final_training_error": "the final training's best validation accuracy 0.5 ..."},
        # a baseline: not a search of ours, not counted; an older record without judgements: none counted
        {"task": "rte", "method": "random", "seed": 0, "trials": trials(True, True)},
        {"task": "rte", "method": "autopeft-all", "seed": 0, "trials": [{"trial_id": "0"}]},
        # the calibration stepped aside: a step budget with no room for the probes
        {"task": "rte", "method": "autopeft-all", "seed": 1, "trials": [{"trial_id": "0"}],
         "calibration_skipped": "the probes of lora, dora (100 steps) would leave ..."},
    ]
    found = search_diagnostics(records)["rte"]
    assert set(found) == {"autopeft-lora", "autopeft-all"}
    lora = found["autopeft-lora"]
    assert lora["trivial_share"]["median"] == pytest.approx(0.375) and lora["trials_judged"] == 8
    # their steps: 100 of 500 in seed 0, 50 of 650 in seed 1
    assert lora["trivial_step_share"]["median"] == pytest.approx((100 / 500 + 50 / 650) / 2)
    assert (lora["sampler_wins"], lora["seeds_with_source"]) == (1, 2)
    # of 4 probes (ia3's range is the space's, not probed), one set a range
    assert (lora["probes_calibrated"], lora["probes"]) == (1, 4)
    assert (lora["final_registered"], lora["final_runs"]) == (1, 2)
    assert found["autopeft-all"]["trials_judged"] == 0
    text = markdown({"name": "x", "meta": {"date": "d", "scale": "s", "command": "c"}, "records": records,
                     "summary": {"rte": {}}, "paired": {}})
    assert ("| rte | autopeft-lora | 37.5 [25.0–50.0] (8 trials) | 13.8 [7.7–20.0] | 1 of 2 seeds | 1 of 4 "
            "| 1 of 2 seeds |") in text
    assert ("| rte | autopeft-all | not measured | not measured | not recorded | none recorded; none run in 1 of 2 seeds "
            "(calibration stepped aside) | not recorded |") in text
