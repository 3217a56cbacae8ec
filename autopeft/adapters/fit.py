"""Fit a search space to one model and task, before any compute: which families can run on it,
and which modules each placement choice resolves to (what ``autopeft space`` prints and a
search uses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autopeft.adapters.base import get_family
from autopeft.errors import SpaceError
from autopeft.model.placement import ModelStructure, parse_layers, parse_roles, resolve
from autopeft.space import MASK, ChoiceSpec, ParamSpec, RangeSpec, SearchSpace


@dataclass
class SpaceFit:
    """What a space will search on one model: what ``autopeft space`` prints and search uses."""

    kept: list[str]
    #: Families the model cannot run, with the reason.
    excluded: dict[str, str]
    #: (layer selector, roles, module names it resolves to) for each placement choice.
    placements: list[tuple[Any, Any, list[str]]] = field(default_factory=list)
    num_layers: int = 0
    #: Role choices of the space that match no module of this architecture ('query,value' on
    #: GPT-2's fused qkv), and layer choices deeper than the model ('last-4' of 2 layers), with
    #: the reason: dropped from the choices, as a family the model cannot run is.
    excluded_roles: dict[str, str] = field(default_factory=dict)
    excluded_layers: dict[str, str] = field(default_factory=dict)
    #: The role and layer choices left, where some were excluded (else None: all of them).
    kept_roles: list[Any] | None = None
    kept_layers: list[Any] | None = None


def _fitting_roles(structure: ModelStructure, choices: list[Any], excluded: dict[str, str]) -> list[Any]:
    """The role choices that match some module of the model in any layer; each other one goes
    into ``excluded`` (roles joined by ',' -> why). An unknown role name stays an error."""
    fitting = []
    for roles in choices:
        named = ",".join(parse_roles(roles))
        try:
            resolve(structure, "all", roles)
        except SpaceError as exc:
            excluded[named] = str(exc).removeprefix(f"space.placement.roles: {named} ")
            continue
        fitting.append(roles)
    return fitting


def _fitting_layers(structure: ModelStructure, choices: list[Any], excluded: dict[str, str]) -> list[Any]:
    """The layer choices this model is deep enough for; each other one goes into ``excluded``
    (the choice as written -> why). A selector that is no selector stays an error."""
    fitting = []
    for layers in choices:
        if layers == MASK:
            fitting.append(layers)
            continue
        parse_layers(layers, 1 << 20)  # well-formed at any depth, or the user's mistake to name
        try:
            parse_layers(layers, structure.num_layers)
        except SpaceError as exc:
            excluded[str(layers)] = str(exc).removeprefix("space.placement.layers: ")
            continue
        fitting.append(layers)
    return fitting


def _kept(what: str, choices: list[Any], fitting: list[Any], excluded: dict[str, str]) -> list[Any] | None:
    """The ``space.placement.<what>`` choices left where some were excluded (None: all fit);
    SpaceError naming each one's reason where none is left."""
    if not fitting:
        reasons = "; ".join(f"{choice}: {why}" for choice, why in excluded.items())
        raise SpaceError(f"space.placement.{what}: no choice fits this model ({reasons})")
    return fitting if len(fitting) < len(choices) else None


def _choices(spec: ParamSpec, field_name: str) -> list[Any]:
    if isinstance(spec, ChoiceSpec):
        return list(spec.choices)
    if isinstance(spec, RangeSpec):
        raise SpaceError(f"{field_name}: expected a value or choices, found a range")
    return [spec]


def fit_to_model(space: SearchSpace, structure: ModelStructure, task: str) -> SpaceFit:
    """Check a space against a model and a task, before any compute.

    Bad input raises SpaceError (an unknown family, a parameter a family does not take or a
    value outside its rule, a family that does not fit the task, a placement that selects no
    module or a layer beyond the depth). A family the *architecture* cannot run (prefix tuning
    on a model without past key values, OFT on GPT-2's Conv1D) is excluded with its reason
    instead, so one search space fits many models; SpaceError only when none is left.
    The space is bound to the model's layer count (for ``mask``).
    """
    kept: list[str] = []
    excluded: dict[str, str] = {}
    uses_placement = uses_roles = False
    for name in space.adapters:
        family = get_family(name)
        if task not in family.task_kinds:
            raise SpaceError(f"space.adapters.{name}: {name} does not apply to {task} "
                             f"(it applies to: {', '.join(family.task_kinds)})")
        family.validate(space.own_params(name))
        reason = family.exclusion_reason(structure)
        if reason:
            excluded[name] = reason
            continue
        kept.append(name)
        uses_placement |= family.uses_placement
        uses_roles |= family.uses_placement and family.uses_roles
    fit = SpaceFit(kept=kept, excluded=excluded, num_layers=structure.num_layers)
    if not kept:
        reasons = "; ".join(f"{n}: {r}" for n, r in excluded.items())
        raise SpaceError(f"space.adapters: no family in the space can run on this model ({reasons})")
    space.bind_model(structure.num_layers)
    if not uses_placement:
        return fit
    layer_choices = _choices(space.placement.layers, "space.placement.layers")
    # a choice the architecture cannot take goes, as a family does; one alone is the user's word
    if len(layer_choices) > 1:
        fit.kept_layers = _kept("layers", layer_choices, _fitting_layers(structure, layer_choices, fit.excluded_layers),
                                fit.excluded_layers)
        layer_choices = fit.kept_layers or layer_choices
    # families that place themselves (bottleneck positions) only need the layers to exist
    role_choices = _choices(space.placement.roles, "space.placement.roles") if uses_roles else ["all-linear"]
    if len(role_choices) > 1:
        fit.kept_roles = _kept("roles", role_choices, _fitting_roles(structure, role_choices, fit.excluded_roles),
                               fit.excluded_roles)
        role_choices = fit.kept_roles or role_choices
    for layers in layer_choices:
        selector = "all" if layers == MASK else layers  # a mask may switch on any layer
        for roles in role_choices:
            fit.placements.append((layers, roles, resolve(structure, selector, roles)))
    return fit
