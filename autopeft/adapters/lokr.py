"""LoKr: Kronecker-product update (LyCORIS), peft's ``LoKrConfig``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import LoKrConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, linear_only, register
from autopeft.adapters.loha import DEFAULTS, RULES
from autopeft.adapters.lora import alpha_pattern
from autopeft.model.placement import names_regex, rank_pattern


def build(params: Mapping[str, Any], target: AdapterTarget) -> LoKrConfig:
    r, alpha = int(params["r"]), float(params["alpha"])
    ranks = rank_pattern(target.structure, target.module_names, r, params.get("rank_pattern"),
                         "space.adapters.lokr.rank_pattern")
    return LoKrConfig(
        task_type=target.peft_task_type, r=r, alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; used as alpha / r
        rank_dropout=float(params["rank_dropout"]), module_dropout=float(params["module_dropout"]),
        decompose_factor=int(params["decompose_factor"]),
        rank_pattern=ranks, alpha_pattern=alpha_pattern(ranks, r, alpha),
        target_modules=names_regex(target.module_names),
    )


register(AdapterFamily(
    name="lokr",
    description="Kronecker product of a small full matrix and a low-rank one (LyCORIS LoKr).",
    defaults={**DEFAULTS, "decompose_factor": -1},
    rules={**RULES, "decompose_factor": ParamRule(minimum=-1, integer=True)},
    build=build, applies_to=linear_only("LoKr"), architectures="models with nn.Linear layers (not GPT-2)",
))
