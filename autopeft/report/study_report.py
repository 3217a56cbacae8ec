"""The study report: one self-contained HTML file (plotly, JS inline) plus each figure as PNG,
logged to the study's parent MLflow run so the MLflow UI shows them.

Figures: the Pareto front (colour by adapter family, the registered point marked), the
optimisation history, the learning curve of every trial including pruned ones (where ASHA
stopped each), parameter importances (Optuna's evaluator), the task metric by adapter family and
a placement heat map (layer x module role among the top trials).

Above the figures: the study at a glance, the registered trial (its hyperparameters, validation
and test metric, why it was chosen, the model version it became) and a table of every trial
(``autopeft.report.sections``). The registered trial's curve is drawn thick and named in the
legend; a trial stopped after one evaluation is a visible point with a legend entry; the
importances carry a caveat when fewer than 5 trials COMPLETEd.

The data come from MLflow (trial runs: outcome, params, final metrics, metric curves; the study
run: the selection, the test metrics; the registry: the version) and the study's Optuna storage
(trial numbers, importances, constraints); the searcher stores each Optuna trial's Ray trial id,
which joins the two. The PNGs come from ``autopeft.report.png`` (kaleido where it renders, otherwise
matplotlib from the same figure data).
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.errors import ConfigError
from autopeft.report.png import write_pngs
from autopeft.report.sections import calibration_figures, importance_caveat, summary_html, trials_html
from autopeft.schema import Artifact, Metric, Outcome, RunKind, StudyRunTags, TrialAttr, TrialRunTags, VersionTag

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go
    from mlflow import MlflowClient

    from autopeft.model.placement import ModelStructure

log = logging.getLogger(__name__)

#: Figure keys in report order, with their titles.
FIGURES: dict[str, str] = {
    "pareto": "Pareto front",
    "history": "Optimisation history",
    "curves": "Learning curves (every trial; pruned ones end where ASHA stopped them)",
    "importance": "Parameter importances",
    "family": "Task metric by adapter family",
    "placement": "Placement among the top trials (layer x module role)",
}
REPORT_ARTIFACT_DIR = Artifact.REPORT_DIR  # kept importable here
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]


#: Used where ``dashboards/study_report.html`` is not at hand (a wheel install without the repo).
_FALLBACK_TEMPLATE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>$title</title>
<script type="text/javascript">$plotlyjs</script></head><body style="font-family:sans-serif">
<h1>$title</h1>$summary$trials$figures</body></html>
"""


def template_path() -> Path | None:
    """The report template: the packaged copy, else the source tree's ``dashboards/``."""
    for candidate in (Path(__file__).parents[1] / "dashboards" / "study_report.html",
                      Path(__file__).parents[2] / "dashboards" / "study_report.html"):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class StudyData:
    """Everything the figures need, read once."""

    study_name: str
    parent_run_id: str
    config: dict[str, Any]
    trials: pd.DataFrame  # one row per trial run
    curves: dict[str, list[tuple[int, float]]]  # trial id → (step, task metric)
    objectives: list[tuple[str, str]]
    axes: list[tuple[str, str]]
    constraints: dict[str, float]
    registered_trial: str | None
    study: Any = None  # the Optuna study, when its storage is reachable
    notes: list[str] = field(default_factory=list)
    study_metrics: dict[str, float] = field(default_factory=dict)  # the study run's (test_<metric>, ...)
    selection_policy: str | None = None
    selection_reason: str | None = None  # why the policy chose the registered trial
    registered_version: str | None = None  # models:/<name>/<version> the registered trial became
    final_training_error: str | None = None  # why the final training's adapter was not registered
    final_training_start: str | None = None  # what it started from (the trial's adapter, or the initialisation)
    calibration_skipped: str | None = None  # why no learning-rate probe ran though the calibration was on

    @property
    def metric(self) -> str:
        return self.objectives[0][0]

    @property
    def trivial_value(self) -> float | None:
        """The trivial predictor's validation value of the objective's metric, where the study
        measured it (``trivial_<metric>`` on the study run)."""
        value = self.study_metrics.get(Metric.trivial(self.metric))
        return float(value) if value is not None and math.isfinite(float(value)) else None

    @property
    def trivial_name(self) -> str:
        """What the trivial predictor is for the study's task kind."""
        # deferred: the task kinds import torch, which reading a finished study does without
        from autopeft.tasks import get_task
        from autopeft.tasks.trivial import predictor_name

        kind = (self.config.get("task") or {}).get("kind")
        try:
            return predictor_name(get_task(str(kind)))
        except ConfigError:
            return "trivial predictor"

    @property
    def mode(self) -> str:
        return self.objectives[0][1]


