"""What a study produces: one summary per trial, the search's result, and its timed phases."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopeft.registry.tracking import outcome


@dataclass
class TrialSummary:
    trial_id: str
    outcome: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    run_id: str | None


@dataclass
class SearchResult:
    study_name: str
    parent_run_id: str
    trials: list[TrialSummary]
    best: TrialSummary | None
    adapter_dir: Path | None = None
    model_version: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    reloaded_val_metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    #: How the registered trial was chosen and the Pareto set (``objectives.Selection``).
    selection: Any = None
    #: The study report (HTML), written at the end of the search.
    report_path: Path | None = None
    #: Wall seconds per phase of the search (``SEARCH_PHASES``); logged on the parent run as
    #: ``phase_<name>_s`` so a slow study shows where its time went.
    phase_times_s: dict[str, float] = field(default_factory=dict)
    #: With ``budget.final_steps``: the final training's evaluations (the registered adapter's
    #: validation curve); empty when it was off or diverged (then the trial's adapter is registered).
    final_history: list[dict[str, float]] = field(default_factory=list)
    #: The step of the final training's evaluation whose weights are registered (its best by the
    #: objective; ``final_history`` holds that evaluation's figures).
    final_kept_step: int | None = None
    #: The Ray node the final training ran on (also the parent run's ``autopeft.final_training_node``).
    final_node_id: str = ""
    #: What the final training started from: the selected trial's adapter, or the config's
    #: initialisation and why (the parent run's ``autopeft.final_training_start``).
    final_start: str = ""
    #: Seconds of the final training's own training steps and validation evaluations, without its
    #: Ray task's start (``phase_times_s["final_training"]`` holds both); logged as ``final_training_*_s``.
    final_train_time_s: float = 0.0
    final_eval_time_s: float = 0.0
    #: The final training's nested run (the registered adapter's source run), when it trained one.
    final_run_id: str | None = None
    #: Why the trial's adapter was registered although a final training was asked for (it diverged,
    #: failed, or ended worse than the trial); the parent run's ``autopeft.final_training_error``.
    final_training_error: str | None = None
    #: Why no learning-rate probe ran though the calibration was on (a space whose rates are not log
    #: ranges, or a step budget with no room for them); the parent run's ``autopeft.calibration_skipped``.
    calibration_skipped: str | None = None

    @property
    def final_kept(self) -> dict[str, float]:
        """The final training's evaluation whose weights are registered; empty without one."""
        return next((h for h in self.final_history if h["step"] == self.final_kept_step), {})


#: The phases of :func:`run_search`: record the study in MLflow, tokenize the data (or read the
#: cache), start Ray, probe each family's learning rate (``calibration``, zero when off or
#: resumed), run the trials, train the selected config again for ``budget.final_steps``
#: (``final_training``, zero when off), export and register the best adapter (``finalize``) with
#: its evaluation after reloading it, on validation and test (``final_eval``), write the report.
#: Disjoint, so they add up to at most the wall time.
SEARCH_PHASES = ("mlflow_setup", "tokenize", "ray_start", "calibration", "trials", "final_training", "final_eval",
                 "finalize", "report")


@contextlib.contextmanager
def phase(times: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.monotonic() - started




def summaries(grid: Any, runs: dict[str, str]) -> list[TrialSummary]:
    """One summary per trial of Tune's result grid, joined to its MLflow run."""
    out = []
    for result in grid:
        metrics = dict(result.metrics or {})
        trial_id = metrics.get("trial_id") or (result.path.rsplit("_", 1)[-1] if result.path else "?")
        out.append(TrialSummary(trial_id=trial_id, outcome=outcome(metrics, result.error is not None),
                                params=dict(result.config or {}), metrics=metrics, run_id=runs.get(trial_id)))
    return out
