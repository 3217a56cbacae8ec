"""Task kinds, one registry entry each (kinds.py): head, columns, encoder, collator, metrics, predictions."""

from __future__ import annotations

import autopeft.tasks.kinds  # noqa: F401  (registers the built-in kinds)
from autopeft.tasks.base import (
    MINIMISED_METRICS,
    Collator,
    Encoder,
    TaskKind,
    all_tasks,
    get_task,
    register_task,
    task_names,
)
from autopeft.tasks.encoding import (
    collate,
    tokenize,
)
from autopeft.tasks.trivial import Judgement, TrivialLevel, trivial_level

__all__ = [
    "all_tasks",
    "collate",
    "Collator",
    "Encoder",
    "get_task",
    "Judgement",
    "MINIMISED_METRICS",
    "register_task",
    "task_names",
    "TaskKind",
    "tokenize",
    "trivial_level",
    "TrivialLevel",
]
