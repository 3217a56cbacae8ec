"""MiSS (formerly Bone): a shared trainable block per weight, updated by matrix sharding (Kang et al., 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import MissConfig

from autopeft.adapters.base import (
    AdapterFamily,
    AdapterTarget,
    ParamRule,
    fitting_block,
    linear_only,
    module_widths,
    register,
)
from autopeft.model.placement import names_regex
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> MissConfig:
    return MissConfig(task_type=target.peft_task_type, r=fitting_block(int(params["r"]), module_widths(target)),
                      target_modules=names_regex(target.module_names))


register(AdapterFamily(
    name="miss",
    description="Matrix shard sharing (MiSS, formerly Bone; Kang et al., 2024); r is shrunk to the nearest "
    "size that divides every chosen module's input width.",
    defaults={"r": ChoiceSpec(choices=[16, 32, 64])},
    rules={"r": ParamRule(minimum=1, integer=True)},
    build=build, applies_to=linear_only("MiSS"), architectures="models with nn.Linear layers (not GPT-2)",
))
