"""The study report's HTML sections: the study summary, the registered trial (what it is, how it
scored on validation and test, why it was chosen, the model version it became) and a table of
every trial. Every value is escaped: parameters and reasons come from the MLflow store.

The trial id is Ray's, as the trial run's ``autopeft.trial_id`` tag and the CLI's table show it,
so a row can be looked up in either.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autopeft.schema import Metric, Outcome

if TYPE_CHECKING:
    from autopeft.report.study_report import StudyData

#: Fewer COMPLETE trials than this and the parameter importances are flagged as not reliable.
MIN_IMPORTANCE_TRIALS = 5
#: Table order of outcomes: finished trials first, then the stopped, the interrupted, the failed.
_OUTCOME_ORDER = {Outcome.COMPLETE: 0, Outcome.PRUNED: 1, Outcome.INTERRUPTED: 2, Outcome.FAIL: 3}
#: Per-layer bits of a searched layer mask: ``placement.layers`` holds the layers they switched on.
_MASK_BIT = re.compile(r"^placement\.layer_\d+$")
_PLACEMENT = ("placement.layers", "placement.roles")


def number(value: Any) -> float | None:
    """``value`` as a finite float, else None (MLflow params are strings; pandas fills NaN)."""
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def fmt_value(value: Any) -> str:
    """A parameter as a person reads it: integers as such, other numbers to 4 significant digits."""
    text = str(value)
    try:
        return str(int(text))
    except ValueError:
        pass
    parsed = number(text)
    return f"{parsed:.4g}" if parsed is not None else text


def fmt_lr(value: Any) -> str:
    parsed = number(value)
    return f"{parsed:.2e}" if parsed is not None else ("-" if value is None else str(value))


def fmt_metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@dataclass
class TrialParams:
    """A trial's sampled configuration, grouped the way a reviewer compares trials."""

    learning_rate: str | None = None
    family: list[tuple[str, str]] = field(default_factory=list)  # the family's own, prefix dropped
    placement: list[tuple[str, str]] = field(default_factory=list)  # layers, roles
    other: list[tuple[str, str]] = field(default_factory=list)  # batch size, warm-up, weight decay, ...

    @staticmethod
    def of(params: Any, family: str | None) -> TrialParams:
        out = TrialParams()
        if not isinstance(params, Mapping):
            return out
        prefix = f"{family}." if family else None
        for key in sorted(params):
            value = params[key]
            if key == "adapter" or _MASK_BIT.match(key):
                continue
            if key == "learning_rate":
                out.learning_rate = str(value)
            elif prefix and key.startswith(prefix):
                out.family.append((key[len(prefix):], fmt_value(value)))
            elif key in _PLACEMENT:
                out.placement.append((key.split(".", 1)[1], str(value)))
            else:
                out.other.append((key, fmt_value(value)))
        out.placement.sort(key=lambda kv: _PLACEMENT.index(f"placement.{kv[0]}"))
        return out

    def family_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.family) or "-"

    def placement_text(self) -> str:
        return "; ".join(f"{k} {v}" for k, v in self.placement) or "-"


def last_evaluation(data: StudyData, row: Mapping[str, Any]) -> tuple[int | None, float | None]:
    """(steps reached, objective metric at the last evaluation) of a trial: what its run last
    logged (``step`` and the metric, as the CLI's table shows them), else its curve's last point."""
    curve = data.curves.get(str(row.get("trial_id"))) or []
    step = number(row.get("step"))
    value = number(row.get(data.metric))
    if step is None and curve:
        step = float(curve[-1][0])
    if value is None and curve:
        value = number(curve[-1][1])
    return (None if step is None else int(step)), value


def trial_records(data: StudyData) -> list[dict[str, Any]]:
    """Every trial, in table order: the registered one first, then by outcome (COMPLETE, PRUNED,
    INTERRUPTED, FAIL) and within an outcome by the objective metric, best first."""
    sign = -1.0 if data.mode == "max" else 1.0
    records = []
    for row in data.trials.to_dict("records"):
        steps, value = last_evaluation(data, row)
        records.append({**row, "_steps": steps, "_value": value,
                        "_winner": data.registered_trial is not None and row["trial_id"] == data.registered_trial})

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        value = r["_value"]
        return (not r["_winner"], _OUTCOME_ORDER.get(str(r.get("outcome")), 4), value is None,
                sign * value if value is not None else 0.0, number(r.get("number")) or 0.0)

    return sorted(records, key=key)


