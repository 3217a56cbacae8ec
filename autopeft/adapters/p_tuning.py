"""P-tuning: virtual tokens produced by a small trained prompt encoder (Liu et al., 2021)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import PromptEncoderConfig

from autopeft.adapters._prompt import dims, needs_tokens
from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> PromptEncoderConfig:
    return PromptEncoderConfig(
        task_type=target.peft_task_type, **dims(target.structure), num_virtual_tokens=int(params["num_virtual_tokens"]),
        encoder_hidden_size=int(params["encoder_hidden_size"]),
        encoder_reparameterization_type=str(params["encoder"]),
    )


register(AdapterFamily(
    name="p_tuning",
    description="Virtual tokens from a trained MLP/LSTM prompt encoder (Liu et al., 2021).",
    defaults={"num_virtual_tokens": ChoiceSpec(choices=[8, 16, 32]),
              "encoder_hidden_size": ChoiceSpec(choices=[64, 128]), "encoder": "MLP"},
    rules={"num_virtual_tokens": ParamRule(minimum=1, integer=True),
           "encoder_hidden_size": ParamRule(minimum=1, integer=True),
           "encoder": ParamRule(choices=("MLP", "LSTM"))},
    build=build, uses_placement=False, prompt_learning=True, applies_to=needs_tokens, architectures="text models",
))
