"""What every command shares: where output goes and the one error format (exit codes in
:mod:`autopeft.cli.app`)."""

from __future__ import annotations

import typer
from rich.console import Console

from autopeft.errors import AutoPeftError, UserInputError

#: Progress, notes and errors (stderr); results go to ``out`` (stdout).
console = Console(stderr=True)
out = Console()


def fail(exc: AutoPeftError) -> None:
    """One line on stderr; exit 2 for bad input, 1 for a runtime failure."""
    code = 2 if isinstance(exc, UserInputError) else 1
    console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def interrupted_before_compute() -> None:
    """Ctrl-C during the checks or the time budget's probe: no run was opened; exit 130."""
    console.print("[yellow]interrupted[/] before the study started: nothing was recorded in MLflow", highlight=False)
    raise typer.Exit(130)
