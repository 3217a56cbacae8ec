"""HRA: a chain of Householder reflections applied to the weights (Yuan et al., 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import HRAConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, linear_only, register
from autopeft.model.placement import names_regex
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> HRAConfig:
    return HRAConfig(task_type=target.peft_task_type, r=int(params["r"]), apply_GS=bool(params["orthogonalize"]),
                     target_modules=names_regex(target.module_names))


register(AdapterFamily(
    name="hra",
    description="Product of r Householder reflections on each chosen weight (Yuan et al., 2024).",
    defaults={"r": ChoiceSpec(choices=[2, 4, 8]), "orthogonalize": False},
    rules={"r": ParamRule(minimum=1, integer=True), "orthogonalize": ParamRule(choices=(True, False))},
    build=build, applies_to=linear_only("HRA"), architectures="models with nn.Linear layers (not GPT-2)",
))