def completed_trials(data: StudyData) -> int:
    """COMPLETE trials: Optuna's count where its study is at hand (what importances are computed
    from), else the trial runs'."""
    if data.study is not None:
        import optuna

        return len(data.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    return int((data.trials["outcome"] == Outcome.COMPLETE).sum())


def importance_caveat(data: StudyData) -> str | None:
    """Why the importances should not be trusted, when fewer than 5 trials COMPLETEd."""
    n = completed_trials(data)
    if n >= MIN_IMPORTANCE_TRIALS:
        return None
    # short enough for one line under the figure's title, in the PNG too
    return (f"Caveat: only {n} trial{'' if n == 1 else 's'} COMPLETEd; importances from fewer than "
            f"{MIN_IMPORTANCE_TRIALS} completed trials are not reliable.")


# --- HTML ---------------------------------------------------------------------------------------


def _table(rows: list[tuple[str, str]], css: str) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="{css}">{body}</table>'


def summary_html(data: StudyData) -> str:
    """The study at a glance, then the registered trial."""
    t = data.trials
    counts = t["outcome"].value_counts().to_dict()
    rows = [
        ("study", data.study_name),
        ("objectives", ", ".join(f"{m} ({md})" for m, md in data.objectives)),
        ("constraints", ", ".join(f"{k} <= {v:g}" for k, v in data.constraints.items()) or "none"),
        ("trials", ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))),
        ("families", ", ".join(sorted(str(f) for f in t["family"].unique()))),
    ]
    if data.trivial_value is not None:
        rows.append(("trivial predictor", trivial_text(data)))
    if data.calibration_skipped:
        rows.append(("learning-rate calibration", f"not run: {data.calibration_skipped}"))
    rows.append(("MLflow study run", data.parent_run_id))
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in data.notes)
    return _table(rows, "summary") + notes + registered_html(data)


def trivial_count(data: StudyData) -> tuple[int, int]:
    """(trials whose last evaluation was at the trivial level, trials judged against it)."""
    judged = [bool(v) for v in data.trials.get("trivial", []) if v is not None and v == v]  # NaN: not judged
    return sum(judged), len(judged)


def trivial_text(data: StudyData) -> str:
    at, judged = trivial_count(data)
    return (f"{data.trivial_name}: validation {data.metric} {data.trivial_value:.4f}; {at} of {judged} trials "
            f"ended at that level (told to the sampler as pruned)")


