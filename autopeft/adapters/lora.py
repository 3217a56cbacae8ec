"""LoRA and DoRA (weight-decomposed LoRA), both through peft's ``LoraConfig``.

Variants are parameters: ``rslora`` (alpha/sqrt(r) scaling), ``init`` (peft's initialisations
that leave the base weights untouched: the default Kaiming/zero and gaussian) and
``rank_pattern`` (a rank per layer group, compiled to peft's ``rank_pattern``; alpha follows
the rank so the scale stays alpha/r).

PiSSA and OLoRA are not offered yet: they rewrite the base weights when the adapter is built,
so the saved adapter only reproduces the trial on a base model converted the same way; they
need peft's ``path_initial_model_for_weight_conversion`` at save time first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import LoraConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.placement import names_regex, rank_pattern
from autopeft.space import ChoiceSpec, RangeSpec

#: ``init`` values and what peft calls them.
INITS: dict[str, Any] = {"default": True, "gaussian": "gaussian"}

_DEFAULTS = {
    "r": ChoiceSpec(choices=[4, 8, 16, 32]),
    "alpha": ChoiceSpec(choices=[8, 16, 32, 64]),
    "dropout": RangeSpec(low=0.0, high=0.2),
    "rslora": False,
    "init": "default",
    "rank_pattern": "uniform",
}
_RULES = {
    "r": ParamRule(minimum=1, integer=True),
    "alpha": ParamRule(minimum=1e-6),
    "dropout": ParamRule(minimum=0.0, maximum=0.99),
    "rslora": ParamRule(choices=(True, False)),
    "init": ParamRule(choices=tuple(INITS)),
}


def alpha_pattern(ranks: Mapping[str, int], r: int, alpha: float) -> dict[str, float]:
    """Keep alpha/r constant where the rank pattern changes r."""
    return {key: alpha * rank / r for key, rank in ranks.items()}


def _builder(use_dora: bool):
    def build(params: Mapping[str, Any], target: AdapterTarget) -> LoraConfig:
        r, alpha = int(params["r"]), float(params["alpha"])
        ranks = rank_pattern(target.structure, target.module_names, r, params.get("rank_pattern"),
                             f"space.adapters.{'dora' if use_dora else 'lora'}.rank_pattern")
        return LoraConfig(
            task_type=target.peft_task_type,
            r=r,
            lora_alpha=alpha,
            lora_dropout=float(params["dropout"]),
            use_rslora=bool(params["rslora"]),
            use_dora=use_dora,
            init_lora_weights=INITS[str(params.get("init", "default"))],
            rank_pattern=ranks,
            alpha_pattern=alpha_pattern(ranks, r, alpha),
            target_modules=names_regex(target.module_names),
        )

    return build


register(AdapterFamily(
    name="lora",
    description="Low-rank update W + (alpha/r)·BA on the chosen modules (Hu et al., 2021); "
    "rsLoRA scaling, PiSSA/OLoRA init and per-layer rank patterns as parameters.",
    defaults=_DEFAULTS, rules=_RULES, build=_builder(use_dora=False),
))
register(AdapterFamily(
    name="dora",
    description="LoRA with the weight split into magnitude and direction (Liu et al., 2024).",
    defaults=_DEFAULTS, rules=_RULES, build=_builder(use_dora=True),
))
