"""Prompt tuning: trained virtual token embeddings prepended to the input (Lester et al., 2021)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import PromptTuningConfig

from autopeft.adapters._prompt import dims, needs_tokens
from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> PromptTuningConfig:
    return PromptTuningConfig(task_type=target.peft_task_type, **dims(target.structure), num_virtual_tokens=int(params["num_virtual_tokens"]))


register(AdapterFamily(
    name="prompt_tuning",
    description="Trained virtual token embeddings prepended to the input (Lester et al., 2021).",
    defaults={"num_virtual_tokens": ChoiceSpec(choices=[8, 16, 32])},
    rules={"num_virtual_tokens": ParamRule(minimum=1, integer=True)},
    build=build, uses_placement=False, prompt_learning=True, applies_to=needs_tokens, architectures="text models",
))
