"""RandLoRA: full-rank updates from many frozen random low-rank bases (Albert et al., 2025)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import RandLoraConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.model.placement import names_regex
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> RandLoraConfig:
    r = int(params["r"])
    return RandLoraConfig(
        task_type=target.peft_task_type, r=r, randlora_alpha=int(params["alpha_per_rank"]) * r,
        save_projection=True,  # the adapter reloads without relying on the PRNG key
        target_modules=names_regex(target.module_names),
    )


register(AdapterFamily(
    name="randlora",
    description="Trained diagonal scalings of frozen random bases, combined to a full-rank update "
    "(Albert et al., 2025); alpha = alpha_per_rank x r as peft recommends (20).",
    defaults={"r": ChoiceSpec(choices=[16, 32]), "alpha_per_rank": 20},
    rules={"r": ParamRule(minimum=1, integer=True), "alpha_per_rank": ParamRule(minimum=1, integer=True)},
    build=build,
))