def registered_html(data: StudyData) -> str:
    """The registered trial: id, family, hyperparameters, validation and test metric, why chosen."""
    metric = data.metric
    policy = data.selection_policy or (data.config.get("selection") or {}).get("policy")
    chosen = f"policy {policy}" if policy else "the selection policy"
    if data.selection_reason:
        chosen += f": {data.selection_reason}"
    found = [r for r in trial_records(data) if r["_winner"]]
    if not found:
        what = (f"trial {data.registered_trial} is not among the study's trial runs"
                if data.registered_trial else "no trial was registered (the search did not reach its selection)")
        return f'<h2 id="registered">Registered adapter</h2><p class="note">{html.escape(what)}</p>'
    r = found[0]
    family = str(r.get("family"))
    params = TrialParams.of(r.get("params"), family)
    number_ = number(r.get("number"))
    where = [f"Optuna trial #{int(number_)}"] if number_ is not None else []
    where.append(f"MLflow run {r.get('run_id')}")
    rows = [("trial", f"{r['trial_id']} ({', '.join(where)})"), ("family", family),
            ("learning rate", fmt_lr(params.learning_rate))]
    rows += [(f"{family} {k}", v) for k, v in params.family]
    rows += [(f"placement {k}", v) for k, v in params.placement]
    rows += [(k.replace("_", " "), v) for k, v in params.other]
    steps = f" at step {r['_steps']}" if r["_steps"] is not None else ""
    validation = f"{fmt_metric(r['_value'])}{steps} (the trial's last evaluation)"
    reloaded = number(data.study_metrics.get(Metric.best_val(metric)))
    if reloaded is not None:
        validation += f"; {reloaded:.4f} the registered adapter, reloaded"
    rows.append((f"validation {metric}", validation))
    final = number(data.study_metrics.get(Metric.final(metric)))
    kept = number(data.study_metrics.get(Metric.FINAL_TRAINING_KEPT_STEP))
    if data.final_training_error:
        rows.append(("final training", f"not registered ({data.final_training_error}): the trial's own adapter is"))
    elif final is not None:
        at = f"the weights of its best evaluation (step {int(kept)}) are registered; " if kept else ""
        # a study recorded before the tag existed trained the config again from its initialisation
        start = data.final_training_start or "the initialisation"
        rows.append(("final training", f"trained on from {start} before registration: {at}validation {metric} "
                                       f"{final:.4f} at its last evaluation"))
    test = number(data.study_metrics.get(Metric.test(metric)))
    rows.append((f"test {metric}", f"{test:.4f}" if test is not None else "not measured (no test split)"))
    rows.append(("chosen by", chosen))
    if data.registered_version:
        rows.append(("registered as", data.registered_version))
    title = f"Registered adapter: trial {r['trial_id']} ({family})"
    return f'<h2 id="registered">{html.escape(title)}</h2>' + _table(rows, "summary registered")


def trials_html(data: StudyData) -> str:
    """One row per trial; the registered one first and marked."""
    metric = data.metric
    head = ["", "trial", "Optuna #", "family", "learning rate", "family parameters", "placement", "outcome",
            "steps", f"{metric} (last evaluation)"]
    numeric = {"Optuna #", "learning rate", "steps", head[-1]}
    out = ['<h2 id="trials">Trials</h2>',
           f'<p class="note">Every trial of the study ({len(data.trials)}); ids as in the MLflow trial runs '
           f"(tag autopeft.trial_id) and the CLI. The registered trial is marked and listed first.</p>",
           '<div class="trials-wrap"><table class="trials"><thead><tr>',
           "".join(("<th class=\"num\">" if h in numeric else "<th>") + f"{html.escape(h)}</th>" for h in head),
           "</tr></thead><tbody>"]
    for r in trial_records(data):
        family = str(r.get("family"))
        params = TrialParams.of(r.get("params"), family)
        outcome = str(r.get("outcome"))
        number_ = number(r.get("number"))
        cells = [
            ("mark", "&#9733; registered" if r["_winner"] else ""),
            ("id", html.escape(str(r["trial_id"]))),
            ("num", "" if number_ is None else str(int(number_))),
            ("", html.escape(family)),
            ("num", html.escape(fmt_lr(params.learning_rate))),
            ("", html.escape(params.family_text())),
            ("", html.escape(params.placement_text())),
            (f"outcome {outcome.lower()}", html.escape(outcome + (" (trivial)" if r.get("trivial") is True else ""))),
            ("num", "-" if r["_steps"] is None else str(r["_steps"])),
            ("num", fmt_metric(r["_value"])),
        ]
        row_class = ' class="winner"' if r["_winner"] else ""
        out.append(f"<tr{row_class}>" + "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>"
                                                for c, v in cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


# --- learning-rate calibration ------------------------------------------------------------------

#: Title of the calibration figure (a study calibrated before its search; none otherwise).
CALIBRATION_TITLE = "Learning-rate calibration (probe loss by learning rate; the range searched shaded)"


@dataclass
class FamilyProbe:
    """One family's probe as the calibration run recorded it."""

    family: str
    outcome: str
    lrs: list[float] = field(default_factory=list)
    losses: list[float | None] = field(default_factory=list)  # None where the loss was not finite
    low: float | None = None
    high: float | None = None
    suggested: float | None = None


def calibration_probes(client: Any, parent_run_id: str) -> list[FamilyProbe]:
    """Every family of the calibration run of the study whose run is ``parent_run_id`` (its
    curves, its range); empty when the study was not calibrated (off, nothing to calibrate, or a
    study of an older release)."""
    from autopeft.schema import CalibrationRun, RunTag, TrialRunTags

    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], max_results=1,
                              filter_string=f"{TrialRunTags.children_filter(parent_run_id)} and "
                                            f"tags.`{RunTag.KIND}` = '{CalibrationRun.KIND}'")
    if not runs:
        return []
    run = runs[0]
    params = run.data.params
    suffix = CalibrationRun.outcome("")
    probes = []
    for key in sorted(params):
        if not key.endswith(suffix):
            continue
        family = key[: -len(suffix)]
        probe = FamilyProbe(family=family, outcome=params[key], low=number(params.get(CalibrationRun.low(family))),
                            high=number(params.get(CalibrationRun.high(family))),
                            suggested=number(params.get(CalibrationRun.suggested(family))))
        lrs = {int(m.step): float(m.value) for m in client.get_metric_history(run.info.run_id, CalibrationRun.lr(family))}
        losses = {int(m.step): float(m.value)
                  for m in client.get_metric_history(run.info.run_id, CalibrationRun.loss(family))}
        for step in sorted(lrs):
            probe.lrs.append(lrs[step])
            probe.losses.append(number(losses.get(step)))
        probes.append(probe)
    return probes


