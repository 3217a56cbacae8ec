"""Prefix tuning: trained key/value prefixes in every attention layer (Li & Liang, 2021).

peft feeds the prefixes as ``past_key_values``. Its causal-LM model passes them as a keyword
(GPT-2, Llama and other transformers 5 decoders take it); its sequence and token classifiers
require the name in the forward's signature, which transformers 5 renamed to ``cache``, and
fail with "Model does not support past key values". The family's ``applies_to`` repeats peft's
check on the model skeleton, so the family is excluded with that reason before the search
instead of failing in every trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import PrefixTuningConfig

from autopeft.adapters._prompt import dims, needs_tokens
from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.model.placement import ModelStructure
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> PrefixTuningConfig:
    return PrefixTuningConfig(
        task_type=target.peft_task_type, **dims(target.structure), num_virtual_tokens=int(params["num_virtual_tokens"]),
        prefix_projection=bool(params["projection"]), encoder_hidden_size=int(params["projection_size"]),
    )


def applies_to(structure: ModelStructure) -> str | None:
    if not structure.takes_input_ids:
        return needs_tokens(structure)
    if not structure.takes_past_key_values:
        return f"{structure.architecture} does not support past key values, which prefix tuning needs"
    return None


register(AdapterFamily(
    name="prefix_tuning",
    description="Trained key/value prefixes in every attention layer (Li & Liang, 2021).",
    defaults={"num_virtual_tokens": ChoiceSpec(choices=[8, 16, 32]), "projection": False, "projection_size": 128},
    rules={"num_virtual_tokens": ParamRule(minimum=1, integer=True), "projection": ParamRule(choices=(True, False)),
           "projection_size": ParamRule(minimum=1, integer=True)},
    build=build, uses_placement=False, prompt_learning=True, applies_to=applies_to,
    architectures="decoders fine-tuned as causal LMs (GPT-2, Llama, ...), models whose forward takes past_key_values",
))
