"""Fault injection for reliability tests (chaos knobs): an explicit plan, off unless set.

The tests of "a failing trial is recorded and the study goes on" need failures that happen
inside real Ray workers. The plan is read once, in the driver, from ``AUTOPEFT_FAULTS`` (a JSON
object) when a study is prepared, and travels to the workers inside the study's
:class:`~autopeft.engine.training.StudySpec`; the training loop never reads the environment.
Every key is optional:

- ``raise_when``: {param: value, ...} — a trial whose sampled config matches raises at start.
- ``nan_when`` and ``nan_at_step``: a matching trial's training loss becomes NaN at that step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV = "AUTOPEFT_FAULTS"


class InjectedFault(RuntimeError):
    """Raised on purpose by a test's fault injection."""


@dataclass(frozen=True)
class FaultPlan:
    """Which trials fail, and how."""

    raise_when: Mapping[str, Any] = field(default_factory=dict)
    nan_when: Mapping[str, Any] = field(default_factory=dict)
    nan_at_step: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> FaultPlan | None:
        """The plan in ``AUTOPEFT_FAULTS``, or None (no faults) when it is unset."""
        raw = environ.get(ENV)
        if not raw:
            return None
        spec = json.loads(raw)
        return cls(raise_when=spec.get("raise_when") or {}, nan_when=spec.get("nan_when") or {},
                   nan_at_step=int(spec.get("nan_at_step", 1)))

    def maybe_raise(self, config: Mapping[str, Any]) -> None:
        if _matches(config, self.raise_when):
            raise InjectedFault(f"injected failure for {dict(self.raise_when)}")

    def corrupt_loss(self, config: Mapping[str, Any], step: int, loss: float) -> float:
        if _matches(config, self.nan_when) and step >= self.nan_at_step:
            return float("nan")
        return loss


def _matches(config: Mapping[str, Any], when: Mapping[str, Any]) -> bool:
    return bool(when) and all(config.get(k) == v for k, v in when.items())
