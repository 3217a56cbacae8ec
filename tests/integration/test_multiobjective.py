"""A real two-objective search (accuracy vs. trainable share) on MiniLM and an SST-2 slice, with a
sampler constraint, warm start and the study report: Ray Tune + Optuna NSGA-II + ASHA + MLflow.

The session's finished study (tests/integration/conftest.py) is that search; these tests read it.
"""

from __future__ import annotations

import json

import numpy as np
import optuna
import pandas as pd
import pytest

from autopeft.objectives import ATTR_PREFIX, SelectionConfig, knee_index, pareto_mask, select, within
from autopeft.registry.versions import Registry
from autopeft.study.warmstart import ATTR_SOURCE

from .conftest import LIMIT, MODEL, STUDY, TRIALS

pytestmark = pytest.mark.integration


@pytest.fixture
def study(finished_study):
    return finished_study


def _pareto_frame(study, folder) -> pd.DataFrame:
    client, result = study.client, study.result
    path = client.download_artifacts(result.parent_run_id, "pareto_set.csv", str(folder))
    parquet = client.download_artifacts(result.parent_run_id, "pareto_set.parquet", str(folder))
    frame = pd.read_csv(path)
    assert len(pd.read_parquet(parquet)) == len(frame)
    return frame


def test_pareto_set_is_non_dominated_and_complete(study, tmp_path):
    frame = _pareto_frame(study, tmp_path)
    result = study.result
    assert len(frame) >= 1
    values = frame[["accuracy", "trainable_share"]].to_numpy()
    for i in range(len(values)):  # no point of the set dominates another
        for j in range(len(values)):
            if i != j:
                better_or_equal = values[j][0] >= values[i][0] and values[j][1] <= values[i][1]
                strictly = values[j][0] > values[i][0] or values[j][1] < values[i][1]
                assert not (better_or_equal and strictly), (frame.iloc[i].to_dict(), frame.iloc[j].to_dict())
    # and every feasible COMPLETE trial outside the set is dominated by one inside it
    inside = set(frame["trial_id"])
    for t in result.trials:
        if t.outcome != "COMPLETE" or t.trial_id in inside or not within(t.metrics, {"trainable_share": LIMIT}):
            continue
        assert any(a >= t.metrics["accuracy"] and s <= t.metrics["trainable_share"] for a, s in values), t.trial_id
    # each point carries its config and its MLflow run
    runs = {t.trial_id: t.run_id for t in result.trials}
    for row in frame.itertuples():
        assert row.run_id == runs[row.trial_id]
        assert json.loads(row.config)["adapter"] == row.family
    assert frame["registered"].sum() == 1


def test_constraints_reach_the_sampler_and_hold_for_complete_trials(study):
    prepared = study.prepared
    ostudy = optuna.load_study(study_name=STUDY, storage=prepared.optuna_storage)
    assert len(ostudy.directions) == 2
    trials = ostudy.get_trials()
    assert len(trials) == TRIALS
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for t in complete:  # Optuna got both objectives, the constraint value, and it holds
        assert len(t.values) == 2 and t.values[1] == pytest.approx(t.user_attrs[ATTR_PREFIX + "trainable_share"])
        assert t.values[1] <= LIMIT
        assert t.system_attrs["constraints"][0] <= 0
    # the warm-started LoRA-all-linear entry (hand-set portfolio) is over the limit: it stopped itself, PRUNED, infeasible
    over = [t for t in trials if t.user_attrs.get(ATTR_SOURCE) == "portfolio:lora-all-linear"]
    assert len(over) == 1 and over[0].state == optuna.trial.TrialState.PRUNED
    assert over[0].system_attrs["constraints"][0] > 0
    # the other measured costs were recorded for every trial that reported
    for t in trials:
        if t.state != optuna.trial.TrialState.FAIL:
            for name in ("adapter_size_mb", "peak_memory_mb", "latency_ms"):
                assert t.user_attrs[ATTR_PREFIX + name] > 0, (t.number, name)


