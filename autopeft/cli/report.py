"""``autopeft report STUDY``: write the study report and log it to the study's MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from autopeft.cli._inputs import TRACKING_URI, local_tracking_uri
from autopeft.cli._output import fail
from autopeft.cli._output import out as stdout
from autopeft.config import check_store_exists
from autopeft.errors import AutoPeftError
from autopeft.process import configure_process
from autopeft.schema import Artifact


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        study: str = typer.Argument(..., help="Name of the study (its MLflow parent run is found by tag)."),
        tracking_uri: Optional[str] = TRACKING_URI,
        out: Optional[Path] = typer.Option(None, help="Folder for report.html and figures/ (default: ./<study>-report)."),
        log: bool = typer.Option(True, "--log/--no-log", help="Log the report to the study's parent MLflow run."),
    ) -> None:
        """Write the study report (HTML + PNG figures) and log it to the study's MLflow run."""
        configure_process()
        from autopeft.report.study_report import write_report

        tracking_uri = local_tracking_uri(tracking_uri)
        try:
            check_store_exists(tracking_uri, "--tracking-uri")
            path = write_report(study, tracking_uri=tracking_uri, out_dir=out or Path(f"{study}-report"),
                                log_to_mlflow=log)
        except AutoPeftError as exc:
            fail(exc)
            return
        # ``out`` is the --out option here; results go to stdout
        logged = f" (logged to the study's MLflow run under {Artifact.REPORT_DIR}/)" if log else ""
        stdout.print(f"report: {path}{logged}", highlight=False, soft_wrap=True)
