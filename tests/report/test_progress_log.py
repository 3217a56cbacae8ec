"""The plain progress log of a search (``ProgressLog``): its exact lines, the summary's cadence,
pickling for Tune's experiment restore, and the CLI's choice of it off a terminal. Stand-in
trials and a fake clock: no Ray run."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from rich.console import Console

from autopeft.errors import SearchError
from autopeft.registry.tracking import RUNG_STOP_ATTR, RungStop
from autopeft.report.progress import ProgressLog, ProgressView


class FakeTrial:
    """What the callbacks read of Tune's trial."""

    def __init__(self, trial_id: str, adapter: str = "lora", lr: float = 3e-4, error_file: str | None = None) -> None:
        self.trial_id = trial_id
        self.config = {"adapter": adapter, "learning_rate": lr, "lora.r": 8, "placement.layers": "all"}
        self.last_result: dict[str, Any] | None = None
        self.error_file = error_file


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_log(total: int = 4, mode: str = "max", every: float = 60.0) -> tuple[ProgressLog, io.StringIO, FakeClock]:
    stream, clock = io.StringIO(), FakeClock()
    log = ProgressLog(total, "accuracy", mode, console=Console(file=stream, force_terminal=False),
                      summary_every_s=every, clock=clock)
    return log, stream, clock


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def report(log: Any, trial: FakeTrial, step: int, value: float, **extra: Any) -> None:
    trial.last_result = {"step": step, "accuracy": value, "training_iteration": step // 10, **extra}
    log.on_trial_result(0, [], trial, trial.last_result)


def test_started_lines_number_trials_in_start_order() -> None:
    log, stream, _ = make_log()
    first = FakeTrial("a1", "lora", 3e-4)
    log.on_trial_start(0, [], first)
    log.on_trial_error(0, [], first)
    log.on_trial_start(0, [], FakeTrial("b2", "ia3", 0.01))  # the second started, though one runs
    log.on_trial_start(0, [], FakeTrial("c3", "loha", 2e-3))
    log.on_trial_start(0, [], FakeTrial("b2", "ia3", 0.01))  # restarted after a failure: keeps its place
    assert [line for line in lines(stream) if " started: " in line] == [
        "trial a1 started: lora lr=3.00e-04 (1 of 4)",
        "trial b2 started: ia3 lr=1.00e-02 (2 of 4)",
        "trial c3 started: loha lr=2.00e-03 (3 of 4)",
        "trial b2 started: ia3 lr=1.00e-02 (2 of 4)",
    ]


def test_each_report_says_the_value_and_the_best_so_far() -> None:
    log, stream, _ = make_log()
    a, b = FakeTrial("a1"), FakeTrial("b2")
    report(log, a, 10, 0.5)
    report(log, b, 10, 0.625)
    report(log, a, 20, 0.6)
    a.last_result = {"step": 30, "loss": 0.7}  # a report without the objective
    log.on_trial_result(0, [], a, a.last_result)
    assert lines(stream) == [
        "trial a1 step 10: accuracy 0.5000 (best 0.5000 by trial a1)",
        "trial b2 step 10: accuracy 0.6250 (best 0.6250 by trial b2)",
        "trial a1 step 20: accuracy 0.6000 (best 0.6250 by trial b2)",
        "trial a1 step 30: accuracy - (best 0.6250 by trial b2)",
    ]


def test_the_best_follows_the_mode() -> None:
    log, stream, _ = make_log(mode="min")
    report(log, FakeTrial("a1"), 10, 0.5)
    report(log, FakeTrial("b2"), 10, 0.7)
    assert lines(stream)[-1] == "trial b2 step 10: accuracy 0.7000 (best 0.5000 by trial a1)"


def test_completed_line() -> None:
    log, stream, _ = make_log()
    trial = FakeTrial("a1")
    log.on_trial_start(0, [], trial)
    report(log, trial, 40, 0.8125, final=True)
    log.on_trial_complete(0, [], trial)
    assert lines(stream)[-1] == "trial a1 completed: accuracy 0.8125 at step 40"
    assert log.counts["COMPLETE"] == 1 and not log.running


def test_pruned_by_a_rung_says_the_cutoff() -> None:
    log, stream, _ = make_log()
    trial = FakeTrial("a1")
    report(log, trial, 20, 0.5)
    setattr(trial, RUNG_STOP_ATTR, RungStop(rung=2, report=2, step=20, metric="accuracy", mode="max", value=0.5,
                                            cutoff=0.6406, compared=3))
    log.on_trial_complete(0, [], trial)
    assert lines(stream)[-1] == ("trial a1 pruned at rung 2 (step 20): accuracy 0.5000 below the rung's cutoff "
                                 "0.6406 over 3 trials")
    assert log.counts["PRUNED"] == 1


def test_pruned_on_a_minimised_rung_target_is_above_its_cutoff() -> None:
    log, stream, _ = make_log()
    trial = FakeTrial("a1")
    report(log, trial, 20, 0.5)
    setattr(trial, RUNG_STOP_ATTR, RungStop(rung=1, report=1, step=10, metric="loss", mode="min", value=0.71,
                                            cutoff=0.64, compared=2))
    log.on_trial_complete(0, [], trial)
    assert lines(stream)[-1] == ("trial a1 pruned at rung 1 (step 10): loss 0.7100 above the rung's cutoff "
                                 "0.6400 over 2 trials")


def test_pruned_without_a_rung_stop() -> None:
    log, stream, _ = make_log()
    stopped, infeasible = FakeTrial("a1"), FakeTrial("b2")
    report(log, stopped, 30, 0.5)  # e.g. the study's time limit stopped it
    log.on_trial_complete(0, [], stopped)
    report(log, infeasible, 10, 0.5, infeasible=1.0)
    log.on_trial_complete(0, [], infeasible)
    assert lines(stream)[-3] == "trial a1 pruned (stopped at step 30)"
    assert lines(stream)[-1] == "trial b2 pruned (over a cost limit at step 10)"
    assert log.counts["PRUNED"] == 2


def test_trials_still_running_when_the_search_ends_count_as_pruned() -> None:
    # the study's time limit ends the search: Tune tells the running trial no end of its own
    log, stream, _ = make_log()
    done, cut = FakeTrial("a1"), FakeTrial("b2")
    log.on_trial_start(0, [], done)
    log.on_trial_start(0, [], cut)
    report(log, done, 40, 0.6, final=True)
    log.on_trial_complete(0, [], done)
    report(log, cut, 20, 0.55)
    log.on_experiment_end([done, cut])
    log.summary()
    assert "trial b2 pruned (stopped at step 20)" in lines(stream)
    assert lines(stream)[-1].startswith("progress: trials 2/4 · running 0 · completed 1 · pruned 1 · failed 0 · ")


def test_failed_says_the_last_line_of_the_traceback(tmp_path: Path) -> None:
    error = tmp_path / "error.txt"
    error.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                     "RuntimeError: CUDA out of memory [rank 0]\n\n")
    log, stream, _ = make_log()
    failed, no_file = FakeTrial("a1", error_file=str(error)), FakeTrial("b2")
    log.on_trial_start(0, [], failed)
    log.on_trial_recover(0, [], failed)  # retried: not counted yet
    assert log.counts["FAIL"] == 0 and "a1" in log.running
    log.on_trial_error(0, [], failed)
    log.on_trial_error(0, [], no_file)
    # brackets in a message are printed as they are, not read as markup
    assert lines(stream)[-3:] == [
        "trial a1 failed, retrying: RuntimeError: CUDA out of memory [rank 0]",
        "trial a1 failed: RuntimeError: CUDA out of memory [rank 0]",
        "trial b2 failed: trial failed (no error file)",
    ]
    assert log.counts["FAIL"] == 2 and not log.running


