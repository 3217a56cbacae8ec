"""The report's figures, HTML and PNG fallback on a synthetic study (no Ray, no MLflow)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from autopeft.model.placement import scan
from autopeft.report.png import _png_matplotlib, decode_typed
from autopeft.report.study_report import (
    FIGURES,
    SINGLE_POINT_LEGEND_LIMIT,
    StudyData,
    build_figures,
    load_study_data,
    placement_matrix,
    render_html,
    template_path,
)
from autopeft.schema import StudyRunTags, TrialRunTags


def _data() -> StudyData:
    rows = [
        {"trial_id": "a", "run_id": "r1", "outcome": "COMPLETE", "number": 0, "family": "lora", "warm_start": "prior:x",
         "accuracy": 0.8, "trainable_share": 0.01, "feasible": True, "step": 20.0,
         "params": {"adapter": "lora", "learning_rate": "0.0003", "lora.r": "8", "lora.alpha": "16",
                    "placement.layers": "all", "placement.roles": "query,value", "batch_size": "16"}},
        {"trial_id": "b", "run_id": "r2", "outcome": "COMPLETE", "number": 1, "family": "ia3", "warm_start": None,
         "accuracy": 0.7, "trainable_share": 0.001, "feasible": True, "step": 20.0,
         "params": {"adapter": "ia3", "learning_rate": "0.01", "placement.layers": "last-1",
                    "placement.roles": "all-linear"}},
        {"trial_id": "c", "run_id": "r3", "outcome": "PRUNED", "number": 2, "family": "lora", "warm_start": None,
         "accuracy": 0.6, "trainable_share": 0.02, "feasible": True, "step": 10.0,
         "params": {"adapter": "lora", "learning_rate": "0.001", "lora.r": "4", "lora.alpha": "8"}},
        {"trial_id": "d", "run_id": "r4", "outcome": "PRUNED", "number": 3, "family": "lora", "warm_start": None,
         "accuracy": 0.55, "trainable_share": 0.09, "feasible": False, "infeasible": 1.0, "step": 10.0, "params": {}},
    ]
    curves = {"a": [(10, 0.6), (20, 0.8)], "b": [(10, 0.65), (20, 0.7)], "c": [(10, 0.6)], "d": [(10, 0.55)]}
    return StudyData(study_name="s", parent_run_id="p", config={"selection": {"policy": "knee"}},
                     trials=pd.DataFrame(rows), curves=curves, objectives=[("accuracy", "max")],
                     axes=[("accuracy", "max"), ("trainable_share", "min")], constraints={"trainable_share": 0.05},
                     registered_trial="a", study_metrics={"test_accuracy": 0.79, "best_val_accuracy": 0.81},
                     selection_policy="knee", selection_reason="knee of the front: 0.8 at 1% trainable",
                     registered_version="models:/m/3")


def test_figures_show_what_the_study_did(tiny_bert):
    figures = build_figures(_data(), scan(tiny_bert))
    assert list(figures) == list(FIGURES)
    names = {key: [t.name for t in fig.data] for key, fig in figures.items()}
    assert "Pareto front" in names["pareto"] and "registered" in names["pareto"]
    assert "lora (infeasible)" not in names["pareto"]  # d is PRUNED: shown as pruned, not as a COMPLETE point
    assert {"stopped by ASHA", "stopped: over a constraint"} <= set(names["curves"])
    assert "warm start" in names["history"] and "best so far" in names["history"]
    assert figures["importance"].layout.annotations  # no Optuna study here: says why instead of failing
    assert figures["placement"].data[0].type == "heatmap"


def test_placement_matrix_counts_the_top_trials(tiny_bert):
    roles, layers, z, used = placement_matrix(_data(), scan(tiny_bert), top=2)
    assert used == 2 and layers == [0, 1]
    cell = dict(zip(roles, z, strict=True))
    assert cell["query"] == [0.5, 1.0]  # a: q/v on both layers; b: all-linear on the last
    assert cell["mlp_up"] == [0.0, 0.5]  # b: all-linear on the last layer only


def test_html_is_self_contained_with_every_figure(tiny_bert):
    from plotly.offline import get_plotlyjs

    text = render_html(_data(), build_figures(_data(), scan(tiny_bert)))
    assert get_plotlyjs() in text  # plotly.js inline: the file opens offline
    assert text.count(get_plotlyjs()) == 1  # once: the template's comment names the placeholders too
    assert text.count('id="fig-pareto"') == 1
    assert len(text) < 2 * len(get_plotlyjs())  # the report is plotly.js plus the study, not twice of both
    assert not re.search(r"<script[^>]*\ssrc=", text.replace(get_plotlyjs(), ""))
    assert not {"$title", "$summary", "$trials", "$plotlyjs", "$figures"} & set(re.findall(r"\$\w+", text.replace(get_plotlyjs(), "")))
    for key in FIGURES:
        match = re.search(rf'Plotly\.newPlot\(\s*"fig-{key}",\s*', text)
        assert match, key
        traces, _ = json.JSONDecoder().raw_decode(text, match.end())
        assert isinstance(traces, list)  # empty where the figure explains why it has no data
    start = re.search(r'Plotly\.newPlot\(\s*"fig-pareto",\s*', text).end()
    pareto = decode_typed(json.JSONDecoder().raw_decode(text, start)[0])
    assert next(t for t in pareto if t["name"] == "registered")["y"] == [0.8]
    assert "{$title}" not in text and "autopeft study s" in text
    assert {"$title", "$summary", "$trials", "$plotlyjs", "$figures"} <= set(re.findall(r"\$\w+", template_path().read_text()))


@pytest.mark.parametrize("key", list(FIGURES))
def test_matplotlib_renders_each_figure(tiny_bert, tmp_path, key):
    fig = build_figures(_data(), scan(tiny_bert))[key]
    out = tmp_path / f"{key}.png"
    _png_matplotlib(fig, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


# --- the review: which trial won, why, and where the registered adapter came from ---------------


class _Tables(HTMLParser):
    """Rows of every ``<table>`` in a page: (the table's class, [(row's class, [cell texts])])."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[tuple[str, list[str]]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append((dict(attrs).get("class") or "", []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append((dict(attrs).get("class") or "", []))
        elif tag in ("td", "th") and self.tables:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1][1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(text: str) -> dict[str, list[tuple[str, list[str]]]]:
    parser = _Tables()
    parser.feed(text)
    return dict(parser.tables)


def _html(data: StudyData | None = None) -> str:
    from plotly.offline import get_plotlyjs

    data = data or _data()
    return render_html(data, build_figures(data, None)).replace(get_plotlyjs(), "")


def test_summary_gives_the_registered_trial_its_hyperparameters_metrics_and_reason():
    text = _html()
    assert "Registered adapter: trial a (lora)" in text
    rows = {k: v for _, (k, v) in _tables(text)["summary registered"]}
    assert rows["trial"] == "a (Optuna trial #0, MLflow run r1)"
    assert rows["family"] == "lora"
    assert rows["learning rate"] == "3.00e-04"
    assert rows["lora r"] == "8" and rows["lora alpha"] == "16"
    assert rows["placement layers"] == "all" and rows["placement roles"] == "query,value"
    assert rows["batch size"] == "16" and "adapter" not in rows
    assert rows["validation accuracy"].startswith("0.8000 at step 20")  # the trial's last evaluation
    assert "0.8100" in rows["validation accuracy"]  # the registered adapter reloaded (best_val_accuracy)
    assert rows["test accuracy"] == "0.7900"  # the study run's test_accuracy
    assert rows["chosen by"] == "policy knee: knee of the front: 0.8 at 1% trainable"
    assert rows["registered as"] == "models:/m/3"
    summary = {k: v for _, (k, v) in _tables(text)["summary"]}
    assert summary["trials"] == "2 COMPLETE, 2 PRUNED" and summary["MLflow study run"] == "p"


def test_summary_says_which_final_training_evaluation_was_registered_or_why_none_was():
    data = _data()
    assert "final training" not in {k for _, (k, v) in _tables(_html(data))["summary registered"]}
    data.study_metrics = {**data.study_metrics, "final_accuracy": 0.83, "final_training_kept_step": 350}
    rows = {k: v for _, (k, v) in _tables(_html(data))["summary registered"]}
    assert rows["final training"] == ("trained on from the initialisation before registration: the weights of its "
                                      "best evaluation (step 350) are registered; validation accuracy 0.8300 at its "
                                      "last evaluation")  # a study recorded before the start was
    data.final_training_start = "trial t1's adapter, at 0.5 times its learning rate"
    rows = {k: v for _, (k, v) in _tables(_html(data))["summary registered"]}
    assert rows["final training"].startswith(
        "trained on from trial t1's adapter, at 0.5 times its learning rate before registration: the weights")
    data.final_training_error = "the final training's best validation accuracy 0.7870 (step 350) is worse than " \
                                "the selected trial's 0.8060"
    rows = {k: v for _, (k, v) in _tables(_html(data))["summary registered"]}
    assert rows["final training"] == f"not registered ({data.final_training_error}): the trial's own adapter is"


def test_summary_says_why_no_learning_rate_probe_ran():
    data = _data()
    assert "learning-rate calibration" not in {k for _, (k, v) in _tables(_html(data))["summary"]}
    data.calibration_skipped = "the probes of lora, dora (100 steps) would leave budget.search_steps (400) room ..."
    summary = {k: v for _, (k, v) in _tables(_html(data))["summary"]}
    assert summary["learning-rate calibration"] == f"not run: {data.calibration_skipped}"


def test_summary_without_a_test_split_or_a_registered_trial_says_so():
    data = _data()
    data.study_metrics = {}
    rows = {k: v for _, (k, v) in _tables(_html(data))["summary registered"]}
    assert rows["test accuracy"] == "not measured (no test split)"
    assert rows["validation accuracy"] == "0.8000 at step 20 (the trial's last evaluation)"
    data.registered_trial = None
    text = _html(data)
    assert "no trial was registered" in text and "summary registered" not in text
    assert not [c for c, _ in _tables(text)["trials"] if c == "winner"]


def test_table_lists_every_trial_winner_first_then_by_outcome_and_metric():
    data = _data()
    extra = {"trial_id": "e<script>", "run_id": "r5", "outcome": "FAIL", "number": 4, "family": "lora",
             "warm_start": None, "accuracy": float("nan"), "trainable_share": 0.01, "feasible": True,
             "step": float("nan"), "params": {"adapter": "lora", "lora.r": "<b>", "placement.layer_0": "True"}}
    better = {"trial_id": "f", "run_id": "r6", "outcome": "COMPLETE", "number": 5, "family": "lora", "warm_start": None,
              "accuracy": 0.9, "trainable_share": 0.2, "feasible": False, "params": {"adapter": "lora"}}
    data.trials = pd.concat([data.trials, pd.DataFrame([extra, better])], ignore_index=True)
    data.curves["f"] = [(10, 0.7), (20, 0.85), (30, 0.9)]  # no ``step`` metric: the curve's last point
    text = _html(data)
    head, *rows = _tables(text)["trials"]
    assert head[1] == ["", "trial", "Optuna #", "family", "learning rate", "family parameters", "placement",
                       "outcome", "steps", "accuracy (last evaluation)"]
    assert [cells[1] for _, cells in rows] == ["a", "f", "b", "c", "d", "e<script>"]
    winner = rows[0]
    assert winner[0] == "winner" and winner[1][0] == "\u2605 registered"
    assert winner[1][2:] == ["0", "lora", "3.00e-04", "alpha=16, r=8", "layers all; roles query,value", "COMPLETE",
                             "20", "0.8000"]
    assert rows[1][1][-2:] == ["30", "0.9000"]
    assert [c for c, _ in rows].count("winner") == 1
    assert rows[3][1][7:] == ["PRUNED", "10", "0.6000"]
    failed = rows[-1][1]
    assert failed[5] == "r=<b>" and failed[7:] == ["FAIL", "-", "-"]  # the mask bit is not a parameter
    sections = text.split("<body>")[1].split('<h2 id="pareto">')[0]  # summary and table, not the figures
    assert "e&lt;script&gt;" in sections and "r=&lt;b&gt;" in sections and "<script>" not in sections


def test_registered_curve_is_thick_and_named_every_trial_one_line():
    fig = build_figures(_data(), None)["curves"]
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 4  # one per trial with a curve (the end-to-end test counts them so)
    winner = [t for t in lines if "registered" in t.name]
    assert len(winner) == 1 and winner[0].name == "registered: trial a (lora)" and winner[0].showlegend
    assert winner[0].line.width >= 2 * max(t.line.width for t in lines if t is not winner[0])
    assert lines[-1] is winner[0]  # drawn last, on top of the others
    assert list(winner[0].y) == [0.6, 0.8]


def test_trial_stopped_after_one_evaluation_is_a_visible_point_with_a_legend_entry():
    fig = build_figures(_data(), None)["curves"]
    single = {t.name: t for t in fig.data if t.mode == "lines+markers" and len(t.x) == 1}
    assert set(single) == {"trial c (lora): stopped after 1 evaluation", "trial d (lora): stopped after 1 evaluation"}
    for trace in single.values():
        assert "markers" in trace.mode and trace.showlegend is not False and trace.marker.size >= 10


def test_many_single_evaluation_trials_share_a_legend_entry_per_family():
    data = _data()
    many = [{"trial_id": f"s{i}", "run_id": f"rs{i}", "outcome": "PRUNED", "number": 10 + i,
             "family": "lora" if i % 2 else "ia3", "accuracy": 0.5, "trainable_share": 0.01, "feasible": True,
             "params": {}} for i in range(SINGLE_POINT_LEGEND_LIMIT + 1)]
    data.trials = pd.concat([data.trials, pd.DataFrame(many)], ignore_index=True)
    data.curves.update({r["trial_id"]: [(10, 0.5)] for r in many})
    fig = build_figures(data, None)["curves"]
    single = [t for t in fig.data if t.mode == "lines+markers" and len(t.x) == 1]
    assert len(single) == len(many) + 2  # every trial still drawn
    legend = {t.name for t in single if t.showlegend is not False}
    assert legend == {"lora: stopped after 1 evaluation (7 trials)", "ia3: stopped after 1 evaluation (6 trials)"}
    assert all(t.marker.size >= 10 for t in single)


def _optuna_study(completed: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    distributions = {"learning_rate": FloatDistribution(1e-5, 1e-2, log=True), "lora.r": IntDistribution(2, 16)}
    for i in range(completed):
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": 10 ** (-5 + i * 0.5), "lora.r": 2 + (i * 5) % 15}, distributions=distributions,
            value=0.5 + 0.05 * i))
    study.add_trial(optuna.trial.create_trial(params={"learning_rate": 1e-3, "lora.r": 4},
                                              distributions=distributions, state=optuna.trial.TrialState.PRUNED))
    return study


