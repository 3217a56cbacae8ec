"""DeLoRA: LoRA with normalised, bounded updates (Bini et al., 2025)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import DeloraConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, linear_only, register
from autopeft.model.placement import names_regex
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> DeloraConfig:
    return DeloraConfig(task_type=target.peft_task_type, r=int(params["r"]),
                        delora_lambda=float(params["lambda"]),  # type: ignore[arg-type]  # peft annotates int
                        target_modules=names_regex(target.module_names))


register(AdapterFamily(
    name="delora",
    description="Decoupled low-rank adaptation: normalised rank-r updates scaled by a trained bound lambda "
    "(Bini et al., 2025).",
    defaults={"r": ChoiceSpec(choices=[4, 8, 16]), "lambda": 15.0},
    rules={"r": ParamRule(minimum=1, integer=True), "lambda": ParamRule(minimum=0.0)},
    build=build, applies_to=linear_only("DeLoRA"), architectures="models with nn.Linear layers (not GPT-2)",
))
