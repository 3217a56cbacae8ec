"""Turn pydantic validation errors into the one-line messages users read.

Private helper shared by the config and the search-space models: a message names the field
(dotted path), what was expected and what was found, and for an unknown key it suggests the
closest valid one.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names valid at ``loc`` (the path of the parent of an offending key)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _first_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """The first error of ``exc`` as ``field: problem (found ...)``; the count of others if any."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = ".".join(str(p) for p in loc)
    field = f"{prefix}{path}" if path else prefix.rstrip(".") or "config"
    if err["type"] == "extra_forbidden":
        valid = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = f" (valid keys: {', '.join(valid)})" if valid and not close else ""
        message = f"{field}: unknown key{hint}{listing}"
    else:
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        found = err.get("input")
        message = f"{field}: {msg}"
        # our own checks' messages say what they found already ("expected ..., found 3")
        if err["type"] not in {"missing"} and not isinstance(found, dict) and ", found " not in msg:
            message += f" (found {_short(found)})"
    if len(errors) > 1:
        message += f" [and {len(errors) - 1} more problem(s)]"
    return message
