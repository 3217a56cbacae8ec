"""``autopeft ui``: the MLflow UI over a tracking store, light enough for a laptop, with the link
to the newest study."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from autopeft.cli._output import console, fail
from autopeft.config import check_store_exists
from autopeft.errors import TrackingUnreachable

#: The MLflow UI's query parameter for its model-training mode (rather than GenAI apps and agents).
ML_MODE = "workflowType=machine_learning"


def ui(
    tracking_uri: str = typer.Option("sqlite:///mlflow.db", help="MLflow store to browse."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(5000, help="Port."),
    workers: int = typer.Option(1, min=1, help="Server worker processes (MLflow's default of 4 is for shared servers)."),
) -> None:
    """Start the MLflow UI over a tracking store and print the link to the newest study."""
    try:
        check_store_exists(tracking_uri, "--tracking-uri")
    except TrackingUnreachable as exc:
        fail(exc)
    # deferred: the command's code imports torch, Ray and MLflow; --help and bad input answer without them
    from autopeft.registry.tracking import default_artifact_location, newest_study

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port),
           "--workers", str(workers)]
    artifacts = default_artifact_location(tracking_uri)
    if artifacts:
        cmd += ["--default-artifact-root", artifacts]
    study = newest_study(tracking_uri)
    base = f"http://{host}:{port}"
    if study is not None:
        name, experiment_id, run_id = study
        # MLflow 3's UI opens in its GenAI mode unless told; the parameter switches it to model
        # training (and the browser remembers), so the link lands on the study's runs
        console.print(f"newest study {name!r}: {base}/#/experiments/{experiment_id}?{ML_MODE} "
                      f"(its run: {base}/#/experiments/{experiment_id}/runs/{run_id}?{ML_MODE})", highlight=False,
                      soft_wrap=True)
    console.print(f"MLflow UI: {base} (Ctrl-C stops it)", highlight=False)
    # the UI needs no background job runner (MLflow starts one with a queue of consumers per server)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    raise typer.Exit(subprocess.call(cmd, env=env))


def register(app: typer.Typer) -> None:
    app.command()(ui)