def find_parent_run(client: MlflowClient, study_name: str) -> Any:
    """The study's parent run (the latest, should a name have been reused)."""
    experiments = client.search_experiments()
    query = StudyRunTags.search_filter(study_name)
    runs = client.search_runs([e.experiment_id for e in experiments], filter_string=query,
                              order_by=["attributes.start_time DESC"], max_results=1) if experiments else []
    if not runs:
        raise ConfigError(f"STUDY: no study named {study_name!r} in the MLflow store {client.tracking_uri}")
    return runs[0]


def registered_version(client: MlflowClient, config: dict[str, Any], study_name: str,
                       trial_id: str | None) -> str | None:
    """``models:/<name>/<version>`` of the version registered from ``trial_id`` of the study (the
    latest, should a resumed study have registered twice); None where the registry has none."""
    name = (config.get("tracking") or {}).get("registered_model")
    if not name or not trial_id:
        return None
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except Exception:  # noqa: BLE001 - no registry, or no such model: the report says nothing
        return None
    # the two keys every release wrote as tags (the rest of the lineage moved to lineage.json)
    found = [int(v.version) for v in versions
             if (v.tags or {}).get(VersionTag.STUDY) == study_name and (v.tags or {}).get(VersionTag.TRIAL_ID) == trial_id]
    return f"models:/{name}/{max(found)}" if found else None


def load_study_data(client: MlflowClient, study_name: str) -> StudyData:
    import optuna
    import pandas as pd

    from autopeft.objectives import COST_METRICS, pareto_axes

    parent = find_parent_run(client, study_name)
    parent_id = parent.info.run_id
    parent_tags = StudyRunTags.from_tags(parent.data.tags)
    with tempfile.TemporaryDirectory(prefix="autopeft-report-") as directory:
        config = json.loads(Path(client.download_artifacts(parent_id, Artifact.CONFIG, directory)).read_text())
    objectives = [(o["metric"], o["mode"]) for o in (config.get("objectives") or [config["objective"]])]
    constraints = {k[len("max_"):]: float(v) for k, v in (config.get("constraints") or {}).items()
                   if k.startswith("max_") and v is not None}
    notes: list[str] = []

    study = None
    storage = parent_tags.optuna_storage
    by_ray: dict[str, Any] = {}
    if storage:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
            by_ray = {t.user_attrs[TrialAttr.RAY_TRIAL_ID]: t for t in study.get_trials(deepcopy=False)
                      if TrialAttr.RAY_TRIAL_ID in t.user_attrs}
        except Exception as exc:  # noqa: BLE001 - the report still shows what MLflow has
            notes.append(f"Optuna storage {storage} not readable ({' '.join(str(exc).split())[:120]}): "
                         "no importances, trial order by start time")
    runs = client.search_runs([parent.info.experiment_id], filter_string=TrialRunTags.children_filter(parent_id),
                              max_results=10000)
    rows = []
    curves: dict[str, list[tuple[int, float]]] = {}
    metric = objectives[0][0]
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        tags = TrialRunTags.from_tags(run.data.tags)
        if tags.kind not in (None, RunKind.TRIAL):  # another nested run of the study (its final training)
            continue
        trial_id = tags.trial_id or run.info.run_id
        ot = by_ray.get(trial_id)
        row: dict[str, Any] = {
            "trial_id": trial_id, "run_id": run.info.run_id,
            "outcome": tags.outcome or run.info.status,
            "number": ot.number if ot is not None else None,
            "family": run.data.params.get("adapter") or (ot.user_attrs.get(TrialAttr.FAMILY) if ot else None),
            "warm_start": tags.warm_start or (ot.user_attrs.get(TrialAttr.WARM_START) if ot else None),
            "trivial": tags.trivial,
            "params": dict(run.data.params),
        }
        for key, value in run.data.metrics.items():
            row[key] = value
        if ot is not None:  # measurements the searcher stored (also for trials MLflow lacks metrics of)
            for name in COST_METRICS:
                row.setdefault(name, ot.user_attrs.get(TrialAttr.measurement(name)))
            constraint_values = ot.system_attrs.get("constraints")
            row["feasible"] = None if constraint_values is None else all(c <= 0 for c in constraint_values)
        history = client.get_metric_history(run.info.run_id, metric)
        curves[trial_id] = sorted((int(m.step), float(m.value)) for m in history)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ConfigError(f"STUDY: study {study_name!r} has no trial runs to report on")
    if "feasible" not in frame or frame["feasible"].isna().all():
        from autopeft.objectives import within

        frame["feasible"] = [within(r, constraints) for r in frame.to_dict("records")]
    if frame["number"].isna().any():  # no Optuna link: the order the trials started in
        frame["number"] = range(len(frame))
    frame["family"] = frame["family"].fillna("?")
    return StudyData(study_name=study_name, parent_run_id=parent_id, config=config, trials=frame, curves=curves,
                     objectives=objectives, axes=pareto_axes(objectives), constraints=constraints,
                     registered_trial=parent_tags.best_trial_id, study=study, notes=notes,
                     study_metrics=dict(parent.data.metrics),
                     selection_policy=parent_tags.selection_policy or (config.get("selection") or {}).get("policy"),
                     selection_reason=parent_tags.selection_reason,
                     final_training_error=parent_tags.final_training_error,
                     final_training_start=parent_tags.final_training_start,
                     calibration_skipped=parent_tags.calibration_skipped,
                     registered_version=registered_version(client, config, study_name, parent_tags.best_trial_id))


