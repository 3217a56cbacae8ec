"""The inputs ``search`` and ``init`` share: a config file, or zero-config flags (a model, a data
file and a time budget), plus overrides. Declared once so both commands spell them alike."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from autopeft.errors import ConfigError

CONFIG = typer.Option(None, "--config", "-c", help="The search YAML file (or give --model and --train instead).")
MODEL = typer.Option(None, "--model", "-m", help="Zero-config: Hub id, local model folder, or 'minilm' (packaged).")
TRAIN = typer.Option(None, "--train", help="Zero-config: the training data (csv, tsv, jsonl, json, parquet, arrow, feather, txt, conll, xlsx, or a folder datasets' save_to_disk wrote).")
TEST = typer.Option(None, "--test", help="Held-out data, evaluated once for the registered adapter.")
VALIDATION = typer.Option(None, "--validation", help="Validation data (default: 10% of --train).")
TIME = typer.Option(None, "--time", "-t", help="Wall-clock budget of the whole study: 45m, 1h30m, 90s "
                    "(sets budget.time; zero-config default 15m).")
LABEL = typer.Option(None, "--label", help="Zero-config: the label column, where inference cannot tell.")
TEXT = typer.Option(None, "--text", help="Zero-config: a text column the model reads (repeat for a pair).")
TASK = typer.Option(None, "--task", help="Zero-config: the task kind, where inference cannot tell.")
ENCODING = typer.Option(None, "--encoding", help="The data files' text encoding, e.g. cp1252 or latin-1 "
                        "(sets data.encoding; default: UTF-8, or what a byte-order mark names).")
OVERRIDES = typer.Option(None, "--set", "-s", help="Override a config key: KEY=VALUE (repeatable).")
#: --tracking-uri of the commands that read a store on this machine (models, promote, report, ...).
TRACKING_URI = typer.Option(None, "--tracking-uri",
                            help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).")


def local_tracking_uri(flag: Optional[str], config: Optional[dict[str, Any]] = None) -> str:
    """The store a command reads: --tracking-uri, else the config's ``tracking.uri``, else
    $MLFLOW_TRACKING_URI (as MLflow itself reads it), else ./mlflow.db."""
    if flag:
        return flag
    from_config = ((config or {}).get("tracking") or {}).get("uri")
    return from_config or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def parse_inputs(config: Optional[Path], model: Optional[str], train: Optional[str], test: Optional[str],
                 validation: Optional[str], time: Optional[str], label: Optional[str], text: Optional[list[str]],
                 task: Optional[str], overrides: Optional[list[str]],
                 flags: Optional[dict[str, Any]] = None) -> tuple[Any, list[tuple[list[str], Any]]]:
    """(a zero-config ``Request`` or None when a config file is given, the parsed overrides)."""
    # deferred: the config module imports pydantic models of every task kind; --help answers without them
    from autopeft.auto.infer import Request
    from autopeft.config import parse_duration, parse_override

    if time is not None:
        try:
            parse_duration(time)
        except ValueError as exc:
            raise ConfigError(f"--time: {exc}") from None
    parsed = [parse_override(item) for item in overrides or []]
    parsed += [(key.split("."), value) for key, value in (flags or {}).items() if value is not None]
    if config is not None:
        zero_config_only = {"--label": label, "--text": text, "--task": task}
        given = [flag for flag, value in zero_config_only.items() if value]
        if given:
            raise ConfigError(f"{given[0]}: only without --config (set the data and task fields in the file)")
        file_flags = {"model.name_or_path": model, "data.train": train, "data.test": test,
                      "data.validation": validation, "budget.time": time}
        parsed += [(key.split("."), value) for key, value in file_flags.items() if value is not None]
        return None, parsed
    if model is None or train is None:
        missing = "--model" if model is None else "--train"
        raise ConfigError(f"{missing}: expected a config file (--config) or a model and a training file "
                          "(--model M --train FILE)")
    return Request(model=model, train=train, test=test, validation=validation, label=label, text=tuple(text or ()),
                   task=task, time=time), parsed
