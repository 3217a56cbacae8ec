"""FourierFT: the weight update as a few trained spectral coefficients (Gao et al., 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import FourierFTConfig

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.model.placement import leaves_named, names_regex
from autopeft.space import ChoiceSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> FourierFTConfig:
    # a module has in*out frequencies; fewer than asked on small modules rather than an error
    sizes = [leaf.in_features * leaf.out_features for leaf in leaves_named(target.structure, target.module_names)]
    n = min([int(params["n_frequency"]), *sizes])
    return FourierFTConfig(task_type=target.peft_task_type, n_frequency=n, scaling=float(params["scaling"]),
                           target_modules=names_regex(target.module_names))


register(AdapterFamily(
    name="fourierft",
    description="Weight update from n trained Fourier coefficients per module (Gao et al., 2024).",
    defaults={"n_frequency": ChoiceSpec(choices=[100, 500, 1000]), "scaling": ChoiceSpec(choices=[100.0, 150.0])},
    rules={"n_frequency": ParamRule(minimum=1, integer=True), "scaling": ParamRule(minimum=1e-6)},
    build=build,
))
