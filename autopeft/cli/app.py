"""The ``autopeft`` command line.

Exit codes: 0 success, 2 bad input (nothing computed or recorded), 1 runtime failure.
"""

from __future__ import annotations

import typer

from autopeft import __version__
from autopeft.cli import init, jobs, models, report, search, space, ui
from autopeft.cli._output import out

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find the best PEFT configuration for a model and a task.")


@app.command()
def version() -> None:
    """Print the autopeft version."""
    out.print(__version__)


# one registration style: every command module adds its commands with register(app)
for _module in (search, init, jobs, report, models, space, ui):
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
