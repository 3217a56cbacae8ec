"""The ``autopeft`` command line: a typer app with one module per command group."""

from __future__ import annotations

from autopeft.cli.app import app, main

__all__ = ["app", "main"]
