"""Fault injection for reliability tests (chaos knobs), off unless AUTOPEFT_FAULTS is set.

The tests of "a failing trial is recorded and the study goes on" need failures that happen
inside real Ray workers, which inherit the driver's environment. ``AUTOPEFT_FAULTS`` holds a
JSON object; every key is optional:

- ``raise_when``: {param: value, ...} — a trial whose sampled config matches raises at start.
- ``nan_when`` and ``nan_at_step``: a matching trial's training loss becomes NaN at that step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

ENV = "AUTOPEFT_FAULTS"


class InjectedFault(RuntimeError):
    """Raised on purpose by a test's fault injection."""


def _spec() -> dict[str, Any]:
    raw = os.environ.get(ENV)
    return json.loads(raw) if raw else {}


def _matches(config: Mapping[str, Any], when: Mapping[str, Any] | None) -> bool:
    return bool(when) and all(config.get(k) == v for k, v in when.items())  # type: ignore[union-attr]


def maybe_raise(config: Mapping[str, Any]) -> None:
    if _matches(config, _spec().get("raise_when")):
        raise InjectedFault(f"injected failure for {dict(_spec()['raise_when'])}")


def maybe_corrupt_loss(config: Mapping[str, Any], step: int, loss: float) -> float:
    spec = _spec()
    if _matches(config, spec.get("nan_when")) and step >= int(spec.get("nan_at_step", 1)):
        return float("nan")
    return loss