def test_importances_from_fewer_than_five_completed_trials_carry_a_caveat():
    data = _data()
    data.study = _optuna_study(3)
    fig = build_figures(data, None)["importance"]
    assert [t.type for t in fig.data] == ["bar"]
    assert "only 3 trials COMPLETEd" in fig.layout.title.text and "not reliable" in fig.layout.title.text
    text = _html(data)
    section = text.split('<h2 id="importance">')[1].split('<div class="figure">')[0]
    assert "only 3 trials COMPLETEd" in section and "fewer than 5 completed trials are not reliable" in section

    data.study = _optuna_study(5)
    fig = build_figures(data, None)["importance"]
    assert [t.type for t in fig.data] == ["bar"] and "not reliable" not in fig.layout.title.text
    assert 'class="note caveat"' not in _html(data)


def test_importance_caveat_counts_the_trial_runs_without_optuna():
    text = _html()  # no Optuna study: the figure says so; the 2 COMPLETE trial runs give the caveat
    section = text.split('<h2 id="importance">')[1].split('<div class="figure">')[0]
    assert "only 2 trials COMPLETEd" in section


def test_matplotlib_keeps_the_caveat_and_the_thick_line(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _data()
    data.study = _optuna_study(3)
    figures = build_figures(data, None)
    drawn: dict[str, object] = {}
    real = plt.subplots

    def spy(*args, **kwargs):
        figure, ax = real(*args, **kwargs)
        drawn["ax"] = ax
        return figure, ax

    plt.subplots = spy
    try:
        _png_matplotlib(figures["importance"], tmp_path / "importance.png")
        title = drawn["ax"].get_title()
        _png_matplotlib(figures["curves"], tmp_path / "curves.png")
        widths = sorted(line.get_linewidth() for line in drawn["ax"].get_lines())
    finally:
        plt.subplots = real
    assert "\nCaveat: only 3 trials COMPLETEd" in title and "<" not in title
    assert widths[-1] == 4 and widths[0] < 2


class _Client:
    """The MlflowClient calls ``load_study_data`` makes, over one study of two trials."""

    def __init__(self, tmp_path: Path) -> None:
        self.tracking_uri = "fake://"
        config = {"objective": {"metric": "accuracy", "mode": "max"}, "tracking": {"registered_model": "m"},
                  "selection": {"policy": "knee"}}
        (tmp_path / "config.json").write_text(json.dumps(config))
        self._dir = tmp_path
        parent_tags = StudyRunTags(study="s", kind="study", best_trial_id="t1_00001", best_trial_run_id="run1",
                                   selection_policy="best", selection_reason="highest accuracy").to_tags()
        self.parent = _run("parent", parent_tags, {}, {"test_accuracy": 0.77, "best_val_accuracy": 0.8})
        self.trials = [
            _run("run0", TrialRunTags(trial_id="t1_00000", outcome="PRUNED").to_tags(), {"adapter": "ia3"},
                 {"accuracy": 0.6, "step": 5.0}, start=1),
            _run("run1", TrialRunTags(kind="trial", trial_id="t1_00001", outcome="COMPLETE").to_tags(),
                 {"adapter": "lora", "learning_rate": "0.0005", "lora.r": "8"}, {"accuracy": 0.8, "step": 10.0}, start=2),
            # the final training, nested under the study too: not a trial
            _run("run2", {**TrialRunTags(parent_run_id="parent").to_tags(), "autopeft.run_kind": "final_training"},
                 {"adapter": "lora"}, {"accuracy": 0.82, "step": 20.0}, start=3),
        ]
        self.versions = [SimpleNamespace(version="1", tags={"autopeft.study": "other", "autopeft.trial_id": "t1_00001"}),
                         SimpleNamespace(version="2", tags={"autopeft.study": "s", "autopeft.trial_id": "t1_00001"}),
                         SimpleNamespace(version="3", tags={"autopeft.study": "s", "autopeft.trial_id": "t1_00000"})]

    def search_experiments(self):
        return [SimpleNamespace(experiment_id="1")]

    def search_runs(self, experiment_ids, filter_string="", **kwargs):
        return [self.parent] if "run_kind" in filter_string else self.trials

    def download_artifacts(self, run_id, path, dst):
        return str(self._dir / path)

    def get_metric_history(self, run_id, key):
        points = {"run0": [(5, 0.6)], "run1": [(5, 0.7), (10, 0.8)]}[run_id]
        return [SimpleNamespace(step=s, value=v) for s, v in points]

    def search_model_versions(self, filter_string):
        assert filter_string == "name = 'm'"
        return self.versions


def _run(run_id, tags, params, metrics, start=0):
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, experiment_id="1", start_time=start, status="FINISHED"),
                           data=SimpleNamespace(tags=tags, params=params, metrics=metrics))


