"""Summaries over seeds (median with min-max spread), the markdown table and the PNG plot."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autopeft.schema import CalibrationRun

FIELDS = ("test_metric", "val_metric", "trainable_params", "total_steps", "wall_time_s")


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Median with min and max over seeds (NaN values left out; n says how many counted)."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": float(np.median(vals)), "min": float(min(vals)), "max": float(max(vals)), "n": len(vals)}


def standard_error(accuracy: float, examples: int) -> float:
    """One binomial standard error of an accuracy measured on ``examples`` examples: the noise in
    a score from which examples happen to be in the split (sqrt(p (1 - p) / n))."""
    return math.sqrt(accuracy * (1.0 - accuracy) / examples)


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {method: {field: spread}}} over the seeds of each (task, method)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["method"])].append(r)
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (task, method), rows in groups.items():
        out[task][method] = {f: spread([r.get(f) for r in rows]) for f in FIELDS}
        out[task][method]["seeds"] = sorted(r["seed"] for r in rows)
    return dict(out)


def paired(records: list[dict[str, Any]], field: str = "test_metric") -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {"<autopeft method> vs <baseline>": ...}}: per seed, the autopeft method's ``field``
    minus the baseline's on the same seed (same data, same split), as median [min-max] over seeds
    with how many seeds it was ahead, level and behind. Differences of medians hide how the seeds
    pair up; this is what the "autopeft >= every baseline" target is about."""
    values = {(r["task"], r["method"], r["seed"]): r.get(field) for r in records}
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for task in sorted({t for t, _, _ in values}):
        methods = sorted({m for t, m, _ in values if t == task})
        for ours in (m for m in methods if m.startswith("autopeft")):
            for base in (m for m in methods if not m.startswith("autopeft")):
                diffs = [float(v) - float(b)
                         for (t, m, seed), v in values.items()
                         if t == task and m == ours and v is not None
                         and (b := values.get((task, base, seed))) is not None]
                diffs = [d for d in diffs if not math.isnan(d)]
                if diffs:
                    out[task][f"{ours} vs {base}"] = {
                        "difference": spread(diffs), "ahead": sum(d > 0 for d in diffs),
                        "level": sum(d == 0 for d in diffs), "behind": sum(d < 0 for d in diffs)}
    return dict(out)


# --------------------------------------------------------------------------- zero-config vs hand-written

ZERO_CONFIG, HAND_WRITTEN = "autopeft-zero-config", "autopeft-lora"
#: A time-budgeted search ends within its time plus this share (autopeft's promise for budget.time).
TIME_TOLERANCE = 0.05