def test_selection_policies_pick_what_they_claim(study, tmp_path):
    result = study.result
    objectives = [("accuracy", "max"), ("trainable_share", "min")]
    limits = {"trainable_share": LIMIT}
    feasible = [t for t in result.trials if t.outcome == "COMPLETE" and within(t.metrics, limits)]
    # knee (the configured policy) registered the knee of the recorded front
    frame = _pareto_frame(study, tmp_path)
    values = frame[["accuracy", "trainable_share"]].to_numpy()
    assert bool(np.all(pareto_mask(values, ["max", "min"])))
    knee = frame.iloc[knee_index(values, ["max", "min"])]
    assert result.best.trial_id == knee["trial_id"]
    version = study.client.get_model_version_by_alias(MODEL, "candidate")
    assert version.tags["autopeft.trial_id"] == knee["trial_id"]
    assert Registry.open(study.uri).lineage(version).selection_policy == "knee"
    # best: the highest accuracy among feasible COMPLETE trials
    best = select(result.trials, objectives, limits, SelectionConfig(policy="best")).best
    assert best.metrics["accuracy"] == max(t.metrics["accuracy"] for t in feasible)
    # best-within: the highest accuracy among those under a tighter share
    tight = sorted(t.metrics["trainable_share"] for t in feasible)[0] * 1.0001
    chosen = select(result.trials, objectives, limits, SelectionConfig(policy="best-within", max_trainable_share=tight))
    pool = [t for t in feasible if t.metrics["trainable_share"] <= tight]
    assert chosen.best.metrics["accuracy"] == max(t.metrics["accuracy"] for t in pool)
    assert chosen.best.metrics["trainable_share"] <= tight


def test_warm_start_configs_run_first_and_are_tagged(study):
    prepared, client, result = study.prepared, study.client, study.result
    sources = [p.source for p in prepared.warm_start]
    # the file's LoRA config, then the (hand-set) portfolio entries that fit this space (no DoRA here; vera skipped)
    assert sources[0].startswith("file:warm.yaml#0")
    assert "portfolio:lora-all-linear" in sources and "portfolio:ia3-all-linear" in sources
    assert not any("dora" in s for s in sources)
    ostudy = optuna.load_study(study_name=STUDY, storage=prepared.optuna_storage)
    trials = sorted(ostudy.get_trials(), key=lambda t: t.number)
    assert [t.user_attrs.get(ATTR_SOURCE) for t in trials[: len(sources)]] == sources
    assert all(ATTR_SOURCE not in t.user_attrs for t in trials[len(sources):])
    first = trials[0].params
    assert first["adapter"] == "lora" and first["lora.r"] == 4 and first["placement.roles"] == "query,value"
    # MLflow: each warm-started trial's run carries its source
    runs = {t.trial_id: t.run_id for t in result.trials}
    for t in trials[: len(sources)]:
        run = client.get_run(runs[t.user_attrs["autopeft.ray_trial_id"]])
        assert run.data.tags["autopeft.warm_start"] == t.user_attrs[ATTR_SOURCE]
        assert run.data.params["adapter"] == t.params["adapter"]


def test_ia3_trials_train_at_its_own_learning_rate_range(study):
    # the space gives IA3 [3e-3, 3e-2] and the others the shared [1e-4, 5e-3]; what each trial trained
    # with is what MLflow recorded for it
    client, result = study.client, study.result
    rates = {t.params["adapter"]: [] for t in result.trials}
    for t in result.trials:
        rates[t.params["adapter"]].append(float(client.get_run(t.run_id).data.params["learning_rate"]))
    assert rates.get("ia3"), rates  # the prior's IA3 config at least
    assert all(3e-3 <= lr <= 3e-2 for lr in rates["ia3"]) and 1e-2 in rates["ia3"]  # the prior's IA3 at 1e-2
    assert all(1e-4 <= lr <= 5e-3 for lr in rates["lora"])


def _figure_data(html_text: str) -> dict[str, list[dict]]:
    """fig id → its plotly traces, read from the Plotly.newPlot calls in the file."""
    import re

    from autopeft.report.png import decode_typed

    out = {}
    for match in re.finditer(r'Plotly\.newPlot\(\s*"fig-(\w+)",\s*', html_text):
        traces, _ = json.JSONDecoder().raw_decode(html_text, match.end())
        out[match.group(1)] = decode_typed(traces)
    return out


