"""Turn pydantic validation errors into the one-line messages users read, and read the YAML
users write.

Private helpers shared by the config, the search-space and the warm-start files: a message names
the field (dotted path), what was expected and what was found, and for an unknown key it suggests
the closest valid one; a key given twice in one mapping of a YAML file is an error, not the last
one silently kept.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator


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


def _numbers_only(annotation: Any) -> bool:
    """Whether ``annotation`` takes numbers and nothing else but None (``int``, ``Optional[float]``,
    ``Union[int, float]``): a field where ``true`` can only be a mistake."""
    args = [a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)]
    return bool(args) and all(a in (int, float) for a in args)


class StrictModel(BaseModel):
    """The base of every section users write: an unknown key is an error (with the closest valid
    one, :func:`one_line`), and so are YAML's ``.nan`` and ``.inf``, which pass every bound.

    And a YAML boolean where a number is expected: pydantic's lax mode reads ``true`` as 1, so
    ``trials: yes`` or ``cpus_per_trial: on`` became one trial or one CPU unsaid."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _numbers_only(field.annotation):
            raise ValueError(f"expected a number, found {str(value).lower()}")
        return value


def short_repr(value: Any, limit: int = 60) -> str:
    """``value`` as an error shows it: its repr (a numpy scalar's as the Python number's), cut at ``limit``."""
    text = repr(value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value)
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
            message += f" (found {short_repr(found)})"
    if len(errors) > 1:
        message += f" [and {len(errors) - 1} more problem(s)]"
    return message


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``, but a key given twice in one mapping is an error: PyYAML keeps the last
    silently, so a second ``budget:`` section would drop the first one's fields unsaid. Keys that
    a merge (``<<: *anchor``) brings in may be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: construct_mapping reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first at line {first.start_mark.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` through :class:`UniqueKeyLoader`: a key given twice is a
    ``yaml.YAMLError`` that names both lines, which the callers' YAML errors already report."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
