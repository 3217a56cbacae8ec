"""GraLoRA: LoRA split into k x k sub-blocks with their own low-rank factors (Jung et al., 2025)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import GraloraConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, fitting_block, module_widths, register
from autopeft.model.placement import names_regex
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> GraloraConfig:
    r = int(params["r"])
    # k must divide r and every chosen module's widths
    k = fitting_block(int(params["k"]), [r, *module_widths(target, outputs=True)])
    return GraloraConfig(task_type=target.peft_task_type, r=r, alpha=2 * r, gralora_k=k,
                         target_modules=names_regex(target.module_names))


register(AdapterFamily(
    name="gralora",
    description="Granular LoRA: the update split into k x k blocks, each with rank r/k factors "
    "(Jung et al., 2025); alpha = 2r.",
    defaults={"r": ChoiceSpec(choices=[16, 32]), "k": ChoiceSpec(choices=[2, 4])},
    rules={"r": ParamRule(minimum=1, integer=True), "k": ParamRule(minimum=1, integer=True)},
    build=build,
))
