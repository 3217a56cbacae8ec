"""LoRA and DoRA (weight-decomposed LoRA), both through peft's ``LoraConfig``.

Variants are parameters: ``rslora`` (alpha/sqrt(r) scaling), ``init`` (peft's initialisations:
the default Kaiming/zero, gaussian, and PiSSA, fast PiSSA and OLoRA, which start the adapter
from the weights' principal components / QR factors and rewrite the base weights to match)
and ``rank_pattern`` (a rank per layer group, compiled to peft's ``rank_pattern``; alpha
follows the rank so the scale stays alpha/r).

A PiSSA/OLoRA trial trains on rewritten base weights; the adapter users get is converted to a
plain LoRA adapter for the unchanged base model when it is saved (``training.export_adapter``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from peft import LoraConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.model.placement import names_regex, rank_pattern
from autopeft.space import ChoiceSpec, ParamSpec, RangeSpec

#: ``init`` values and what peft calls them (pissa_fast: PiSSA with a 4-iteration randomized SVD).
INITS: dict[str, Any] = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "pissa_fast": "pissa_niter_4",
                         "olora": "olora"}

_DEFAULTS: dict[str, ParamSpec] = {
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
        init = INITS[str(params.get("init", "default"))]
        alphas = alpha_pattern(ranks, r, alpha)
        rslora = bool(params["rslora"])
        if rslora and ranks and isinstance(init, str) and init.startswith(("pissa", "olora")):
            # peft cannot convert a PiSSA/OLoRA adapter back for the unchanged base when rsLoRA
            # meets a rank pattern; the same scales alpha/sqrt(r) written as plain alpha'/r can
            alphas = {key: a * math.sqrt(ranks[key]) for key, a in alphas.items()}
            alpha, rslora = alpha * math.sqrt(r), False
        return LoraConfig(
            task_type=target.peft_task_type,
            r=r,
            lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; it divides by r either way
            lora_dropout=float(params["dropout"]),
            use_rslora=rslora,
            use_dora=use_dora,
            init_lora_weights=init,
            rank_pattern=ranks,
            alpha_pattern=alphas,
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
    # PiSSA/OLoRA adapters are converted to plain LoRA for the unchanged base (ΔW = BA - B0·A0);
    # DoRA's normalised magnitude is not linear in BA, so no such conversion exists for it
    defaults=_DEFAULTS, rules={**_RULES, "init": ParamRule(choices=("default", "gaussian"))},
    build=_builder(use_dora=True),
))
