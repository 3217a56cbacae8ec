"""LoHa: low-rank Hadamard product update (Hyeon-Woo et al., 2022), peft's ``LoHaConfig``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import LoHaConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, linear_only, register
from autopeft.adapters.lora import alpha_pattern
from autopeft.model.placement import names_regex, rank_pattern
from autopeft.space import ChoiceSpec, ParamSpec, RangeSpec

DEFAULTS: dict[str, ParamSpec] = {
    "r": ChoiceSpec(choices=[4, 8, 16]),
    "alpha": ChoiceSpec(choices=[8, 16, 32]),
    "rank_dropout": RangeSpec(low=0.0, high=0.1),
    "module_dropout": 0.0,
    "rank_pattern": "uniform",
}
RULES = {
    "r": ParamRule(minimum=1, integer=True),
    "alpha": ParamRule(minimum=1e-6),
    "rank_dropout": ParamRule(minimum=0.0, maximum=0.99),
    "module_dropout": ParamRule(minimum=0.0, maximum=0.99),
}


def build(params: Mapping[str, Any], target: AdapterTarget) -> LoHaConfig:
    r, alpha = int(params["r"]), float(params["alpha"])
    ranks = rank_pattern(target.structure, target.module_names, r, params.get("rank_pattern"),
                         "space.adapters.loha.rank_pattern")
    return LoHaConfig(
        task_type=target.peft_task_type, r=r, alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; used as alpha / r
        rank_dropout=float(params["rank_dropout"]), module_dropout=float(params["module_dropout"]),
        rank_pattern=ranks, alpha_pattern=alpha_pattern(ranks, r, alpha),
        target_modules=names_regex(target.module_names),
    )


register(AdapterFamily(
    name="loha",
    description="Hadamard product of two low-rank updates (LyCORIS LoHa; Hyeon-Woo et al., 2022).",
    defaults=DEFAULTS, rules=RULES, build=build, applies_to=linear_only("LoHa"),
    architectures="models with nn.Linear layers (not GPT-2)",
))
