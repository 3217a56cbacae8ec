"""autopeft: find the best parameter-efficient fine-tuning configuration for a model and a task.

``autopeft.search(model=..., train=..., time=...)`` runs a study and registers its best adapter;
``autopeft.load("models:/NAME@ALIAS")`` gives a ready predictor; ``autopeft.submit(...)`` runs a
study as a Ray job on a cluster (see :mod:`autopeft.api`).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("autopeft")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load", "search", "submit"]


def __getattr__(name: str) -> Any:
    # deferred (PEP 562): the API imports torch, Ray and MLflow, so `import autopeft` and the CLI's
    # --help stay light; by name, as the package root sits above every layer and imports none
    if name in ("search", "load", "submit"):
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module 'autopeft' has no attribute {name!r}")
