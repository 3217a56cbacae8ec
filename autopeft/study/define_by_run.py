"""The search space as an Optuna define-by-run function: the adapter family first, then only
that family's parameters (the searcher's half of the space; the spec classes are in
:mod:`autopeft.space`)."""

from __future__ import annotations

from typing import Any

import optuna

from autopeft.adapters import get_family
from autopeft.errors import SpaceError
from autopeft.model.placement import mask_layers
from autopeft.space import (
    ADAPTER_KEY,
    MASK,
    TRAINING_KEYS,
    ChoiceSpec,
    ParamSpec,
    RangeSpec,
    SearchSpace,
    suggest,
)


class DefineByRun:
    """The define-by-run function: adapter family first, then only that family's parameters.

    Sampled values are recorded by Optuna; fixed values are returned so that Ray Tune passes
    them to the trial too. Optuna's names are not always the config's: a training parameter a
    family sets for itself is sampled as ``<family>.<key>``, and :func:`autopeft.space.config_names`
    turns Optuna's params and the returned values into the trial's config. A class, not a
    closure, because Ray pickles the searcher with it.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        space = self.space
        fixed: dict[str, Any] = {}
        names = list(space.adapters)
        if len(names) > 1:
            adapter = trial.suggest_categorical(ADAPTER_KEY, names)
        else:
            adapter = fixed[ADAPTER_KEY] = names[0]
        family = get_family(adapter)
        for pname, spec in family.resolve_params(space.own_params(adapter)).items():
            _sample_into(fixed, trial, f"{adapter}.{pname}", spec)
        shared = space.training_params(adapter)
        if family.uses_placement:
            placement: dict[str, ParamSpec] = {"placement.layers": space.placement.layers}
            if family.uses_roles:  # bottleneck families place themselves by their own position
                placement["placement.roles"] = space.placement.roles
            shared = {**placement, **shared}
        for key, spec in shared.items():
            # a rate the family sets for itself is sampled under its own name: TPE models it apart
            value = suggest(spec, trial, space.sampled_name(adapter, key) if key in TRAINING_KEYS else key)
            if not isinstance(spec, (RangeSpec, ChoiceSpec)):
                fixed[key] = value
            if key == "placement.layers" and value == MASK:
                fixed[key] = self._sample_mask(trial)
        return fixed

    def _sample_mask(self, trial: optuna.Trial) -> str:
        """One on/off bit per layer, each a parameter of its own (AutoPEFT's layer mask); the
        layers switched on, as a comma-joined selector the trial resolves like any other."""
        num_layers = self.space.num_layers
        if not num_layers:
            raise SpaceError("space.placement.layers: mask needs the model's layer count (bind the space to the model)")
        bits = [trial.suggest_categorical(f"placement.layer_{i}", [True, False]) for i in range(num_layers)]
        # an all-off mask still needs one adapted layer: the last one, where adapters matter most
        layers = mask_layers(bits) or [num_layers - 1]
        return ",".join(str(i) for i in layers)


def compile_space(space: SearchSpace) -> DefineByRun:
    """The space as an Optuna define-by-run function (see :class:`DefineByRun`)."""
    return DefineByRun(space)


def _sample_into(fixed: dict[str, Any], trial: optuna.Trial, name: str, spec: ParamSpec) -> None:
    value = suggest(spec, trial, name)
    if not isinstance(spec, (RangeSpec, ChoiceSpec)):
        fixed[name] = value