# --- figures ------------------------------------------------------------------------------------


def _colors(data: StudyData) -> dict[str, str]:
    return {fam: _PALETTE[i % len(_PALETTE)] for i, fam in enumerate(sorted(data.trials["family"].unique()))}


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=460,
                      legend={"orientation": "v"}, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


def _empty(title: str, message: str) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, template="plotly_white", height=300, xaxis_visible=False, yaxis_visible=False)
    return fig


def fig_pareto(data: StudyData) -> go.Figure:
    import plotly.graph_objects as go

    from autopeft.objectives import pareto_mask

    (metric, mode), (cost, cost_mode) = data.axes[0], data.axes[1]
    t = data.trials
    if cost not in t or metric not in t:
        return _empty(FIGURES["pareto"], f"no trial reported {metric} and {cost}")
    t = t[t[metric].notna() & t[cost].notna()]
    colors = _colors(data)
    fig = go.Figure()
    for fam, group in t.groupby("family"):
        for label, part, symbol in (
            ("", group[(group.outcome == Outcome.COMPLETE) & group.feasible.fillna(True).astype(bool)], "circle"),
            (" (infeasible)", group[(group.outcome == Outcome.COMPLETE) & ~group.feasible.fillna(True).astype(bool)], "x"),
            (" (pruned)", group[group.outcome != Outcome.COMPLETE], "circle-open"),
        ):
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part[cost], y=part[metric], mode="markers", name=f"{fam}{label}",
                marker={"color": colors[fam], "symbol": symbol, "size": 10 if symbol == "circle" else 8},
                text=[f"trial {r.trial_id}" for r in part.itertuples()],
                hovertemplate="%{text}<br>" + cost + "=%{x:.4g}<br>" + metric + "=%{y:.4f}<extra></extra>"))
    pool = t[(t.outcome == Outcome.COMPLETE) & t.feasible.fillna(True).astype(bool)]
    if not pool.empty:
        axes = data.axes
        present = [(m, md) for m, md in axes if m in pool]
        mask = pareto_mask(pool[[m for m, _ in present]].to_numpy(dtype=float), [md for _, md in present])
        front = pool[mask].sort_values(cost)
        fig.add_trace(go.Scatter(x=front[cost], y=front[metric], mode="lines", name="Pareto front",
                                 line={"color": "#444", "dash": "dot", "shape": "hv" if len(axes) == 2 else "linear"}))
    reg = t[t.trial_id == data.registered_trial]
    if not reg.empty:
        fig.add_trace(go.Scatter(x=reg[cost], y=reg[metric], mode="markers", name="registered",
                                 marker={"symbol": "star", "size": 20, "color": "gold",
                                         "line": {"color": "black", "width": 1}}))
    for name, limit in data.constraints.items():
        if name == cost:
            fig.add_vline(x=limit, line_dash="dash", line_color="red", annotation_text=f"max {name}")
    fig = _layout(fig, FIGURES["pareto"], f"{cost} ({cost_mode})", f"{metric} ({mode})")
    values = t[cost].to_numpy(dtype=float)
    if len(values) and values.min() > 0 and values.max() / values.min() > 50:
        fig.update_xaxes(type="log")
    return fig


