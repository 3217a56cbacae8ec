"""SHiRA: sparse high-rank adapters, a fixed sparse mask of trainable weights (Bhardwaj et al., 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import ShiraConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, linear_only, register
from autopeft.model.placement import leaves_named, names_regex
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> ShiraConfig:
    # r sets the number of trained weights per module: as many as a rank-r LoRA would train,
    # r·(in + out), which peft refuses beyond the module's own in·out weights
    leaves = leaves_named(target.structure, target.module_names)
    cap = min((leaf.in_features * leaf.out_features // (leaf.in_features + leaf.out_features) for leaf in leaves),
              default=int(params["r"]))
    return ShiraConfig(task_type=target.peft_task_type, r=max(1, min(int(params["r"]), cap)), mask_type="random",
                       random_seed=0, target_modules=names_regex(target.module_names))


register(AdapterFamily(
    name="shira",
    description="A random sparse set of trained weights per module, as many as a rank-r LoRA has "
    "(SHiRA; Bhardwaj et al., 2024); r is capped where that would exceed a module's own weights.",
    defaults={"r": ChoiceSpec(choices=[8, 16, 32])},
    rules={"r": ParamRule(minimum=1, integer=True)},
    build=build, applies_to=linear_only("SHiRA"), architectures="models with nn.Linear layers (not GPT-2)",
))
