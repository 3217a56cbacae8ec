"""BOFT: orthogonal fine-tuning with butterfly factorisation (Liu et al., 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import BOFTConfig

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


def _fitting_factor(requested: int, block_size: int, dims: list[int]) -> int:
    # peft needs (width / block_size) divisible by 2^(factor-1) for the butterfly stages
    for factor in range(max(1, requested), 0, -1):
        if all((d // block_size) % (2 ** (factor - 1)) == 0 for d in dims):
            return factor
    return 1


def build(params: Mapping[str, Any], target: AdapterTarget) -> BOFTConfig:
    dims = module_widths(target)
    block = fitting_block(int(params["block_size"]), dims)
    return BOFTConfig(
        task_type=target.peft_task_type, boft_block_size=block, boft_block_num=0,
        boft_n_butterfly_factor=_fitting_factor(int(params["butterfly_factor"]), block, dims),
        boft_dropout=float(params["dropout"]),
        target_modules=names_regex(target.module_names),
    )


register(AdapterFamily(
    name="boft",
    description="Orthogonal fine-tuning with butterfly-factorised rotations (Liu et al., 2024).",
    defaults={"block_size": ChoiceSpec(choices=[4, 8]), "butterfly_factor": ChoiceSpec(choices=[1, 2]),
              "dropout": 0.0},
    rules={"block_size": ParamRule(minimum=1, integer=True), "butterfly_factor": ParamRule(minimum=1, integer=True),
           "dropout": ParamRule(minimum=0.0, maximum=0.99)},
    build=build, applies_to=linear_only("BOFT"), architectures="models with nn.Linear layers (not GPT-2)",
))
