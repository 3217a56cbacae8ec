"""VeRA: frozen shared random projections, trained scaling vectors (Kopiczko et al., 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import VeraConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.model.placement import names_regex
from autopeft.space import ChoiceSpec, RangeSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> VeraConfig:
    return VeraConfig(
        task_type=target.peft_task_type, r=int(params["r"]), d_initial=float(params["d_initial"]),
        vera_dropout=float(params["dropout"]),
        save_projection=True,  # the adapter reloads without relying on the PRNG key
        target_modules=names_regex(target.module_names),
    )


register(AdapterFamily(
    name="vera",
    description="Shared frozen random low-rank matrices with trained per-module scaling vectors (Kopiczko et al., 2024).",
    defaults={"r": ChoiceSpec(choices=[64, 128, 256]), "d_initial": 0.1, "dropout": RangeSpec(low=0.0, high=0.1)},
    rules={"r": ParamRule(minimum=1, integer=True), "d_initial": ParamRule(minimum=0.0),
           "dropout": ParamRule(minimum=0.0, maximum=0.99)},
    build=build,
))
