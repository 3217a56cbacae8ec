"""BitFit: train only bias terms (Ben Zaken et al., 2022).

Implemented with peft's BEFT layers (a trained bias vector added to each chosen module's
output, zero at the start), so it saves, loads and counts parameters like every other peft
method; on modules that already have a bias this is exactly BitFit's update of that bias, and
it works on bias-free models (Llama) too. LayerNorm biases are left to ``ln_tuning``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import BeftConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, linear_only, register
from autopeft.model.placement import names_regex


def build(params: Mapping[str, Any], target: AdapterTarget) -> BeftConfig:
    return BeftConfig(task_type=target.peft_task_type, target_modules=names_regex(target.module_names))


register(AdapterFamily(
    name="bitfit",
    description="Bias-only tuning: a trained bias on each chosen module's output (Ben Zaken et al., 2022; peft BEFT).",
    defaults={}, build=build, applies_to=linear_only("BEFT"),
    architectures="models with nn.Linear layers (not GPT-2)",
))
