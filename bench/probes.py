"""Instruments the benchmark attaches to a real autopeft search without changing autopeft.

- :class:`Timeline`, a Ray Tune callback passed through ``run_search(callbacks=...)``: when each
  trial started, every report it made (step, metric, in-trial train/eval time) and when it ended.
- :func:`timed_recorder`: times autopeft's MLflow recorder (``tracking.TrialRecorder``) hooks,
  i.e. the MLflow logging the driver does per trial.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ray.tune import Callback

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