def test_summary_every_interval_and_at_exit() -> None:
    log, stream, clock = make_log(every=60.0)
    with log:
        a, b = FakeTrial("a1"), FakeTrial("b2")
        log.on_trial_start(0, [], a)
        log.on_trial_start(0, [], b)
        report(log, a, 10, 0.5)
        for now in (1000.0, 1030.0, 1059.9):
            clock.now = now
            log.on_step_end(1, [])
        assert not [line for line in lines(stream) if line.startswith("progress:")]
        clock.now = 1060.0
        log.on_step_end(2, [])
        assert lines(stream)[-1] == ("progress: trials 0/4 · running 2 · completed 0 · pruned 0 · failed 0 · "
                                     "best accuracy 0.5000 (a1) · 1m00s elapsed")
        clock.now = 1119.0
        log.on_step_end(3, [])  # 59 s after the last summary: none
        report(log, a, 40, 0.75, final=True)
        log.on_trial_complete(0, [], a)
        log.on_trial_error(0, [], b)
        clock.now = 1120.5
        log.on_step_end(4, [])
        assert lines(stream)[-1] == ("progress: trials 2/4 · running 0 · completed 1 · pruned 0 · failed 1 · "
                                     "best accuracy 0.7500 (a1) · 2m00s elapsed")
        clock.now = 1125.0
    assert lines(stream)[-1] == ("progress: trials 2/4 · running 0 · completed 1 · pruned 0 · failed 1 · "
                                 "best accuracy 0.7500 (a1) · 2m05s elapsed")
    assert sum(line.startswith("progress:") for line in lines(stream)) == 3


def test_summary_before_any_result_and_after_an_hour() -> None:
    log, stream, clock = make_log(every=5.0)
    with log:
        clock.now += 3725.0
        log.on_step_begin(0, [])
        log.on_step_end(0, [])
    assert lines(stream) == [
        "progress: trials 0/4 · running 0 · completed 0 · pruned 0 · failed 0 · best accuracy - · 1h02m05s elapsed",
        "progress: trials 0/4 · running 0 · completed 0 · pruned 0 · failed 0 · best accuracy - · 1h02m05s elapsed",
    ]


def test_plain_text_without_escape_codes() -> None:
    log, stream, _ = make_log()
    with log:
        log.on_trial_start(0, [], FakeTrial("a1", "[bold]lora[/]"))
        report(log, FakeTrial("a1"), 10, 0.5)
    text = stream.getvalue()
    assert "\x1b" not in text
    assert "trial a1 started: [bold]lora[/] lr=3.00e-04 (1 of 4)\n" in text
    assert text.endswith(" elapsed\n")