def fig_history(data: StudyData) -> go.Figure:
    import plotly.graph_objects as go

    metric, mode = data.objectives[0]
    t = data.trials.sort_values("number")
    t = t[t[metric].notna()] if metric in t else t.iloc[0:0]
    if t.empty:
        return _empty(FIGURES["history"], f"no trial reported {metric}")
    fig = go.Figure()
    styles = {Outcome.COMPLETE: ("circle", "#1f77b4"), Outcome.PRUNED: ("circle-open", "#999"),
              Outcome.FAIL: ("x", "#d62728")}
    for outcome, group in t.groupby("outcome"):
        symbol, color = styles.get(str(outcome), ("square", "#555"))
        fig.add_trace(go.Scatter(x=group["number"], y=group[metric], mode="markers", name=str(outcome),
                                 marker={"symbol": symbol, "color": color, "size": 9},
                                 text=[f"trial {r.trial_id} {r.family}" for r in group.itertuples()]))
    warm = t[t.warm_start.notna()] if "warm_start" in t else t.iloc[0:0]
    if not warm.empty:
        fig.add_trace(go.Scatter(x=warm["number"], y=warm[metric], mode="markers", name="warm start",
                                 marker={"symbol": "diamond-open", "size": 15, "color": "#2ca02c"},
                                 text=list(warm["warm_start"])))
    done = t[t.outcome == Outcome.COMPLETE]
    if not done.empty:
        best = done[metric].cummax() if mode == "max" else done[metric].cummin()
        fig.add_trace(go.Scatter(x=done["number"], y=best, mode="lines", name="best so far",
                                 line={"shape": "hv", "color": "#1f77b4"}))
    reg = t[t.trial_id == data.registered_trial]
    if not reg.empty:
        fig.add_trace(go.Scatter(x=reg["number"], y=reg[metric], mode="markers", name="registered",
                                 marker={"symbol": "star", "size": 18, "color": "gold",
                                         "line": {"color": "black", "width": 1}},
                                 text=[f"trial {r.trial_id} {r.family} (registered)" for r in reg.itertuples()]))
    _add_trivial_line(fig, data, float(t["number"].min()), float(t["number"].max()))
    return _layout(fig, FIGURES["history"], "trial (Optuna number)", metric)


#: Up to this many trials stopped after one evaluation get a legend entry each (named by trial id);
#: more share one per family, so a study with a grace period of one keeps a readable legend.
SINGLE_POINT_LEGEND_LIMIT = 10


