"""The live view of a search in the terminal (a Ray Tune callback in the driver)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from autopeft.registry.tracking import outcome
from autopeft.schema import Outcome

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from autopeft.study import SearchResult


class ProgressView(Callback):
    """Counts of running / completed / pruned / failed trials and the best value so far."""

    def __init__(self, total: int, metric: str, mode: str, console: Console | None = None) -> None:
        self.total = total
        self.metric = metric
        self.mode = mode
        self.running: set[str] = set()
        self.counts = dict.fromkeys(Outcome.FINISHED, 0)
        self.best: tuple[float, str] | None = None
        self._live = Live(self._render(), console=console or Console(stderr=True), refresh_per_second=4,
                          transient=False)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the run config (callbacks included) for experiment restore; the live
        # display holds a lock and is rebuilt by whoever resumes.
        return {k: v for k, v in self.__dict__.items() if k != "_live"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._live = Live(self._render(), console=Console(stderr=True))  # never started: updates are silent

    def __enter__(self) -> ProgressView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.update(self._render())
        self._live.__exit__(*exc)

    def _render(self) -> Text:
        done = sum(self.counts.values())
        best = f"{self.best[0]:.4f} ({self.best[1]})" if self.best else "-"
        return Text(
            f"trials {done}/{self.total} · running {len(self.running)} · completed {self.counts[Outcome.COMPLETE]} · "
            f"pruned {self.counts[Outcome.PRUNED]} · failed {self.counts[Outcome.FAIL]} · best {self.metric} {best}"
        )

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._live.update(self._render())

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any],
                        **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and self._better(float(value)):
            self.best = (float(value), trial.trial_id)
        self._live.update(self._render())

    def _done(self, trial: Trial, error: bool) -> None:
        self.running.discard(trial.trial_id)
        self.counts[outcome(trial.last_result, error)] += 1
        self._live.update(self._render())

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._done(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._done(trial, error=True)

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
                f"[{style.get(t.outcome, 'white')}]{t.outcome}[/]",
                str(t.params.get("adapter", "")),
                f"{float(t.params.get('learning_rate', 0)):.2e}",
                str(t.metrics.get("step", "")),
                f"{value:.4f}" if isinstance(value, (int, float)) else "-",
                f"{int(t.metrics.get('trainable_params', 0)):,}" if t.metrics.get("trainable_params") else "-",
            )
        return table
