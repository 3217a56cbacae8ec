"""What every command shares: where output goes and the one error format (exit codes in
:mod:`autopeft.cli.app`)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.text import Text

from autopeft.errors import AutoPeftError, UserInputError
from autopeft.report.terminal import TerminalConsole

#: Progress, notes and errors (stderr); results go to ``out`` (stdout). Neither reads markup: what
#: they print holds users' names, paths and values, and rich read '[/x]' in a column name as a
#: closing tag (a traceback for a one-line error). Styles are given as ``Text`` (:func:`labelled`).
#: Control characters in them are printed as escapes, not obeyed (:class:`TerminalConsole`).
console = TerminalConsole(stderr=True)
out = TerminalConsole()


def labelled(label: str, style: str, message: str) -> Text:
    """``label: message`` with the label in ``style``; the message printed as written."""
    return Text.assemble((label, style), f": {message}")


def fail(exc: AutoPeftError) -> None:
    """One line on stderr; exit 2 for bad input, 1 for a runtime failure."""
    code = 2 if isinstance(exc, UserInputError) else 1
    console.print(labelled("error", "bold red", str(exc)), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def interrupted_before_compute() -> None:
    """Ctrl-C during the checks or the time budget's probe: no run was opened; exit 130."""
    console.print(Text.assemble(("interrupted", "yellow"), " before the study started: nothing was recorded in MLflow"),
                  highlight=False)
    raise typer.Exit(130)


@contextmanager
def ctrl_c_stops() -> Iterator[None]:
    """Inside the block, Ctrl-C (SIGINT) raises KeyboardInterrupt whatever the process inherited:
    a command started in the background of a script (or by a test harness run that way) starts
    with SIGINT ignored, and a ``--watch`` or ``--follow`` documented to stop on Ctrl-C would then
    run on until killed."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can be set only in the main thread
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