def test_report_is_written_and_logged(study):
    result, client = study.result, study.client
    path = result.report_path
    assert path is not None and path.is_file()
    text = path.read_text()
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs() in text  # self-contained: plotly.js inline, nothing fetched
    figures = _figure_data(text)
    assert set(figures) == {"pareto", "history", "curves", "importance", "family", "placement"}
    names = {key: {t.get("name") for t in traces} for key, traces in figures.items()}
    assert {"Pareto front", "registered"} <= names["pareto"]
    assert {"lora", "ia3"} & names["pareto"]
    registered = next(t for t in figures["pareto"] if t.get("name") == "registered")
    best = result.best
    assert registered["y"][0] == pytest.approx(best.metrics["accuracy"])
    assert "best so far" in names["history"] and "warm start" in names["history"]
    curves = [t for t in figures["curves"] if t.get("mode") == "lines+markers"]
    assert len(curves) == len(result.trials)  # every trial, pruned ones included
    assert "stopped: over a constraint" in names["curves"]
    assert [t["type"] for t in figures["importance"]] in (["bar"], [])
    assert {t["type"] for t in figures["family"]} <= {"box", "scatter"}
    heat = figures["placement"][0]
    assert heat["type"] == "heatmap" and len(heat["x"]) == 6 and "query" in heat["y"]
    # the parent MLflow run has the report and each figure as PNG
    listed = {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
    assert "report/report.html" in listed
    pngs = {a.path for a in client.list_artifacts(result.parent_run_id, "report/figures")}
    assert pngs == {f"report/figures/{k}.png" for k in figures}
    run = client.get_run(result.parent_run_id)
    assert run.data.tags["autopeft.report"] == "report/report.html"
    for key in figures:
        png = path.parent / "figures" / f"{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_report_command_rewrites_it(study, tmp_path):
    from typer.testing import CliRunner

    from autopeft.cli.app import app

    out = tmp_path / "rep"
    res = CliRunner().invoke(app, ["report", STUDY, "--tracking-uri", study.uri, "--out", str(out), "--no-log"])
    assert res.exit_code == 0, res.output
    assert set(_figure_data((out / "report.html").read_text())) >= {"pareto", "placement"}
    res = CliRunner().invoke(app, ["report", "nosuch", "--tracking-uri", study.uri, "--out", str(out)])
    assert res.exit_code == 2 and "no study named 'nosuch'" in res.output


def test_report_renders_in_headless_chromium(study, tmp_path):
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("headless render check needs Chromium (Debian: apt-get install -y chromium); not installed")
    text = study.result.report_path.read_text()
    # record every JS error (uncaught or from a promise) in the page itself, to read it back from the DOM
    trap = ("<script>window.__errors=[];window.addEventListener('error',e=>window.__errors.push(String(e.message)));"
            "window.addEventListener('unhandledrejection',e=>window.__errors.push(String(e.reason)));"
            "window.addEventListener('load',()=>setTimeout(()=>{const p=document.createElement('pre');"
            "p.id='js-errors';p.textContent=JSON.stringify(window.__errors);document.body.appendChild(p);},500));"
            "</script>")
    page = tmp_path / "page.html"
    page.write_text(text.replace("<head>", "<head>" + trap, 1))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--window-size=1200,3200"]
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20000
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    import re

    errors = re.search(r'<pre id="js-errors">(.*?)</pre>', dom)
    assert errors is not None, "the page did not finish loading"
    assert json.loads(errors.group(1).replace("&quot;", '"')) == []
    assert dom.count('class="main-svg"') >= 6  # plotly drew every figure


def test_warm_start_from_the_finished_study(study, tmp_path):
    """A second study (prepare only) seeded from the first by name takes its best configs."""
    from autopeft.config import WarmStartConfig
    from autopeft.study.warmstart import collect

    prepared = study.prepared
    points = collect(WarmStartConfig(sources=[STUDY], prior=False, top_k=2), prepared.resolved.space,
                     prepared.optuna_storage, trials=8)
    assert 1 <= len(points) <= 2 and all(p.source.startswith(f"study:{STUDY}#") for p in points)
    ostudy = optuna.load_study(study_name=STUDY, storage=prepared.optuna_storage)
    front = {t.number for t in ostudy.best_trials}
    assert int(points[0].source.rsplit("#", 1)[1]) in front
