"""The report's figures, HTML and PNG fallback on a synthetic study (no Ray, no MLflow)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from autopeft.model.placement import scan
from autopeft.report.study_report import (
    FIGURES,
    StudyData,
    _png_matplotlib,
    build_figures,
    decode_typed,
    placement_matrix,
    render_html,
    template_path,
)


def _data() -> StudyData:
    rows = [
        {"trial_id": "a", "run_id": "r1", "outcome": "COMPLETE", "number": 0, "family": "lora", "warm_start": "prior:x",
         "accuracy": 0.8, "trainable_share": 0.01, "feasible": True,
         "params": {"placement.layers": "all", "placement.roles": "query,value"}},
        {"trial_id": "b", "run_id": "r2", "outcome": "COMPLETE", "number": 1, "family": "ia3", "warm_start": None,
         "accuracy": 0.7, "trainable_share": 0.001, "feasible": True,
         "params": {"placement.layers": "last-1", "placement.roles": "all-linear"}},
        {"trial_id": "c", "run_id": "r3", "outcome": "PRUNED", "number": 2, "family": "lora", "warm_start": None,
         "accuracy": 0.6, "trainable_share": 0.02, "feasible": True, "params": {}},
        {"trial_id": "d", "run_id": "r4", "outcome": "PRUNED", "number": 3, "family": "lora", "warm_start": None,
         "accuracy": 0.55, "trainable_share": 0.09, "feasible": False, "infeasible": 1.0, "params": {}},
    ]
    curves = {"a": [(10, 0.6), (20, 0.8)], "b": [(10, 0.65), (20, 0.7)], "c": [(10, 0.6)], "d": [(10, 0.55)]}
    return StudyData(study_name="s", parent_run_id="p", config={"selection": {"policy": "knee"}},
                     trials=pd.DataFrame(rows), curves=curves, objectives=[("accuracy", "max")],
                     axes=[("accuracy", "max"), ("trainable_share", "min")], constraints={"trainable_share": 0.05},
                     registered_trial="a")


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
    assert not {"$title", "$summary", "$plotlyjs", "$figures"} & set(re.findall(r"\$\w+", text.replace(get_plotlyjs(), "")))
    for key in FIGURES:
        match = re.search(rf'Plotly\.newPlot\(\s*"fig-{key}",\s*', text)
        assert match, key
        traces, _ = json.JSONDecoder().raw_decode(text, match.end())
        assert isinstance(traces, list)  # empty where the figure explains why it has no data
    start = re.search(r'Plotly\.newPlot\(\s*"fig-pareto",\s*', text).end()
    pareto = decode_typed(json.JSONDecoder().raw_decode(text, start)[0])
    assert next(t for t in pareto if t["name"] == "registered")["y"] == [0.8]
    assert "{$title}" not in text and "autopeft study s" in text
    assert {"$title", "$summary", "$plotlyjs", "$figures"} <= set(re.findall(r"\$\w+", template_path().read_text()))


@pytest.mark.parametrize("key", list(FIGURES))
def test_matplotlib_renders_each_figure(tiny_bert, tmp_path, key):
    fig = build_figures(_data(), scan(tiny_bert))[key]
    out = tmp_path / f"{key}.png"
    _png_matplotlib(fig, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
