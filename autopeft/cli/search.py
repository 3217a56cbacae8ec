"""``autopeft search`` and ``autopeft resume``: run a study, or continue one whose driver died."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.text import Text

from autopeft.cli import _inputs
from autopeft.cli._output import console, fail, interrupted_before_compute, labelled, out
from autopeft.errors import AutoPeftError, StudyCancelled
from autopeft.process import configure_process
from autopeft.schema import Metric


def search(
    config: Optional[Path] = _inputs.CONFIG,
    model: Optional[str] = _inputs.MODEL,
    train: Optional[str] = _inputs.TRAIN,
    test: Optional[str] = _inputs.TEST,
    validation: Optional[str] = _inputs.VALIDATION,
    time: Optional[str] = _inputs.TIME,
    label: Optional[str] = _inputs.LABEL,
    text: Optional[list[str]] = _inputs.TEXT,
    task: Optional[str] = _inputs.TASK,
    encoding: Optional[str] = _inputs.ENCODING,
    overrides: Optional[list[str]] = _inputs.OVERRIDES,
    trials: Optional[int] = typer.Option(None, help="Override budget.trials."),
    max_steps: Optional[int] = typer.Option(None, help="Override budget.max_steps."),
    study_name: Optional[str] = typer.Option(None, help="Override study_name."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto, ray://host:port)."),
    tracking_uri: Optional[str] = typer.Option(None, help="Override tracking.uri."),
    output_dir: Optional[str] = typer.Option(None, help="Override output_dir."),
    warm_start: Optional[list[str]] = typer.Option(
        None, "--warm-start", help="Seed with the best configs of an earlier study (name) or a YAML/JSON file (repeatable)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Ray and trial logs."),
) -> None:
    """Search adapter type, placement, rank and learning rate; register the best adapter.

    Zero-config: `autopeft search --model M --train FILE [--test FILE] [--time 45m]` infers the
    task, columns, metric, space and budget, prints each choice with its reason, then searches."""
    configure_process()
    flags: dict[str, Any] = {"data.encoding": encoding, "budget.trials": trials, "budget.max_steps": max_steps, "study_name": study_name,
                             "backend.address": address, "tracking.uri": tracking_uri, "output_dir": output_dir}
    try:
        request, parsed = _inputs.parse_inputs(config, model, train, test, validation, time, label, text, task,
                                               overrides, flags)
        parsed += [(["warm_start", "sources"], list(warm_start))] if warm_start else []
        # deferred: the command's code imports torch, peft, Ray and MLflow (seconds); --help and a
        # config file's mistakes answer without them, so the config is read before they load
        from autopeft.config import resolve

        if request is None:
            resolved = resolve(config, parsed)
        from autopeft.auto.flow import plan_budget, resolve_request
        from autopeft.study import prepare, prepare_resume
        from autopeft.study.manifest import StudyManifest

        if request is not None:
            with console.status("reading the model and the data..."):
                inference, resolved = resolve_request(request, parsed)
            for choice in inference.choices:
                console.print(choice.line(), highlight=False, soft_wrap=True)
        name, out_dir = resolved.config.study_name, Path(resolved.config.output_dir)
        with console.status("checking model, data and search space..."):
            if name and StudyManifest.path_for(out_dir, name).is_file():
                console.print(f"study {name!r} exists in {out_dir}: continuing it with its recorded config")
                prepared = prepare_resume(name, out_dir)
            else:
                prepared = prepare(resolved)
        plan_budget(prepared, say=lambda line: console.print(line, highlight=False, soft_wrap=True))
    except AutoPeftError as exc:
        fail(exc)
        return
    except KeyboardInterrupt:
        interrupted_before_compute()
    _run(prepared, verbose)


def resume(
    study: str = typer.Argument(..., help="Name of the study to continue."),
    output_dir: Path = typer.Option(Path("autopeft-runs"), help="The study's output_dir."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Ray and trial logs."),
) -> None:
    """Continue a study whose driver died or that was cancelled: finished trials are kept,
    unfinished ones continue."""
    configure_process()
    # deferred: the command's code imports torch, Ray and MLflow; --help and bad input answer without them
    from autopeft.study import prepare_resume

    try:
        with console.status("checking the recorded config, model and data..."):
            prepared = prepare_resume(study, output_dir)
    except AutoPeftError as exc:
        fail(exc)
        return
    if prepared.manifest.status == "FINISHED":
        out.print(f"study {study!r} already finished: registered version {prepared.manifest.registered_version}")
        return
    _run(prepared, verbose)


def _run(prepared: Any, verbose: bool) -> None:
    # deferred: the command's code imports torch, Ray and MLflow; --help and bad input answer without them
    from autopeft.report.progress import ProgressLog, ProgressView
    from autopeft.study import run_search

    cfg = prepared.config
    console.print(Text.assemble("study ", (prepared.study_name, "bold"), f": {cfg.budget.trials} trials over "
                                f"{', '.join(prepared.resolved.space.adapters)} on {cfg.model.name_or_path} "
                                f"({prepared.raw.sizes.get('train', 0)} train / "
                                f"{prepared.raw.sizes.get('validation', 0)} validation examples)"))
    # a live line draws only on a terminal: a pod, CI or Ray job log gets one plain line per trial event
    view = (ProgressView if console.is_terminal else ProgressLog)(cfg.budget.trials, cfg.objective.metric,
                                                                  cfg.objective.mode, console=console)
    try:
        with view:
            result = run_search(prepared, callbacks=[view], verbose=verbose)
    except AutoPeftError as exc:
        fail(exc)
        return
    except KeyboardInterrupt as stop:
        # deferred: the command's code imports torch, Ray and MLflow; --help and bad input answer without them
        from autopeft.study.manifest import StudyManifest

        started = StudyManifest.path_for(prepared.output_dir, prepared.study_name).is_file()
        resume_hint = (f"; continue it with 'autopeft resume {prepared.study_name} --output-dir "
                       f"{prepared.output_dir}'" if started else "")
        cancelled = isinstance(stop, StudyCancelled)
        console.print(labelled(str(stop) if cancelled else "interrupted", "yellow", "the study run and its running "
                               f"trials were recorded as KILLED{resume_hint}"), highlight=False, soft_wrap=True)
        # 143 = 128 + SIGTERM, as a shell reports a process a SIGTERM ended; 130 for Ctrl-C
        raise typer.Exit(143 if cancelled else 130) from None

    out.print(view.table(result))
    best = result.best
    assert best is not None
    metric = cfg.objective.metric
    lines: list[str | Text] = [
        f"best trial {best.trial_id}: {best.params.get('adapter')} with validation {metric} "
        f"{best.metrics.get(metric):.4f} ({int(best.metrics.get('trainable_params', 0)):,} trainable parameters)",
    ]
    if result.test_metrics:
        lines.append(f"test {metric}: {result.test_metrics.get(metric, float('nan')):.4f}")
    warning = learnt_nothing(best.metrics, cfg.task.kind)
    if warning:
        lines.append(labelled("warning", "yellow", warning))
    lines += [
        f"registered: models:/{cfg.tracking.registered_model}/{result.model_version} (alias 'candidate')",
        f"adapter: {result.adapter_dir}",
        f"MLflow: run {result.parent_run_id} in experiment {cfg.tracking.experiment!r} at {cfg.tracking.uri} "
        f"(browse with: make ui)",
        f"Optuna storage: {prepared.optuna_storage} (browse with: optuna-dashboard {prepared.optuna_storage})",
        f"took {result.wall_time_s:.0f}s",
    ]
    if getattr(result, "selection", None) is not None:
        lines.insert(1, f"chosen by policy {result.selection.policy}: {result.selection.reason}")
    if getattr(result, "report_path", None):
        lines.append(f"report: {result.report_path} (also in the MLflow run under report/)")
    out.print(Text("\n").join(Text(line) if isinstance(line, str) else line for line in lines), highlight=False,
              soft_wrap=True)


def learnt_nothing(metrics: dict[str, Any], task: str) -> str | None:
    """What to tell a user whose best trial ended at the trivial predictor's level, else None."""
    if not metrics.get(Metric.AT_TRIVIAL):
        return None
    # deferred: the task registry imports torch; --help answers without it
    from autopeft.tasks import get_task
    from autopeft.tasks.trivial import predictor_name

    return (f"the best trial ended at the trivial predictor's level ({predictor_name(get_task(task))}): nothing was "
            "learnt within the trials' steps. Give them more steps (budget.max_steps or --time), more data, or a "
            "space with other families or learning rates")


def register(app: typer.Typer) -> None:
    app.command()(search)
    app.command()(resume)
