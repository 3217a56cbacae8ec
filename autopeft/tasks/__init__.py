"""Task kinds, one registry entry each: head, columns, encoder, collator, metrics."""

from __future__ import annotations

from autopeft.tasks.kinds import (
    MINIMISED_METRICS,
    Collator,
    Encoder,
    TaskKind,
    get_task,
    task_names,
)

__all__ = [
    "Collator",
    "Encoder",
    "get_task",
    "MINIMISED_METRICS",
    "task_names",
    "TaskKind",
]
