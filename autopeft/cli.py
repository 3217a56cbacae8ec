"""The ``autopeft`` command line.

Exit codes: 0 success, 2 bad input (nothing computed or recorded), 1 runtime failure.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from autopeft.errors import AutoPeftError, UserInputError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find the best PEFT configuration for a model and a task.")
console = Console(stderr=True)
out = Console()


def _fail(exc: AutoPeftError) -> None:
    code = 2 if isinstance(exc, UserInputError) else 1
    console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _quiet_environment() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "0")


@app.command()
def search(
    config: Path = typer.Option(..., "--config", "-c", help="The search YAML file."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Override a config key: KEY=VALUE (repeatable)."),
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
    """Search adapter type, placement, rank and learning rate; register the best adapter."""
    _quiet_environment()
    from autopeft.config import parse_override, resolve

    flags: dict[str, Any] = {"budget.trials": trials, "budget.max_steps": max_steps, "study_name": study_name,
                             "backend.address": address, "tracking.uri": tracking_uri, "output_dir": output_dir}
    try:
        parsed = [parse_override(text) for text in overrides or []]
        parsed += [(key.split("."), value) for key, value in flags.items() if value is not None]
        parsed += [(["warm_start", "sources"], list(warm_start))] if warm_start else []
        resolved = resolve(config, parsed)
        from autopeft.search import prepare, prepare_resume
        from autopeft.study import StudyManifest

        name, out_dir = resolved.config.study_name, Path(resolved.config.output_dir)
        with console.status("checking model, data and search space..."):
            if name and StudyManifest.path_for(out_dir, name).is_file():
                console.print(f"study {name!r} exists in {out_dir}: continuing it with its recorded config")
                prepared = prepare_resume(name, out_dir)
            else:
                prepared = prepare(resolved)
    except AutoPeftError as exc:
        _fail(exc)
        return
    _run(prepared, verbose)


@app.command()
def resume(
    study: str = typer.Argument(..., help="Name of the study to continue."),
    output_dir: Path = typer.Option(Path("autopeft-runs"), help="The study's output_dir."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Ray and trial logs."),
) -> None:
    """Continue a study whose driver died: finished trials are kept, unfinished ones continue."""
    _quiet_environment()
    from autopeft.search import prepare_resume

    try:
        with console.status("checking the recorded config, model and data..."):
            prepared = prepare_resume(study, output_dir)
    except AutoPeftError as exc:
        _fail(exc)
        return
    if prepared.manifest.status == "FINISHED":
        out.print(f"study {study!r} already finished: registered version {prepared.manifest.registered_version}")
        return
    _run(prepared, verbose)


def _run(prepared: Any, verbose: bool) -> None:
    from autopeft.progress import ProgressView
    from autopeft.search import run_search

    cfg = prepared.config
    console.print(f"study [bold]{prepared.study_name}[/]: {cfg.budget.trials} trials over "
                  f"{', '.join(prepared.resolved.space.adapters)} on {cfg.model.name_or_path} "
                  f"({prepared.raw.sizes.get('train', 0)} train / {prepared.raw.sizes.get('validation', 0)} validation examples)")
    view = ProgressView(cfg.budget.trials, cfg.objective.metric, cfg.objective.mode, console=console)
    try:
        with view:
            result = run_search(prepared, callbacks=[view], verbose=verbose)
    except AutoPeftError as exc:
        _fail(exc)
        return
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: running trials were recorded as KILLED")
        raise typer.Exit(130) from None

    out.print(view.table(result))
    best = result.best
    assert best is not None
    metric = cfg.objective.metric
    lines = [
        f"best trial {best.trial_id}: {best.params.get('adapter')} with validation {metric} "
        f"{best.metrics.get(metric):.4f} ({int(best.metrics.get('trainable_params', 0)):,} trainable parameters)",
    ]
    if result.test_metrics:
        lines.append(f"test {metric}: {result.test_metrics.get(metric, float('nan')):.4f}")
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
    out.print("\n".join(lines), highlight=False, soft_wrap=True)


@app.command()
def ui(
    tracking_uri: str = typer.Option("sqlite:///mlflow.db", help="MLflow store to browse."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(5000, help="Port."),
) -> None:
    """Start the MLflow UI over a tracking store."""
    import subprocess

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port)]
    from autopeft.tracking import default_artifact_location

    artifacts = default_artifact_location(tracking_uri)
    if artifacts:
        cmd += ["--default-artifact-root", artifacts]
    raise typer.Exit(subprocess.call(cmd))


@app.command()
def version() -> None:
    """Print the autopeft version."""
    from autopeft import __version__

    out.print(__version__)


#: Modules that add commands to ``app``; each defines ``register(app)`` (one module per topic).
_COMMAND_MODULES: list[str] = ["autopeft.cli_report", "autopeft.cli_models", "autopeft.cli_space"]


def _register_commands() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
