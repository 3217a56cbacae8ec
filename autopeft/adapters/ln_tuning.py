"""LN tuning: train only the normalisation layers' scale and shift (Zhao et al., 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import LNTuningConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, register
from autopeft.model.placement import ModelStructure, names_regex


def _norms(structure: ModelStructure) -> list[str]:
    return structure.norms


def build(params: Mapping[str, Any], target: AdapterTarget) -> LNTuningConfig:
    return LNTuningConfig(task_type=target.peft_task_type, target_modules=names_regex(_norms(target.structure)))


def applies_to(structure: ModelStructure) -> str | None:
    return None if _norms(structure) else "the model has no LayerNorm/RMSNorm layers to tune"


register(AdapterFamily(
    name="ln_tuning",
    description="Only the LayerNorm/RMSNorm parameters are trained (Zhao et al., 2023).",
    defaults={}, build=build, uses_placement=False, applies_to=applies_to,
    architectures="any with LayerNorm/RMSNorm layers",
))
