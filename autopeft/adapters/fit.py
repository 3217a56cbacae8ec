"""Fit a search space to one model and task, before any compute: which families can run on it,
and which modules each placement choice resolves to (what ``autopeft space`` prints and a
search uses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autopeft.adapters.base import get_family
from autopeft.errors import SpaceError
from autopeft.model.placement import ModelStructure, resolve
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
    # families that place themselves (bottleneck positions) only need the layers to exist
    role_choices = _choices(space.placement.roles, "space.placement.roles") if uses_roles else ["all-linear"]
    for layers in layer_choices:
        selector = "all" if layers == MASK else layers  # a mask may switch on any layer
        for roles in role_choices:
            fit.placements.append((layers, roles, resolve(structure, selector, roles)))
    return fit