def fig_curves(data: StudyData) -> go.Figure:
    """Every trial's validation curve, one ``lines+markers`` trace each: the registered trial's
    thick and named in the legend, drawn last (on top); a trial stopped after a single evaluation
    a visible point with a legend entry of its own; an x where ASHA or a constraint stopped one."""
    import plotly.graph_objects as go

    colors = _colors(data)
    fig = go.Figure()
    shown: set[str] = set()
    rows = sorted(data.trials.itertuples(), key=lambda r: r.trial_id == data.registered_trial)  # winner last
    single = [r for r in rows if len(data.curves.get(r.trial_id) or []) == 1 and r.outcome != Outcome.COMPLETE]
    per_trial = len(single) <= SINGLE_POINT_LEGEND_LIMIT
    single_by_family = {fam: sum(r.family == fam for r in single) for fam in {r.family for r in single}}
    for row in rows:
        curve = data.curves.get(row.trial_id) or []
        if not curve:
            continue
        steps, values = zip(*curve, strict=True)
        pruned = row.outcome != Outcome.COMPLETE
        line: dict[str, Any] = {"color": colors[row.family], "dash": "dot" if pruned else "solid", "width": 1.5}
        marker: dict[str, Any] = {"size": 5}
        if row.trial_id == data.registered_trial:
            name = f"registered: trial {row.trial_id} ({row.family})"
            line = {**line, "width": 4, "dash": "solid"}
            marker = {"size": 9, "symbol": "star", "line": {"color": "black", "width": 1}}
        elif len(steps) == 1 and pruned:
            # one point: no line to see, so a marker big enough to find, with its own legend entry
            name = (f"trial {row.trial_id} ({row.family}): stopped after 1 evaluation" if per_trial else
                    f"{row.family}: stopped after 1 evaluation ({single_by_family[row.family]} trials)")
            marker = {"size": 11, "symbol": "circle", "line": {"color": "black", "width": 1}}
        else:
            name = f"{row.family}" + (" (pruned)" if pruned else "")
            if len(steps) == 1:
                marker = {"size": 11}
        fig.add_trace(go.Scatter(
            x=list(steps), y=list(values), mode="lines+markers", name=name, legendgroup=name,
            showlegend=name not in shown, line=line, marker={"color": colors[row.family], **marker},
            text=[f"trial {row.trial_id} ({row.family}, {row.outcome})"] * len(steps),
            hovertemplate="%{text}<br>step %{x}: %{y:.4f}<extra></extra>"))
        shown.add(name)
        if pruned and row.outcome == Outcome.PRUNED:
            # a trial over a constraint stops itself (metric ``infeasible``); the others ASHA stopped.
            # Open symbols: the trial's own last point stays visible beneath
            why = "stopped: over a constraint" if getattr(row, "infeasible", 0) == 1 else "stopped by ASHA"
            fig.add_trace(go.Scatter(x=[steps[-1]], y=[values[-1]], mode="markers", name=why,
                                     legendgroup=why, showlegend=why not in shown,
                                     marker={"symbol": "x" if why == "stopped by ASHA" else "square-x-open",
                                             "size": 11, "color": "#d62728"},
                                     text=[f"trial {row.trial_id} stopped at step {steps[-1]}"]))
            shown.add(why)
    if not fig.data:
        return _empty(FIGURES["curves"], "no trial reported a curve")
    reached = [step for curve in data.curves.values() for step, _ in curve]
    _add_trivial_line(fig, data, min(reached), max(reached))
    return _layout(fig, FIGURES["curves"], "training step", data.metric)


def _add_trivial_line(fig: go.Figure, data: StudyData, x0: Any, x1: Any) -> None:
    """The trivial predictor's validation metric across ``x0..x1``: a trace (not a layout
    shape), so the PNG drawn without kaleido has it too."""
    import plotly.graph_objects as go

    value = data.trivial_value
    if value is None:
        return
    fig.add_trace(go.Scatter(x=[x0, x1], y=[value, value], mode="lines",
                             name=f"trivial predictor ({data.trivial_name}): {value:.4f}",
                             line={"color": "#555", "dash": "dash", "width": 1.5}, hoverinfo="name"))