def search_diagnostics(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {autopeft method: ...}}: whether the search itself learnt anything. Per method, the
    share of its trials that ended at the trivial predictor's level (median over seeds, and the
    trials counted) and their share of the steps (a search that finds configs that learn runs them
    to the end, so fewer trials fit its budget and each trivial one, stopped early, weighs more in
    the count than in the cost), and in how many seeds the registered trial was one of the
    sampler's own draws rather than a warm-start config (the portfolio, the prior, a file): where the portfolio always
    wins, the sampler adds nothing."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if str(r.get("method", "")).startswith("autopeft"):
            groups[(r["task"], r["method"])].append(r)
    for (task, method), rows in sorted(groups.items()):
        shares, step_shares, judged = [], [], 0
        for r in rows:
            judged_trials = [t for t in r.get("trials") or [] if t.get("trivial") is not None]
            judged += len(judged_trials)
            if judged_trials:
                shares.append(sum(bool(t["trivial"]) for t in judged_trials) / len(judged_trials))
            steps = [(int(t.get("steps") or 0), bool(t["trivial"])) for t in judged_trials]
            if sum(n for n, _ in steps):  # ASHA stops a trivial trial early: its share of the steps is what it cost
                step_shares.append(sum(n for n, trivial in steps if trivial) / sum(n for n, _ in steps))
        sources = [r.get("winner_source") for r in rows if r.get("winner_source")]
        # each probed family of each seed: did its probe set a range (else the space's was kept)?
        probes = [p.get("outcome") for r in rows for p in (r.get("calibration") or {}).values()
                  if p.get("outcome") != CalibrationRun.SET_BY_HAND]
        # seeds that ran a final training (records since it could be discarded): was its adapter
        # registered, or the trial's (final_training_error says why)?
        finals = [not r["final_training_error"] for r in rows
                  if "final_training_error" in r and (r.get("final_steps") or r["final_training_error"])]
        out[task][method] = {"trivial_share": spread(shares), "trivial_step_share": spread(step_shares),
                             "trials_judged": judged,
                             "sampler_wins": sum(s == "sampler" for s in sources), "seeds_with_source": len(sources),
                             "probes_calibrated": sum(o == CalibrationRun.CALIBRATED for o in probes),
                             "probes": len(probes), "final_registered": sum(finals), "final_runs": len(finals),
                             # seeds whose calibration stepped aside (a step budget with no room for the probes)
                             "probes_skipped": sum(bool(r.get("calibration_skipped")) for r in rows), "seeds": len(rows)}
    return dict(out)


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def zero_config_comparison(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{task: {"per_seed": rows, ...}}: per seed, the zero-config search's test metric minus
    autopeft-lora's (the best hand-written config), each one's wall time, the zero-config
    search's time budget and whether it ended within it (+5%), its planned budget and its
    inferred choices; with the difference over seeds (median [min-max], ahead/level/behind) and
    how many seeds ended in time. Empty when no record is the zero-config search's."""
    by_key = {(r["task"], r["seed"], r["method"]): r for r in records}
    out: dict[str, dict[str, Any]] = {}
    for task in sorted({t for t, _, m in by_key if m == ZERO_CONFIG}):
        rows = []
        for seed in sorted(s for t, s, m in by_key if t == task and m == ZERO_CONFIG):
            zero, hand = by_key[(task, seed, ZERO_CONFIG)], by_key.get((task, seed, HAND_WRITTEN))
            zero_test = _finite(zero.get("test_metric"))
            hand_test = _finite(hand.get("test_metric")) if hand else None
            wall, budget = _finite(zero.get("wall_time_s")), _finite(zero.get("time_budget_s"))
            rows.append({
                "seed": seed, "zero_config_test": zero_test, "hand_written_test": hand_test,
                "difference": zero_test - hand_test if zero_test is not None and hand_test is not None else None,
                "zero_config_wall_s": wall, "hand_written_wall_s": _finite(hand.get("wall_time_s")) if hand else None,
                "budget_s": budget, "budget_source": zero.get("time_budget_source"),
                "wall_over_budget": wall / budget if wall is not None and budget else None,
                "within_budget": wall <= budget * (1 + TIME_TOLERANCE) if wall is not None and budget else None,
                "plan": zero.get("plan") or {}, "inferred": zero.get("inferred") or {},
                # the study's own test evaluation, on the rows its plan left it
                "study_test": _finite(zero.get("study_test_metric")),
                "study_test_rows": (zero.get("split_sizes") or {}).get("test"), "test_rows": zero.get("test_rows"),
            })
        diffs = [r["difference"] for r in rows if r["difference"] is not None]
        out[task] = {"reference": HAND_WRITTEN, "per_seed": rows, "difference": spread(diffs),
                     "ahead": sum(d > 0 for d in diffs), "level": sum(d == 0 for d in diffs),
                     "behind": sum(d < 0 for d in diffs),
                     "within_budget": sum(r["within_budget"] is True for r in rows),
                     "timed": sum(r["within_budget"] is not None for r in rows)}
    return out


def _points(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:+.1f}" if signed else f"{value * 100:.1f}"


def _seconds_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def zero_config_markdown(comparison: dict[str, dict[str, Any]], split_sizes: dict[str, Any]) -> list[str]:
    """The zero-config section: one table per task, a row per seed."""
    lines: list[str] = []
    for task, c in comparison.items():
        lines += [f"## Zero-config vs {c['reference']} ({task})", "",
                  f"`autopeft.search` given only the model, a train file (the rows every other method trains and "
                  f"selects on, in one file: it carves its own validation), the test file and a time: its test "
                  f"accuracy minus {c['reference']}'s on the same seed, with {c['reference']}'s wall time as its time "
                  f"budget. Its val accuracy above is on its own validation rows, not the other methods'.", "",
                  f"| seed | {c['reference']} test (%) | zero-config test (%) | difference (points) | "
                  f"{c['reference']} wall (s) | zero-config wall (s) | budget (s) | within budget +"
                  f"{TIME_TOLERANCE:.0%} | planned: trials x max_steps + final | inferred: metric, space, max_length |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in c["per_seed"]:
            plan, inferred = r["plan"], r["inferred"]
            within = {True: "yes", False: "**no**", None: "n/a"}[r["within_budget"]]
            if r["wall_over_budget"] is not None:
                within += f" ({r['wall_over_budget']:.0%})"
            planned = (f"{plan.get('trials')} x {plan.get('max_steps')} + {plan.get('final_steps') or 0}"
                       if plan else "n/a")
            chosen = (f"{inferred.get('metric')}, {inferred.get('space')}, {inferred.get('max_length')}"
                      if inferred else "n/a")
            budget = _seconds_cell(r["budget_s"])
            if r["budget_source"] and not str(r["budget_source"]).startswith(c["reference"]):
                budget += f" ({r['budget_source']})"
            lines.append(f"| {r['seed']} | {_points(r['hand_written_test'])} | {_points(r['zero_config_test'])} | "
                         f"{_points(r['difference'], signed=True)} | {_seconds_cell(r['hand_written_wall_s'])} | "
                         f"{_seconds_cell(r['zero_config_wall_s'])} | {budget} | {within} | {planned} | {chosen} |")
        lines.append("")
        d = c["difference"]
        if d["median"] is not None:
            lines.append(f"Difference over {d['n']} seed(s): {_points(d['median'], True)} "
                         f"[{_points(d['min'], True)} to {_points(d['max'], True)}] points; ahead / level / behind: "
                         f"{c['ahead']} / {c['level']} / {c['behind']}. "
                         f"Ended within its time +{TIME_TOLERANCE:.0%} in {c['within_budget']} of {c['timed']} seeds.")
        else:
            lines.append(f"Ended within its time +{TIME_TOLERANCE:.0%} in {c['within_budget']} of {c['timed']} seeds.")
        test_rows = (split_sizes.get(task) or {}).get("test")
        cut = [r for r in c["per_seed"] if r["study_test_rows"] is not None and test_rows
               and r["study_test_rows"] != test_rows]
        if cut:
            own = "; ".join(f"seed {r['seed']}: {_points(r['study_test'])}% on {r['study_test_rows']}" for r in cut)
            lines.append(f"Zero-config test accuracy here is its registered adapter, loaded with autopeft.load, on all "
                         f"{test_rows} test examples. The study's own test evaluation used fewer: {own}.")
        lines.append("")
    return lines


# --------------------------------------------------------------------------- early stopping


def search_curve(record: dict[str, Any]) -> list[tuple[int, float]]:
    """(steps used so far, best validation metric so far) after each report of a search, in
    arrival order; from the timeline of an autopeft search, else from per-trial curves/finals."""
    points: list[tuple[int, float]] = []
    used, best = 0, -math.inf
    timeline = record.get("timeline")
    if timeline and timeline.get("reports"):
        last: dict[str, int] = {}
        for rep in sorted(timeline["reports"], key=lambda r: r["t"]):
            step = int(rep.get("step") or 0)
            used += step - last.get(rep["trial_id"], 0)
            last[rep["trial_id"]] = step
            if rep.get("value") is not None:
                best = max(best, float(rep["value"]))
            points.append((used, best))
        return points
    for trial in record.get("trials", []):
        prev = 0
        for step, value in trial.get("curve") or [(trial.get("steps", 0), trial.get("val"))]:
            used += int(step) - prev
            prev = int(step)
            if value is not None:
                best = max(best, float(value))
            points.append((used, best))
    return points


def early_stopping(records: list[dict[str, Any]], trial_steps: int, asha: str, reference: str,
                   tolerance: float = 0.005) -> dict[str, Any]:
    """Per (task, seed): steps ``asha`` needed to come within ``tolerance`` of the best validation
    metric ``reference`` (no early stopping) reached with all its steps, and the share of
    ``asha``'s trials that stopped at or before 25% of a trial's steps. ``steps_ratio`` spreads
    over the seeds where ``asha`` got there; ``seeds_reached`` of ``seeds`` says how many did."""
    by_key = {(r["task"], r["seed"], r["method"]): r for r in records}
    rows = []
    for (task, seed, method), rec in by_key.items():
        if method != asha or (task, seed, reference) not in by_key:
            continue
        ref = by_key[(task, seed, reference)]
        ref_curve, asha_curve = search_curve(ref), search_curve(rec)
        if not ref_curve or not asha_curve:
            continue
        ref_best, ref_steps = ref_curve[-1][1], ref_curve[-1][0]
        reached = next((used for used, best in asha_curve if best >= ref_best - tolerance), None)
        trials = rec.get("trials", [])
        early = [t for t in trials if t.get("steps", 0) <= 0.25 * trial_steps]
        rows.append({
            "task": task, "seed": seed, "reference_best_val": ref_best, "reference_steps": ref_steps,
            "asha_best_val": asha_curve[-1][1], "asha_steps": asha_curve[-1][0],
            "asha_steps_to_reference": reached,
            "steps_ratio": (reached / ref_steps) if reached is not None and ref_steps else None,
            "share_stopped_by_25pct": len(early) / len(trials) if trials else None, "trials": len(trials),
        })
    return {"asha_method": asha, "reference_method": reference, "tolerance": tolerance, "per_seed": rows,
            "seeds": len(rows), "seeds_reached": sum(r["steps_ratio"] is not None for r in rows),
            "steps_ratio": spread([r["steps_ratio"] for r in rows]),
            "share_stopped_by_25pct": spread([r["share_stopped_by_25pct"] for r in rows])}


# --------------------------------------------------------------------------- overhead of a search


def _seconds(value: Any) -> float:
    """A reported duration, 0.0 where there is none (None, or NaN from a trial that failed)."""
    return float(value) if value is not None and math.isfinite(float(value)) else 0.0


def search_overhead(record: dict[str, Any]) -> dict[str, Any] | None:
    """For an autopeft search: wall time over in-trial train+eval time, trial start-up times
    (first trial vs later ones) and MLflow logging time per trial."""
    timeline = record.get("timeline")
    trials = record.get("trials", [])
    if not timeline or not trials:
        return None
    # a failed trial reports no times (NaN): it adds nothing to the in-trial time
    in_trial = sum(_seconds(t.get("train_time_s")) + _seconds(t.get("eval_time_s")) for t in trials)
    # the selected config's final training (budget.final_steps) is training too, outside any trial;
    # its Ray task's start is orchestration (records before 2026-11-28 only have the whole phase)
    final = record.get("final_train_eval_s")
    in_trial += _seconds(final if final is not None else (record.get("phase_times_s") or {}).get("final_training"))
    started, ended = timeline["started"], timeline["ended"]
    span = (max(ended.values()) - min(started.values())) if started and ended else None
    first_report: dict[str, dict[str, Any]] = {}
    for rep in sorted(timeline["reports"], key=lambda r: r["t"]):
        first_report.setdefault(rep["trial_id"], rep)
    startup, to_first_step = [], []
    for tid in sorted(started, key=started.get):
        rep = first_report.get(tid)
        if rep is None:
            continue
        since_start = rep["t"] - started[tid]
        startup.append(since_start - (rep.get("train_time_s") or 0.0) - (rep.get("eval_time_s") or 0.0))
        if rep.get("setup_time_s") is not None and rep.get("time_total_s") is not None:
            # driver start -> trainable entry (what the report took beyond the trainable's own
            # time_total_s, so it also holds the report's trip back) + entry -> first step
            to_first_step.append(since_start - rep["time_total_s"] + rep["setup_time_s"])
    hooks = record.get("mlflow_hook_time_s") or {}
    phases = record.get("phase_times_s") or {}
    wall = record.get("search_wall_time_s") or 0.0
    final_eval = phases.get("final_eval")
    return {
        "in_trial_train_eval_s": in_trial,
        "search_wall_s": record.get("search_wall_time_s"),
        "method_wall_s": record.get("wall_time_s"),
        "fit_span_s": span,
        "wall_over_in_trial": wall / in_trial if in_trial else None,
        # share of the wall time outside the trials' training and validation: everything else
        "overhead_share": 1.0 - in_trial / wall if wall and in_trial else None,
        # the same with the registered adapter's evaluation (reload check on validation, then
        # test) counted as evaluation: what is left is orchestration
        "orchestration_share": 1.0 - (in_trial + final_eval) / wall if wall and in_trial and final_eval is not None else None,
        "fit_span_over_in_trial": span / in_trial if span and in_trial else None,
        "first_trial_startup_s": startup[0] if startup else None,
        "later_trials_startup_s": spread(startup[1:]),
        "first_trial_to_first_step_s": to_first_step[0] if to_first_step else None,
        "later_trials_to_first_step_s": spread(to_first_step[1:]),
        "mlflow_s_per_trial": sum(hooks.values()) / len(trials) if hooks else None,
        # the study's own phases (run_search's phase_<name>_s): what the fixed cost is made of
        "phases_s": record.get("phase_times_s") or None,
    }


def overhead_summary(searches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The per-search overhead measures over all searches of a run: median [min-max]."""
    keys = ("overhead_share", "orchestration_share", "wall_over_in_trial", "first_trial_to_first_step_s",
            "mlflow_s_per_trial")
    out: dict[str, Any] = {key: spread([o.get(key) for o in searches.values()]) for key in keys}
    # the slowest later trial of each search (the target bounds every later trial's start)
    out["later_trials_to_first_step_max_s"] = spread(
        [(o.get("later_trials_to_first_step_s") or {}).get("max") for o in searches.values()])
    names = sorted({name for o in searches.values() for name in (o.get("phases_s") or {})})
    out["phases_s"] = {name: spread([(o.get("phases_s") or {}).get(name) for o in searches.values()]) for name in names}
    out["searches"] = len(searches)
    return out


# --------------------------------------------------------------------------- output


def task_metric(records: list[dict[str, Any]], task: str) -> str:
    """The metric a task's records were measured on (its task file's ``metric``; records written
    before task files existed have none: accuracy)."""
    return next((r["metric"] for r in records if r.get("task") == task and r.get("metric")), "accuracy")


def metric_label(metric: str) -> str:
    """How a table or axis names a metric reported x 100: 'accuracy (%)', 'pearson (x100)'."""
    return f"{metric} (%)" if metric in ("accuracy", "f1") else f"{metric} (x100)"


def _fmt(s: dict[str, Any], digits: int = 3, pct: bool = False) -> str:
    if s.get("median") is None:
        return "n/a"
    k = 100.0 if pct else 1.0
    med = f"{s['median'] * k:.{digits}f}"
    if s["n"] > 1:
        return f"{med} [{s['min'] * k:.{digits}f}–{s['max'] * k:.{digits}f}]"
    return med


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [f"# Benchmark {result['name']} ({meta['date']})" + (" — partial, still running or cut short" if result.get("partial") else ""), "",
             f"Scale: {meta['scale']}", "",
             f"Command: `{meta['command']}`", "",
             "Every figure: median over seeds, [min–max] when more than one seed.", ""]
    # stored with the results since 1149962; computed for files written before
    pairs_by_task = result["paired"] if "paired" in result else paired(result.get("records") or [])
    for task, methods in result["summary"].items():
        metric = task_metric(result.get("records") or [], task)
        lines += [f"## {task}", "",
                  f"| method | test {metric_label(metric)} | val {metric_label(metric)} | trainable params | total steps "
                  "| wall time (s) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        order = sorted(methods, key=lambda m: -(methods[m]["test_metric"]["median"] or -1))
        for m in order:
            s = methods[m]
            lines.append(f"| {m} | {_fmt(s['test_metric'], 1, True)} | {_fmt(s['val_metric'], 1, True)} | "
                         f"{_fmt(s['trainable_params'], 0)} | {_fmt(s['total_steps'], 0)} | {_fmt(s['wall_time_s'], 0)} |")
        lines.append("")
        sizes = (meta.get("split_sizes") or {}).get(task) or {}
        best = max((s["test_metric"]["median"] for s in methods.values() if s["test_metric"]["median"] is not None),
                   default=None)
        if metric == "accuracy" and best is not None and 0.0 < best < 1.0 and sizes.get("test") and sizes.get("validation"):
            lines += [f"Sampling noise, for scale: one standard error of an accuracy near {best * 100:.0f}% is "
                      f"{standard_error(best, sizes['test']) * 100:.1f} points on the {sizes['test']} test examples and "
                      f"{standard_error(best, sizes['validation']) * 100:.1f} on the {sizes['validation']} validation "
                      "examples every method selects on.", ""]
        pairs = pairs_by_task.get(task)
        if pairs:
            lines += [f"Paired by seed: test {metric} of each autopeft search minus the baseline's on the same seed "
                      "(points), and in how many seeds it was ahead / level / behind.", "",
                      "| comparison | difference (points) | ahead / level / behind |", "| --- | --- | --- |"]
            for name, p in pairs.items():
                d = p["difference"]
                lines.append(f"| {name} | {d['median'] * 100:+.1f} [{d['min'] * 100:+.1f} to {d['max'] * 100:+.1f}] | "
                             f"{p['ahead']} / {p['level']} / {p['behind']} |")
            lines.append("")
    diagnostics = search_diagnostics(result.get("records") or [])
    if any(m["trials_judged"] or m["seeds_with_source"] for t in diagnostics.values() for m in t.values()):
        lines += ["## What the search learnt", "",
                  "Share of each search's trials that ended at the trivial predictor's level (majority class, "
                  "training mean), and their share of the search trials' steps (ASHA stops them early); in how "
                  "many seeds the registered trial was one of the sampler's own draws rather than a warm-start "
                  "(portfolio) config; how many of the learning-rate probes (a family "
                  "in a seed) set a range rather than keeping the space's; and in how many seeds the final "
                  "training's adapter was registered rather than the trial's.", "",
                  "| task | method | trials at the trivial level (%) | their steps (%) | winner from the sampler | "
                  "probes that set a range | final training registered |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for task, methods in diagnostics.items():
            for m, d in methods.items():
                trivial = (f"{_fmt(d['trivial_share'], 1, True)} ({d['trials_judged']} trials)"
                           if d["trials_judged"] else "not measured")
                steps = _fmt(d["trivial_step_share"], 1, True) if d["trivial_step_share"]["n"] else "not measured"
                wins = f"{d['sampler_wins']} of {d['seeds_with_source']} seeds" if d["seeds_with_source"] else "not recorded"
                probes = f"{d['probes_calibrated']} of {d['probes']}" if d["probes"] else "none recorded"
                if d.get("probes_skipped"):
                    probes += f"; none run in {d['probes_skipped']} of {d['seeds']} seeds (calibration stepped aside)"
                finals = f"{d['final_registered']} of {d['final_runs']} seeds" if d["final_runs"] else "not recorded"
                lines.append(f"| {task} | {m} | {trivial} | {steps} | {wins} | {probes} | {finals} |")
        lines.append("")
    zero_config = result.get("zero_config") or zero_config_comparison(result.get("records") or [])
    if zero_config:
        lines += zero_config_markdown(zero_config, meta.get("split_sizes") or {})
    es = result.get("early_stopping")
    if es and es.get("per_seed"):
        rows = es["per_seed"]
        reached = sum(r["steps_ratio"] is not None for r in rows)
        never = "" if reached == len(rows) else f"; in the other {len(rows) - reached}, never within its whole budget"
        lines += ["## Early stopping", "",
                  f"{es['asha_method']} (ASHA) vs {es['reference_method']} (no early stopping): steps ASHA needed to "
                  f"come within {es['tolerance'] * 100:.1f} points of the reference's best validation metric, as a share "
                  f"of the reference's steps: {_fmt(es['steps_ratio'], 2)} in {reached} of {len(rows)} seeds{never}; "
                  f"share of ASHA trials stopped at or before 25% of a trial's steps: "
                  f"{_fmt(es['share_stopped_by_25pct'], 2)}.", ""]
    ov = result.get("overhead") or {}
    if ov:
        lines += ["## Overhead", "", "| measure | value |", "| --- | --- |"]
        for key, value in _flat(ov).items():
            lines.append(f"| {key} | {value} |")
        lines.append("")
    lines += [f"Plot: `{Path(result['plot']).name}`" if result.get("plot") else "", ""]
    return "\n".join(lines)


def _flat(data: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(data, dict):
        if set(data) >= {"median", "min", "max", "n"}:
            return {prefix: _fmt(data, 3)}
        for k, v in data.items():
            if k == "record":
                continue
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, float):
        out[prefix] = f"{data:.4g}"
    elif data is not None and not isinstance(data, list):
        out[prefix] = str(data)
    return out


def plot(result: dict[str, Any], records: list[dict[str, Any]], path: Path) -> Path | None:
    """Test metric per method (median, min-max bars) per task, and best validation metric vs
    steps used for each search (one line per method and seed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    tasks = list(result["summary"])
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(5 * (len(tasks) + 1), 4))
    axes = np.atleast_1d(axes)
    for ax, task in zip(axes, tasks, strict=False):
        methods = result["summary"][task]
        label = metric_label(task_metric(records, task))
        names = sorted(methods)
        med = [100 * (methods[m]["test_metric"]["median"] or 0) for m in names]
        lo = [m_ - 100 * (methods[m]["test_metric"]["min"] or 0) for m_, m in zip(med, names, strict=True)]
        hi = [100 * (methods[m]["test_metric"]["max"] or 0) - m_ for m_, m in zip(med, names, strict=True)]
        ax.bar(range(len(names)), med, yerr=[lo, hi], capsize=4, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
        ax.set_ylabel(f"test {label}")
        ax.set_ylim(max(0, min(med) - 10), min(100, max(med) + 5))
        ax.set_title(f"{task}: test metric at equal step budget")
    ax = axes[-1]
    for rec in records:
        curve = search_curve(rec)
        if len(curve) > 1:
            ax.step([c[0] for c in curve], [100 * c[1] for c in curve], where="post",
                    label=f"{rec['task']} {rec['method']} s{rec['seed']}")
    ax.set_xlabel("training steps used")
    metrics = sorted({task_metric(records, task) for task in tasks}) or ["accuracy"]
    ax.set_ylabel(f"best validation {metric_label(metrics[0]) if len(metrics) == 1 else 'metric (x100)'} so far")
    ax.set_title("search efficiency")
    if ax.get_lines():  # runs without search curves (baselines only) have nothing to label
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def write_results(result: dict[str, Any], records: list[dict[str, Any]], base: Path,
                  extra_markdown: Sequence[str] = ()) -> dict[str, Path]:
    """``result`` (name, partial, meta and the run's own sections) completed with the summary,
    the seed-paired comparison and the plot of ``records``, written as ``base``.json, .md (plus
    ``extra_markdown`` lines) and .png: what ``bench.run`` and ``bench.combine`` both write."""
    result.update(summary=summarize(records), paired=paired(records), records=records)
    base.parent.mkdir(parents=True, exist_ok=True)
    result["plot"] = str(plot(result, records, base.with_suffix(".png")) or "")
    text = "\n".join([markdown(result).rstrip(), *extra_markdown]) + "\n"
    base.with_suffix(".json").write_text(json.dumps(result, indent=1, default=_json_default))
    base.with_suffix(".md").write_text(text)
    return {"json": base.with_suffix(".json"), "md": base.with_suffix(".md"), "png": Path(result["plot"])}
