"""OFT: orthogonal fine-tuning with block-diagonal rotations (Qiu et al., 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import OFTConfig

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


def build(params: Mapping[str, Any], target: AdapterTarget) -> OFTConfig:
    dims = module_widths(target)
    return OFTConfig(
        task_type=target.peft_task_type, r=0,
        oft_block_size=fitting_block(int(params["block_size"]), dims),
        coft=bool(params["coft"]), module_dropout=float(params["module_dropout"]),
        target_modules=names_regex(target.module_names),
    )


register(AdapterFamily(
    name="oft",
    description="Block-diagonal orthogonal rotation of the weights (Qiu et al., 2023); "
    "block_size is shrunk to the nearest size that divides every chosen module's width.",
    defaults={"block_size": ChoiceSpec(choices=[4, 8, 16, 32]), "coft": False, "module_dropout": 0.0},
    rules={"block_size": ParamRule(minimum=1, integer=True), "coft": ParamRule(choices=(True, False)),
           "module_dropout": ParamRule(minimum=0.0, maximum=0.99)},
    build=build, applies_to=linear_only("OFT"), architectures="models with nn.Linear layers (not GPT-2)",
))
