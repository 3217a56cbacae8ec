"""Instruments the benchmark attaches to a real autopeft search without changing autopeft.

- :class:`Timeline`, a Ray Tune callback passed through ``run_search(callbacks=...)``: when each
  trial started, every report it made (step, metric, in-trial train/eval time) and when it ended.
- :class:`StepBudgetSearch`, the searcher autopeft builds, with one rule added: start a trial only
  while the steps used so far plus a full trial for each running and the new one fit the step
  budget. So a method never uses more training steps than its budget, with or without ASHA.
- :func:`timed_recorder`: times autopeft's MLflow recorder (``tracking.TrialRecorder``) hooks,
  i.e. the MLflow logging the driver does per trial.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, cast

from ray.tune import Callback
from ray.tune.search import Searcher

from autopeft.study.searcher import PruningAwareOptunaSearch

#: Report fields a timeline keeps.
_KEEP = ("step", "final", "train_time_s", "eval_time_s", "setup_time_s", "time_total_s", "trainable_params",
         "family", "worker_pid", "training_iteration")


class Timeline(Callback):
    """Driver-side record of each trial's start, reports and end (wall clock, ``time.time``)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.reports: list[dict[str, Any]] = []
        self.config: dict[str, dict[str, Any]] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.time())
        self.config[trial.trial_id] = {k: v for k, v in dict(trial.config or {}).items()}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        row = {k: result.get(k) for k in _KEEP}
        row.update(trial_id=trial.trial_id, t=time.time(), value=result.get(self.metric))
        self.reports.append(row)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.setdefault(trial.trial_id, time.time())

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.setdefault(trial.trial_id, time.time())

    def as_dict(self) -> dict[str, Any]:
        return {"started": self.started, "ended": self.ended, "reports": self.reports, "config": self.config}


class StepBudgetSearch(PruningAwareOptunaSearch):
    """autopeft's searcher, finished once another full trial would not fit the step budget."""

    step_budget: int
    trial_steps: int

    def _budget_init(self, step_budget: int, trial_steps: int) -> None:
        self.step_budget, self.trial_steps = int(step_budget), int(trial_steps)
        self._steps_done = 0
        self._live: dict[str, int] = {}  # running trial -> its last reported step

    def suggest(self, trial_id: str) -> dict[str, Any] | None:  # type: ignore[override]
        reserved = self.trial_steps * (len(self._live) + 1)
        if self._steps_done + reserved > self.step_budget:
            return Searcher.FINISHED  # type: ignore[return-value]
        config = super().suggest(trial_id)
        if config not in (None, Searcher.FINISHED):
            self._live[trial_id] = 0
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self._live and isinstance(result.get("step"), (int, float)):
            self._live[trial_id] = int(result["step"])
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        step = self._live.pop(trial_id, None)
        if step is not None:
            if result and isinstance(result.get("step"), (int, float)):
                step = max(step, int(result["step"]))
            self._steps_done += step
        super().on_trial_complete(trial_id, result=result, error=error)


@contextlib.contextmanager
def step_budget(step_budget: int, trial_steps: int) -> Iterator[None]:
    """While active, ``run_search`` builds a :class:`StepBudgetSearch` instead of its searcher."""
    import autopeft.study.driver as search

    original = search.make_searcher

    def make(prepared: Any) -> Any:
        searcher = original(prepared)
        searcher.__class__ = StepBudgetSearch
        # the learning-rate probes trained before the search: their steps come out of its budget
        cast(StepBudgetSearch, searcher)._budget_init(step_budget - prepared.calibration_steps, trial_steps)
        return searcher

    search.make_searcher = make
    try:
        yield
    finally:
        search.make_searcher = original


@contextlib.contextmanager
def timed_recorder(totals: dict[str, float]) -> Iterator[None]:
    """Add the time spent in each ``TrialRecorder`` hook (its MLflow calls) to ``totals``."""
    from autopeft.registry.tracking import TrialRecorder

    names = ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error")
    originals = {n: getattr(TrialRecorder, n) for n in names}

    def wrap(name: str, fn: Any) -> Any:
        def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(self, *args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - started
        return timed

    for name, fn in originals.items():
        setattr(TrialRecorder, name, wrap(name, fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(TrialRecorder, name, fn)
