"""A search's progress as the driver sees it (Ray Tune callbacks): a live line on a terminal
(:class:`ProgressView`), one plain line per trial event anywhere else (:class:`ProgressLog`:
pod, CI and Ray job logs, where a live line would show nothing until the study ends)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from autopeft.registry.tracking import RUNG_STOP_ATTR, RungStop, error_summary, outcome
from autopeft.report.terminal import TerminalConsole
from autopeft.schema import Metric, Outcome

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from autopeft.study import SearchResult


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _figure(value: Any) -> str:
    number = _number(value)
    return f"{number:.4f}" if number is not None else "-"


def _step(result: Mapping[str, Any] | None) -> str:
    result = result or {}
    step = result.get("step", result.get("training_iteration"))
    return str(int(step)) if _number(step) is not None else "?"


class _Progress(Callback):
    """What both views count: running / completed / pruned / failed trials and the best value
    so far. The views show it through the ``_on_*`` hooks, called after the counts change."""

    def __init__(self, total: int, metric: str, mode: str) -> None:
        self.total = total
        self.metric = metric
        self.mode = mode
        self.running: set[str] = set()
        self.counts = dict.fromkeys(Outcome.FINISHED, 0)
        #: Trials whose last evaluation was at the trivial predictor's level (``tasks.trivial``).
        self.trivial = 0
        self.judged = False  # whether trials report a judgement against the trivial level
        self.best: tuple[float, str] | None = None

    def _counts_text(self) -> str:
        done = sum(self.counts.values())
        best = f"{self.best[0]:.4f} ({self.best[1]})" if self.best else "-"
        return (f"trials {done}/{self.total} · running {len(self.running)} · completed {self.counts[Outcome.COMPLETE]} · "
                f"pruned {self.counts[Outcome.PRUNED]} · failed {self.counts[Outcome.FAIL]} · "
                f"{f'at the trivial level {self.trivial} · ' if self.judged else ''}best {self.metric} {best}")

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._on_start(trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any],
                        **info: Any) -> None:
        self.judged = self.judged or Metric.AT_TRIVIAL in result
        value = _number(result.get(self.metric))
        if value is not None and self._better(value):
            self.best = (value, trial.trial_id)
        self._on_result(trial, result)

    def _done(self, trial: Trial, error: bool) -> None:
        self.running.discard(trial.trial_id)
        state = outcome(trial.last_result, error)
        self.counts[state] += 1
        if not error and (trial.last_result or {}).get(Metric.AT_TRIVIAL):
            self.trivial += 1
        self._on_done(trial, state)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._done(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._done(trial, error=True)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        # Trials still running when the search ends were stopped by the study's time limit: Tune
        # tells no end of their own. The study's results count them as pruned; so do the views.
        for trial in trials:
            if trial.trial_id in self.running:
                self.running.discard(trial.trial_id)
                self.counts[Outcome.PRUNED] += 1
                self._on_done(trial, Outcome.PRUNED)

    def _on_start(self, trial: Trial) -> None:
        pass

    def _on_result(self, trial: Trial, result: Mapping[str, Any]) -> None:
        pass

    def _on_done(self, trial: Trial, state: str) -> None:
        pass

    def table(self, result: SearchResult) -> Table:
        """The end-of-search table of every trial."""
        table = Table(title=f"study {result.study_name}")
        for column in ("trial", "outcome", "adapter", "lr", "steps", self.metric, "trainable"):
            table.add_column(column, justify="right" if column in {"lr", "steps", self.metric, "trainable"} else "left")
        style = {Outcome.COMPLETE: "green", Outcome.PRUNED: "yellow", Outcome.FAIL: "red"}
        for t in result.trials:
            value = t.metrics.get(self.metric)
            mark = " *" if result.best and t.trial_id == result.best.trial_id else ""
            table.add_row(
                t.trial_id + mark,
                Text(t.outcome, style=style.get(t.outcome, "white")),
                str(t.params.get("adapter", "")),
                f"{float(t.params.get('learning_rate', 0)):.2e}",
                str(t.metrics.get("step", "")),
                f"{value:.4f}" if isinstance(value, (int, float)) else "-",
                f"{int(t.metrics.get('trainable_params', 0)):,}" if t.metrics.get("trainable_params") else "-",
            )
        return table


class ProgressView(_Progress):
    """The counts and the best value so far as one live line, redrawn in place on a terminal."""

    def __init__(self, total: int, metric: str, mode: str, console: Console | None = None) -> None:
        super().__init__(total, metric, mode)
        self._live = Live(self._render(), console=console or TerminalConsole(stderr=True), refresh_per_second=4,
                          transient=False)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the run config (callbacks included) for experiment restore; the live
        # display holds a lock and is rebuilt by whoever resumes.
        return {k: v for k, v in self.__dict__.items() if k != "_live"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._live = Live(self._render(), console=TerminalConsole(stderr=True))  # never started: updates are silent

    def __enter__(self) -> ProgressView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.update(self._render())
        self._live.__exit__(*exc)

    def _render(self) -> Text:
        return Text(self._counts_text())

    def _on_start(self, trial: Trial) -> None:
        self._live.update(self._render())

    def _on_result(self, trial: Trial, result: Mapping[str, Any]) -> None:
        self._live.update(self._render())

    def _on_done(self, trial: Trial, state: str) -> None:
        self._live.update(self._render())


def _elapsed(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


class ProgressLog(_Progress):
    """One plain line per trial event (started, each report, pruned, completed, failed) and a
    summary of the counts every ``summary_every_s`` seconds and at exit: for a log read while
    the study runs, where a live line draws nothing."""

    def __init__(self, total: int, metric: str, mode: str, console: Console | None = None,
                 summary_every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(total, metric, mode)
        self.summary_every_s = summary_every_s
        #: Trial id → its place in the order trials started (a retried trial keeps its place).
        self.numbers: dict[str, int] = {}
        self._console = console or TerminalConsole(stderr=True)
        self._clock = clock
        self._started = self._last_summary = clock()

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the run config (callbacks included) for experiment restore: the console
        # holds a lock and a stream, an injected clock may be a lambda; the counts are plain.
        return {k: v for k, v in self.__dict__.items() if k not in {"_console", "_clock"}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._console = TerminalConsole(stderr=True)
        self._clock = time.monotonic
        # another process's monotonic clock means nothing here: elapsed counts from the restore
        self._started = self._last_summary = self._clock()

    def __enter__(self) -> ProgressLog:
        self._started = self._last_summary = self._clock()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.summary()

    def _say(self, line: str) -> None:
        # no markup or highlighting: a trial's error message may hold brackets, and a log has no colour.
        # Rich flushes the stream after each print, so a log shows the line while the study runs.
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)

    def summary(self) -> None:
        """Print the counts, the best value so far and the time since the search started."""
        now = self._clock()
        self._last_summary = now
        self._say(f"progress: {self._counts_text()} · {_elapsed(now - self._started)} elapsed")

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        # Tune calls this every loop step (at least every 0.1 s): cheap unless a summary is due
        if self._clock() - self._last_summary >= self.summary_every_s:
            self.summary()

    def _on_start(self, trial: Trial) -> None:
        number = self.numbers.setdefault(trial.trial_id, len(self.numbers) + 1)
        config = trial.config or {}
        lr = _number(config.get("learning_rate"))
        self._say(f"trial {trial.trial_id} started: {config.get('adapter', '?')} "
                  f"lr={f'{lr:.2e}' if lr is not None else '-'} ({number} of {self.total})")

    def _on_result(self, trial: Trial, result: Mapping[str, Any]) -> None:
        best = f" (best {self.best[0]:.4f} by trial {self.best[1]})" if self.best else ""
        trivial = " (at the trivial level)" if result.get(Metric.AT_TRIVIAL) else ""
        self._say(f"trial {trial.trial_id} step {_step(result)}: {self.metric} {_figure(result.get(self.metric))}"
                  f"{trivial}{best}")

    def _on_done(self, trial: Trial, state: str) -> None:
        last = trial.last_result or {}
        if state == Outcome.COMPLETE:
            trivial = ", still at the trivial level (told to the sampler as pruned)" if last.get(Metric.AT_TRIVIAL) else ""
            self._say(f"trial {trial.trial_id} completed: {self.metric} {_figure(last.get(self.metric))} "
                      f"at step {_step(last)}{trivial}")
        elif state == Outcome.FAIL:
            self._say(f"trial {trial.trial_id} failed: {error_summary(trial)}")
        else:
            self._say(f"trial {trial.trial_id} {self._pruned(trial, last)}")

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # not counted: the trial runs again (budget.max_failures), and its end is counted then
        self._say(f"trial {trial.trial_id} failed, retrying: {error_summary(trial)}")

    @staticmethod
    def _pruned(trial: Trial, last: Mapping[str, Any]) -> str:
        stop = getattr(trial, RUNG_STOP_ATTR, None)
        if isinstance(stop, RungStop) and stop.left_trivial:
            return (f"pruned at rung {stop.rung} (step {stop.step}): still at the trivial level while "
                    f"{stop.left_trivial} of the {stop.compared} other trials at the rung had left it")
        if isinstance(stop, RungStop) and stop.metric == Metric.RUNG_SCORE:
            what = "at the trivial level, rung score" if stop.at_trivial else "gain over the trivial level"
            return (f"pruned at rung {stop.rung} (step {stop.step}): {what} {stop.value:.4f} below the rung's "
                    f"cutoff {stop.cutoff:.4f} over {stop.compared} trials")
        if isinstance(stop, RungStop):
            side = "above" if stop.mode == "min" else "below"  # the side that loses
            return (f"pruned at rung {stop.rung} (step {stop.step}): {stop.metric} {stop.value:.4f} {side} the "
                    f"rung's cutoff {stop.cutoff:.4f} over {stop.compared} trials")
        if last.get("infeasible"):  # the trial stopped itself: over a constraint's limit
            return f"pruned (over a cost limit at step {_step(last)})"
        return f"pruned (stopped at step {_step(last)})"  # e.g. by the study's time limit
