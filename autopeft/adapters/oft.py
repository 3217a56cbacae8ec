"""OFT: orthogonal fine-tuning with block-diagonal rotations (Qiu et al., 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import OFTConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, linear_only, register
from autopeft.placement import leaves_named, names_regex
from autopeft.space import ChoiceSpec


def fitting_block(requested: int, dims: list[int]) -> int:
    """The largest block size <= requested that divides every dimension (1 at worst), so a
    sampled block size never fails on a module whose width it does not divide."""
    for size in range(max(1, requested), 0, -1):
        if all(d % size == 0 for d in dims):
            return size
    return 1


def module_widths(target: AdapterTarget, *, outputs: bool = False) -> list[int]:
    """The chosen modules' input widths (and output widths with ``outputs``): what a block,
    vector or shard size must divide."""
    leaves = leaves_named(target.structure, target.module_names)
    return [d for leaf in leaves for d in ((leaf.in_features, leaf.out_features) if outputs else (leaf.in_features,))]


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