def fig_importance(data: StudyData) -> go.Figure:
    import optuna
    import plotly.graph_objects as go

    if data.study is None:
        return _empty(FIGURES["importance"], "the Optuna study is not readable")
    complete = data.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return _empty(FIGURES["importance"], f"{len(complete)} COMPLETE trial(s): importances need at least 2")
    try:
        # fANOVA: variance-based, so the objective's direction does not matter (PED-ANOVA, Optuna's
        # default, ranks by what reaches *low* values); seeded so the report is reproducible
        importances = optuna.importance.get_param_importances(
            data.study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=lambda t: t.values[0])
    except Exception as exc:  # noqa: BLE001 - e.g. no parameter varies across the completed trials
        return _empty(FIGURES["importance"], f"not computable: {' '.join(str(exc).split())[:120]}")
    if not importances:
        return _empty(FIGURES["importance"], "no parameter shared by the completed trials varies")
    names = list(importances)[::-1]
    caveat = importance_caveat(data)
    fig = go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h", name="importance",
                           marker={"color": "#1f77b4" if caveat is None else "#9ab"}))
    fig = _layout(fig, FIGURES["importance"] + f" for {data.metric} (fANOVA over parameters shared by "
                  f"{len(complete)} COMPLETE trials)", "importance", "parameter")
    if caveat is not None:  # under the title, in the PNG too
        fig.update_layout(title_text=f"{fig.layout.title.text}<br><sup>{caveat}</sup>", margin_t=90)
    return fig


def fig_family(data: StudyData) -> go.Figure:
    import plotly.graph_objects as go

    metric = data.metric
    t = data.trials[data.trials[metric].notna()] if metric in data.trials else data.trials.iloc[0:0]
    if t.empty:
        return _empty(FIGURES["family"], f"no trial reported {metric}")
    colors = _colors(data)
    fig = go.Figure()
    for fam, group in t.groupby("family"):
        done = group[group.outcome == Outcome.COMPLETE]
        fig.add_trace(go.Box(x=[fam] * len(done), y=done[metric], name=f"{fam}", boxpoints="all", jitter=0.3,
                             pointpos=0, marker={"color": colors[fam]}, line={"color": colors[fam]}))
        stopped = group[group.outcome != Outcome.COMPLETE]
        if not stopped.empty:
            fig.add_trace(go.Scatter(x=[fam] * len(stopped), y=stopped[metric], mode="markers",
                                     name=f"{fam} (pruned, last value)",
                                     marker={"symbol": "circle-open", "color": colors[fam], "size": 8}))
    families = sorted(str(f) for f in t["family"].unique())
    _add_trivial_line(fig, data, families[0], families[-1])
    return _layout(fig, FIGURES["family"], "adapter family", metric)


def placement_matrix(data: StudyData, structure: ModelStructure, top: int | None = None) -> tuple[list[str], list[int], list[list[float]], int]:
    """Share of the top trials that put an adapter on each (role, layer): (roles, layers, z, n)."""
    from autopeft.model.placement import resolve

    metric, mode = data.objectives[0]
    t = data.trials[data.trials[metric].notna()] if metric in data.trials else data.trials.iloc[0:0]
    pool = t[t.outcome == Outcome.COMPLETE]
    if pool.empty:
        pool = t
    n = top or max(3, math.ceil(len(pool) / 4))
    pool = pool.sort_values(metric, ascending=(mode == "min")).head(n)
    roles = structure.roles
    layers = list(range(structure.num_layers))
    counts = {(r, i): 0 for r in roles for i in layers}
    by_name = {leaf.name: leaf for leaf in structure.leaves}
    used = 0
    for row in pool.itertuples():
        params = row.params if isinstance(row.params, dict) else {}
        try:
            names = resolve(structure, params.get("placement.layers", "all"), params.get("placement.roles", "all-linear"))
        except Exception:  # noqa: BLE001 - a family without placement (e.g. prompt tuning): not counted
            continue
        used += 1
        for cell in {(by_name[nm].role, by_name[nm].layer) for nm in names if nm in by_name}:
            if cell in counts:
                counts[cell] += 1
    z = [[counts[(r, i)] / used if used else 0.0 for i in layers] for r in roles]
    return roles, layers, z, used


