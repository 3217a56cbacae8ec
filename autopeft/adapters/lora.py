"""LoRA and DoRA (weight-decomposed LoRA), both through peft's ``LoraConfig``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import LoraConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.placement import names_regex
from autopeft.space import ChoiceSpec, RangeSpec

_DEFAULTS = {
    "r": ChoiceSpec(choices=[4, 8, 16, 32]),
    "alpha": ChoiceSpec(choices=[8, 16, 32, 64]),
    "dropout": RangeSpec(low=0.0, high=0.2),
    "rslora": False,
}
_RULES = {
    "r": ParamRule(minimum=1, integer=True),
    "alpha": ParamRule(minimum=1e-6),
    "dropout": ParamRule(minimum=0.0, maximum=0.99),
    "rslora": ParamRule(choices=(True, False)),
}


def _builder(use_dora: bool):
    def build(params: Mapping[str, Any], target: AdapterTarget) -> LoraConfig:
        return LoraConfig(
            task_type=target.peft_task_type,
            r=int(params["r"]),
            lora_alpha=float(params["alpha"]),
            lora_dropout=float(params["dropout"]),
            use_rslora=bool(params["rslora"]),
            use_dora=use_dora,
            target_modules=names_regex(target.module_names),
        )

    return build


register(AdapterFamily(
    name="lora",
    description="Low-rank update W + (alpha/r)·BA on the chosen modules (Hu et al., 2021).",
    defaults=_DEFAULTS, rules=_RULES, build=_builder(use_dora=False),
))
register(AdapterFamily(
    name="dora",
    description="LoRA with the weight split into magnitude and direction (Liu et al., 2024).",
    defaults=_DEFAULTS, rules=_RULES, build=_builder(use_dora=True),
))