def test_load_study_data_reads_the_selection_test_metric_and_registered_version(tmp_path):
    client = _Client(tmp_path)
    data = load_study_data(client, "s")
    assert data.registered_trial == "t1_00001" and data.registered_version == "models:/m/2"
    assert data.selection_policy == "best" and data.selection_reason == "highest accuracy"
    assert data.study_metrics["test_accuracy"] == 0.77
    assert list(data.trials.trial_id) == ["t1_00000", "t1_00001"]  # the autopeft.trial_id tags
    rows = {k: v for _, (k, v) in _tables(_html(data))["summary registered"]}
    assert rows["test accuracy"] == "0.7700" and rows["chosen by"] == "policy best: highest accuracy"
    assert rows["trial"] == "t1_00001 (Optuna trial #1, MLflow run run1)" and rows["lora r"] == "8"
    client.versions = []
    assert load_study_data(client, "s").registered_version is None


def test_fallback_template_has_every_section(monkeypatch):
    import autopeft.report.study_report as study_report

    monkeypatch.setattr(study_report, "template_path", lambda: None)  # a wheel without dashboards/
    text = _html()
    assert "Registered adapter: trial a (lora)" in text and '<table class="trials">' in text
    assert 'id="fig-curves"' in text
    assert not {"$title", "$summary", "$trials", "$figures"} & set(re.findall(r"\$\w+", text))


def _judged_data() -> StudyData:
    data = _data()
    data.config = {**data.config, "task": {"kind": "sequence_classification"}}
    data.trials["trivial"] = [False, False, True, None]  # d: a trial that reported no judgement
    data.study_metrics = {**data.study_metrics, "trivial_accuracy": 0.509}
    return data


def test_the_trivial_level_is_a_line_on_every_metric_curve_and_counted_in_the_summary():
    figures = build_figures(_judged_data(), None)
    for key in ("curves", "history", "family"):
        (line,) = [t for t in figures[key].data if t.name and t.name.startswith("trivial predictor")]
        assert line.name == "trivial predictor (majority class): 0.5090" and list(line.y) == [0.509, 0.509]
    text = _html(_judged_data())
    summary = {k: v for _, (k, v) in _tables(text)["summary"]}
    assert summary["trivial predictor"] == ("majority class: validation accuracy 0.5090; 1 of 3 trials ended at that "
                                            "level (told to the sampler as pruned)")
    assert "PRUNED (trivial)" in text
    # a study that did not measure it draws no such line
    assert not [t for t in build_figures(_data(), None)["curves"].data if (t.name or "").startswith("trivial")]