def fig_placement(data: StudyData, structure: ModelStructure | None) -> go.Figure:
    import plotly.graph_objects as go

    if structure is None:
        return _empty(FIGURES["placement"], "model structure not available")
    roles, layers, z, used = placement_matrix(data, structure)
    if not used:
        return _empty(FIGURES["placement"], "no top trial with a placement")
    fig = go.Figure(go.Heatmap(z=z, x=[str(i) for i in layers], y=roles, zmin=0, zmax=1, colorscale="Blues",
                               name="placement", colorbar={"title": "share"},
                               hovertemplate="layer %{x}, %{y}: %{z:.0%} of top trials<extra></extra>"))
    return _layout(fig, f"{FIGURES['placement']}: share of the top {used} trials by {data.metric}",
                   "layer", "module role")


def build_figures(data: StudyData, structure: ModelStructure | None) -> dict[str, go.Figure]:
    return {"pareto": fig_pareto(data), "history": fig_history(data), "curves": fig_curves(data),
            "importance": fig_importance(data), "family": fig_family(data),
            "placement": fig_placement(data, structure)}


# --- HTML and MLflow ----------------------------------------------------------------------------


def render_html(data: StudyData, figures: dict[str, go.Figure]) -> str:
    """The report as one HTML string with plotly.js inline (works offline, in the MLflow UI too)."""
    from plotly.offline import get_plotlyjs

    parts = []
    for key, fig in figures.items():
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{key}",
                          config={"displaylogo": False, "responsive": True})
        caveat = importance_caveat(data) if key == "importance" else None
        note = f'\n<p class="note caveat">{html.escape(caveat)}</p>' if caveat else ""
        title = FIGURES.get(key) or re.sub(r"<[^>]+>.*", "", str(fig.layout.title.text))  # a figure of sections.py
        parts.append(f'<h2 id="{key}">{html.escape(title)}</h2>{note}\n<div class="figure">{div}</div>')
    path = template_path()
    template = path.read_text() if path is not None else _FALLBACK_TEMPLATE
    return string.Template(template).substitute(
        title=html.escape(f"autopeft study {data.study_name}"), summary=summary_html(data),
        trials=trials_html(data), plotlyjs=get_plotlyjs(), figures="\n".join(parts))


def _structure_for(data: StudyData) -> ModelStructure | None:
    """The model's structure on the meta device, from the study's recorded config."""
    try:
        from autopeft.config import ModelConfig
        from autopeft.model.loading import resolve_location
        from autopeft.tasks import get_task

        model = ModelConfig.model_validate(data.config["model"])
        task = get_task(data.config.get("task", {}).get("kind", "sequence_classification"))
        return task.structure(model, resolve_location(model.name_or_path, model.revision))
    except Exception as exc:  # noqa: BLE001 - the heat map says so instead
        data.notes.append(f"placement heat map: model structure not available ({' '.join(str(exc).split())[:120]})")
        return None


def write_report(study_name: str, *, tracking_uri: str, out_dir: Path, client: MlflowClient | None = None,
                 structure: ModelStructure | None = None, log_to_mlflow: bool = True) -> Path:
    """Write ``<out_dir>/report.html`` and ``<out_dir>/figures/*.png``; log both to the study's
    parent MLflow run under ``report/``. Returns the HTML path."""
    from mlflow import MlflowClient

    client = client or MlflowClient(tracking_uri=tracking_uri)
    data = load_study_data(client, study_name)
    if structure is None:
        structure = _structure_for(data)
    figures = {**build_figures(data, structure), **calibration_figures(client, data)}
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / Artifact.REPORT_HTML
    html_path.write_text(render_html(data, figures), encoding="utf-8")
    pngs, renderer = write_pngs(figures, out_dir / Artifact.REPORT_FIGURES)
    if log_to_mlflow:
        client.log_artifact(data.parent_run_id, str(html_path), Artifact.REPORT_DIR)
        for path in pngs.values():
            client.log_artifact(data.parent_run_id, str(path), Artifact.report_figures())
        for key, value in StudyRunTags(report=Artifact.report_html(), report_png_renderer=renderer).to_tags().items():
            client.set_tag(data.parent_run_id, key, value)
    return html_path
