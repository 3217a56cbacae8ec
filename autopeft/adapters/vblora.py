"""VB-LoRA: every LoRA factor composed from a shared bank of vectors (Li et al., 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import VBLoRAConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, fitting_block, module_widths, register
from autopeft.model.placement import names_regex
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> VBLoRAConfig:
    dims = module_widths(target, outputs=True)
    return VBLoRAConfig(
        task_type=target.peft_task_type, r=int(params["r"]), num_vectors=int(params["num_vectors"]),
        vector_length=fitting_block(int(params["vector_length"]), dims), topk=int(params["topk"]),
        target_modules=names_regex(target.module_names),
    )


register(AdapterFamily(
    name="vblora",
    description="LoRA factors built from the top-k of a shared vector bank (Li et al., 2024); vector_length "
    "is shrunk to the nearest size that divides every chosen module's widths.",
    defaults={"r": ChoiceSpec(choices=[4, 8]), "num_vectors": ChoiceSpec(choices=[64, 256]),
              "vector_length": ChoiceSpec(choices=[64, 128]), "topk": 2},
    rules={"r": ParamRule(minimum=1, integer=True), "num_vectors": ParamRule(minimum=2, integer=True),
           "vector_length": ParamRule(minimum=1, integer=True), "topk": ParamRule(minimum=1, integer=True)},
    build=build,
))
