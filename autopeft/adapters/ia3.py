"""IA3: learned rescaling vectors on the chosen modules (Liu et al., 2022)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import IA3Config

from autopeft.adapters.base import AdapterFamily, AdapterTarget, register
from autopeft.model.placement import ROLE_GROUPS, names_regex, role_of_names


def build(params: Mapping[str, Any], target: AdapterTarget) -> IA3Config:
    # IA3 scales the input of feed-forward modules and the output of the others; peft needs
    # to be told which targets are feed-forward.
    feedforward = role_of_names(target.structure, target.module_names, ROLE_GROUPS["mlp"])
    return IA3Config(
        task_type=target.peft_task_type,
        target_modules=names_regex(target.module_names),
        feedforward_modules=names_regex(feedforward) if feedforward else [],
    )


register(AdapterFamily(
    name="ia3",
    description="Learned vectors that rescale activations of the chosen modules (Liu et al., 2022).",
    defaults={}, build=build,
))
