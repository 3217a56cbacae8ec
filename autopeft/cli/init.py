"""``autopeft init``: write the config a zero-config search would run, every choice commented."""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from autopeft.cli import _inputs
from autopeft.cli._output import console, fail, interrupted_before_compute, out
from autopeft.errors import AutoPeftError, ConfigError
from autopeft.process import configure_process


def init(
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
    output: Path = typer.Option(Path("search.yaml"), "--output", "-o", help="The YAML file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite --output if it exists."),
) -> None:
    """Write the YAML that `autopeft search --model M --train FILE` would run: every inferred field
    commented with its reason, the time budget planned on this machine. `autopeft search --config`
    on it runs the same study."""
    configure_process()
    try:
        if output.exists() and not force:
            raise ConfigError(f"--output: {str(output)!r} exists; choose another file or pass --force")
        request, parsed = _inputs.parse_inputs(None, model, train, test, validation, time, label, text, task,
                                               overrides, {"data.encoding": encoding})
        # deferred: the command's code imports torch, Ray and MLflow; --help and bad input answer without them
        from autopeft.auto.flow import plan_budget, resolve_request
        from autopeft.study import prepare

        with console.status("reading the model and the data..."):
            inference, resolved = resolve_request(request, parsed)
        for choice in inference.choices:
            console.print(choice.line(), highlight=False, soft_wrap=True)
        with console.status("checking model, data and search space..."):
            prepared = prepare(resolved)
        plan_budget(prepared, say=lambda line: console.print(line, highlight=False, soft_wrap=True))
    except AutoPeftError as exc:
        fail(exc)
        return
    except KeyboardInterrupt:
        interrupted_before_compute()
    command = shlex.join(["autopeft", *sys.argv[1:]]) if sys.argv else "autopeft init"
    header = (f"# Written by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.\n"
              f"# `autopeft search --config {output}` runs this study; a comment says why a field has its value.\n")
    output.write_text(header + prepared.resolved.to_yaml(complete=False), encoding="utf-8")
    out.print(f"wrote {output}: run it with autopeft search --config {output}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(init)