def calibration_figures(client: Any, data: StudyData) -> dict[str, Any]:
    """``{"calibration": figure}``: each probed family's training loss against the learning rate
    (log axis; raw losses as points, the smoothed loss the range was read from as a line), the
    range its trials searched shaded and its steepest point starred; families that kept the
    space's range are named under the title. Empty when the study was not calibrated."""
    import plotly.graph_objects as go

    from autopeft.engine.calibration import smooth

    probes = calibration_probes(client, data.parent_run_id)
    if not probes:
        return {}
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    fig = go.Figure()
    floor, ceiling = math.inf, 0.0
    for i, probe in enumerate(p for p in probes if p.lrs):
        color = palette[i % len(palette)]
        points = [(lr, loss) for lr, loss in zip(probe.lrs, probe.losses, strict=True) if loss is not None]
        if not points:
            continue
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        smoothed = smooth(ys).tolist()
        floor, ceiling = min(floor, min(ys)), max(ceiling, 2.0 * smoothed[0])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=f"{probe.family} loss", opacity=0.45,
                                 marker={"color": color, "size": 5}, showlegend=False))
        fig.add_trace(go.Scatter(x=xs, y=smoothed, mode="lines", name=f"{probe.family} (smoothed)",
                                 line={"color": color, "width": 2}))
        if probe.low is not None and probe.high is not None:
            fig.add_vrect(x0=probe.low, x1=probe.high, fillcolor=color, opacity=0.12, line_width=0)
            # the range again as a thick segment: shapes are not drawn by the PNG fallback (matplotlib)
            fig.add_trace(go.Scatter(x=[probe.low, probe.high], y=[min(ys)] * 2, mode="lines",
                                     name=f"{probe.family} range {probe.low:.1e}..{probe.high:.1e}",
                                     line={"color": color, "width": 8}, opacity=0.5))
        suggested = probe.suggested
        if suggested is not None:
            at = min(range(len(xs)), key=lambda j: abs(math.log(xs[j] / suggested)))
            fig.add_trace(go.Scatter(x=[suggested], y=[smoothed[at]], mode="markers", showlegend=False,
                                     name=f"{probe.family} steepest", marker={"symbol": "star", "size": 14,
                                                                              "color": color}))
    kept = [f"{p.family}: {p.outcome}" for p in probes if p.low is None]
    title = CALIBRATION_TITLE + (f"<br><sup>{html.escape('; '.join(kept))}</sup>" if kept else "")
    fig.update_layout(title=title, xaxis_title="learning rate", yaxis_title="training loss", template="plotly_white",
                      height=460, margin={"l": 60, "r": 20, "t": 90 if kept else 50, "b": 50})
    fig.update_xaxes(type="log")
    if math.isfinite(floor) and ceiling > floor:  # a diverged tail would flatten the curves
        fig.update_yaxes(range=[floor * 0.9, ceiling])
    return {"calibration": fig}
