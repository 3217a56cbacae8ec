"""``autopeft ui``: the MLflow UI over a tracking store."""

from __future__ import annotations

import subprocess
import sys

import typer


def ui(
    tracking_uri: str = typer.Option("sqlite:///mlflow.db", help="MLflow store to browse."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(5000, help="Port."),
) -> None:
    """Start the MLflow UI over a tracking store."""

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port)]
    # deferred: the command's code imports torch, Ray and MLflow; --help and bad input answer without them
    from autopeft.registry.tracking import default_artifact_location

    artifacts = default_artifact_location(tracking_uri)
    if artifacts:
        cmd += ["--default-artifact-root", artifacts]
    raise typer.Exit(subprocess.call(cmd))


def register(app: typer.Typer) -> None:
    app.command()(ui)
