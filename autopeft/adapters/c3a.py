"""C3A: block-circulant convolution adapters (Chen et al., 2025)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import C3AConfig

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


def build(params: Mapping[str, Any], target: AdapterTarget) -> C3AConfig:
    dims = module_widths(target, outputs=True)
    return C3AConfig(task_type=target.peft_task_type, block_size=fitting_block(int(params["block_size"]), dims),
                     target_modules=names_regex(target.module_names))


register(AdapterFamily(
    name="c3a",
    description="Block-circulant weight updates computed by FFT (C3A; Chen et al., 2025); block_size is "
    "shrunk to the nearest size that divides every chosen module's widths.",
    defaults={"block_size": ChoiceSpec(choices=[32, 64, 128])},
    rules={"block_size": ParamRule(minimum=1, integer=True)},
    build=build, applies_to=linear_only("C3A"), architectures="models with nn.Linear layers (not GPT-2)",
))
