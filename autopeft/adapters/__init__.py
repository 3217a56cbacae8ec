"""Adapter families, one module each; importing this package registers them all."""

from __future__ import annotations

from autopeft.adapters import ia3, lora  # noqa: F401  (registration side effects)
from autopeft.adapters.base import (
    AdapterFamily,
    AdapterTarget,
    ParamRule,
    families,
    get_family,
    register,
)

__all__ = ["AdapterFamily", "AdapterTarget", "ParamRule", "families", "get_family", "register"]