def test_a_long_line_is_not_wrapped() -> None:
    stream = io.StringIO()
    log = ProgressLog(4, "accuracy", "max", console=Console(file=stream, force_terminal=False, width=40))
    log.on_trial_error(0, [], FakeTrial("a1"))
    log.summary()
    assert len(lines(stream)) == 2


def test_pickles_with_its_counts_and_without_its_console() -> None:
    stream = io.StringIO()
    log = ProgressLog(4, "accuracy", "max", console=Console(file=stream, force_terminal=False), clock=lambda: 0.0)
    trial = FakeTrial("a1")
    log.on_trial_start(0, [], trial)
    report(log, trial, 10, 0.5)
    restored = pickle.loads(pickle.dumps(log))  # a lambda clock and a StringIO console are left behind
    assert (restored.total, restored.metric, restored.mode, restored.summary_every_s) == (4, "accuracy", "max", 60.0)
    assert restored.running == {"a1"} and restored.best == (0.5, "a1") and restored.numbers == {"a1": 1}
    out = io.StringIO()
    restored._console = Console(file=out, force_terminal=False)
    restored.on_trial_start(0, [], FakeTrial("b2"))
    assert lines(out) == ["trial b2 started: lora lr=3.00e-04 (2 of 4)"]
    restored.on_step_end(0, [])  # the real clock, restarted: no summary is due yet
    assert len(lines(out)) == 1
    assert stream.getvalue().count("\n") == 2  # the original's stream saw nothing of it


def test_the_view_and_the_log_count_alike() -> None:
    """One counting for both views: the live line shows what the log's summary says."""
    log, stream, _ = make_log()
    view = ProgressView(4, "accuracy", "max", console=Console(file=io.StringIO(), force_terminal=False))
    a, b, c = FakeTrial("a1"), FakeTrial("b2"), FakeTrial("c3")
    for callback in (log, view):
        for trial in (a, b, c):
            callback.on_trial_start(0, [], trial)
        report(callback, a, 40, 0.75, final=True)
        callback.on_trial_complete(0, [], a)
        report(callback, b, 20, 0.5)
        callback.on_trial_complete(0, [], b)
    assert view.counts == log.counts == {"COMPLETE": 1, "PRUNED": 1, "FAIL": 0}
    assert view.running == log.running == {"c3"}
    assert view.best == log.best == (0.75, "a1")
    log.summary()
    assert lines(stream)[-1].startswith(f"progress: {view._render().plain} · ")
    assert pickle.loads(pickle.dumps(view)).counts == view.counts


def _prepared() -> Any:
    cfg = SimpleNamespace(budget=SimpleNamespace(trials=3), objective=SimpleNamespace(metric="accuracy", mode="max"),
                          model=SimpleNamespace(name_or_path="minilm"))
    return SimpleNamespace(config=cfg, study_name="s", resolved=SimpleNamespace(space=SimpleNamespace(adapters=["lora"])),
                           raw=SimpleNamespace(sizes={"train": 20, "validation": 10}), output_dir=Path("."))


@pytest.mark.parametrize(("terminal", "expected"), [(False, ProgressLog), (True, ProgressView)])
def test_the_cli_logs_plain_lines_off_a_terminal(monkeypatch: pytest.MonkeyPatch, terminal: bool,
                                                 expected: type) -> None:
    import autopeft.study
    from autopeft.cli import search

    stream = io.StringIO()
    monkeypatch.setattr(search, "console", Console(file=stream, force_terminal=terminal, width=200))
    given: list[Any] = []

    def run_search(prepared: Any, *, callbacks: list[Any], verbose: bool) -> Any:
        given.extend(callbacks)
        callbacks[0].on_trial_start(0, [], FakeTrial("a1"))
        raise SearchError("search: no trial produced a result")

    monkeypatch.setattr(autopeft.study, "run_search", run_search)
    with pytest.raises(typer.Exit):
        search._run(_prepared(), verbose=False)
    assert [type(view) for view in given] == [expected]
    printed = stream.getvalue()
    assert ("trial a1 started: lora lr=3.00e-04 (1 of 3)\n" in printed) is not terminal
    assert ("progress: trials 0/3 · running 1" in printed) is not terminal


def test_trials_at_the_trivial_level_are_said_so_and_counted() -> None:
    log, stream, clock = make_log(every=60.0)
    with log:
        a = FakeTrial("a1")
        log.on_trial_start(0, [], a)
        result = {"training_iteration": 1, "step": 10, "accuracy": 0.51, "at_trivial": 1.0, "rung_score": -0.98,
                  "final": True}
        a.last_result = result
        log.on_trial_result(0, [], a, result)
        log.on_trial_complete(0, [], a)
    said = lines(stream)
    assert "trial a1 step 10: accuracy 0.5100 (at the trivial level)" in said[1]
    assert "still at the trivial level (told to the sampler as pruned)" in said[2]
    assert "at the trivial level 1 ·" in said[-1]
