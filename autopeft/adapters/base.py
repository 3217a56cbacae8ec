"""The adapter-family protocol and its registry.

A family is registered in one line (``register(AdapterFamily(...))``), the way peft registers
its methods. It declares the parameters it adds to the search space, with default ranges,
and builds a peft config from one sampled point and the resolved placement.

Optional hooks cover what some methods need beyond a config: ``applies_to`` says why a family
cannot work on an architecture (checked before the search, so the family is excluded instead of
failing mid-search), ``on_step`` runs after every optimizer step (AdaLoRA's rank allocation) and
``load_config`` rebuilds a config that needs code to load (custom peft layers).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autopeft.errors import SpaceError
from autopeft.model.placement import leaves_named
from autopeft.space import ChoiceSpec, RangeSpec, check_bounds
from autopeft.tasks import all_tasks

if TYPE_CHECKING:
    from peft import PeftConfig
    from torch import nn

    from autopeft.model.placement import ModelStructure
    from autopeft.space import ParamSpec


@dataclass(frozen=True)
class AdapterTarget:
    """What a builder needs to know about the model and the placement of one trial."""

    module_names: list[str]
    structure: ModelStructure
    peft_task_type: str
    #: Layer indices the placement selected (families that pick their own roles use these).
    layers: list[int] | None = None
    #: Total optimizer steps of the trial (AdaLoRA schedules its rank budget over them).
    max_steps: int | None = None


@dataclass(frozen=True)
class ParamRule:
    """Bounds a parameter's values must respect, checked before the search starts."""

    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class AdapterFamily:
    """One PEFT method as the search sees it."""

    name: str
    description: str
    #: Default spec of each searchable parameter; a space may override any of them.
    defaults: Mapping[str, ParamSpec]
    #: Builds the peft config from the family's sampled parameters and the target.
    build: Callable[[Mapping[str, Any], AdapterTarget], PeftConfig]
    rules: Mapping[str, ParamRule] = field(default_factory=dict)
    #: Whether the family puts modules on the placement's layers and roles.
    uses_placement: bool = True
    #: Whether the placement's roles are sampled (False: the family picks roles itself from
    #: its own parameters, e.g. Houlsby vs Pfeiffer positions, and uses only the layers).
    uses_roles: bool = True
    #: Whether the family prepends virtual tokens to the input (prompt learning). It then fits
    #: only task kinds whose inputs take them (``TaskKind.takes_virtual_tokens``); layer methods
    #: are task-agnostic and fit every registered kind.
    prompt_learning: bool = False
    #: Architectures in words, for ``autopeft adapters`` (the real check is ``applies_to``).
    architectures: str = "any with Linear/Conv1D layers"
    #: Why the family cannot work on a model (None: it can); checked before the search.
    applies_to: Callable[[ModelStructure], str | None] | None = None
    #: Called after each optimizer step with (peft model, step number), before zero_grad.
    on_step: Callable[[nn.Module, int], None] | None = None
    #: Rebuilds the peft config of a saved adapter when plain ``PeftConfig.from_pretrained``
    #: cannot (None: it can); receives the parsed ``adapter_config.json``.
    load_config: Callable[[Mapping[str, Any]], PeftConfig | None] | None = None
    #: Fixes a peft model loaded from a saved adapter (receives the parsed adapter config).
    after_load: Callable[[Mapping[str, Any], nn.Module], None] | None = None

    @property
    def task_kinds(self) -> tuple[str, ...]:
        """The registered task kinds this family applies to (asked of the task registry, so a
        new kind needs no change here)."""
        return tuple(kind.name for kind in all_tasks() if kind.takes_virtual_tokens or not self.prompt_learning)

    def exclusion_reason(self, structure: ModelStructure) -> str | None:
        """Why this family cannot be used on the model, or None."""
        return self.applies_to(structure) if self.applies_to is not None else None

    def resolve_params(self, given: Mapping[str, ParamSpec]) -> dict[str, ParamSpec]:
        """The family's defaults overridden by ``given``; unknown names raise SpaceError."""
        unknown = [k for k in given if k not in self.defaults]
        if unknown:
            raise SpaceError(
                f"space.adapters.{self.name}.{unknown[0]}: {self.name} takes no parameter "
                f"{unknown[0]!r} (it takes: {', '.join(self.defaults) or 'none'})"
            )
        return {**self.defaults, **given}

    def validate(self, given: Mapping[str, ParamSpec]) -> dict[str, ParamSpec]:
        """Resolve and check every parameter against its rule."""

        params = self.resolve_params(given)
        for pname, spec in params.items():
            rule = self.rules.get(pname)
            if rule is None:
                continue
            fname = f"space.adapters.{self.name}.{pname}"
            if rule.choices is not None:
                values = spec.choices if isinstance(spec, ChoiceSpec) else (
                    [spec.low, spec.high] if isinstance(spec, RangeSpec) else [spec])
                bad = [v for v in values if v not in rule.choices]
                if bad:
                    raise SpaceError(f"{fname}: expected one of {list(rule.choices)}, found {bad[0]!r}")
            else:
                check_bounds(spec, fname, minimum=rule.minimum, maximum=rule.maximum,
                             integer=rule.integer)
        return params


def linear_only(method: str) -> Callable[[ModelStructure], str | None]:
    """``applies_to`` for peft methods whose layers support nn.Linear but not GPT-2's Conv1D."""

    def check(structure: ModelStructure) -> str | None:
        if structure.conv1d_layers():
            return (f"peft's {method} supports nn.Linear layers only, and {structure.architecture} "
                    "uses Conv1D layers")
        return None

    return check


def fitting_block(requested: int, dims: list[int]) -> int:
    """The largest block size <= requested that divides every dimension (1 at worst), so a
    sampled block size never fails on a module whose width it does not divide."""
    for size in range(max(1, requested), 0, -1):
        if all(d % size == 0 for d in dims):
            return size
    return 1


def module_widths(target: AdapterTarget, *, outputs: bool = False) -> list[int]:
    """The chosen modules' input widths (and output widths with ``outputs``): what a block,
    vector or shard size must divide."""

    leaves = leaves_named(target.structure, target.module_names)
    return [d for leaf in leaves for d in ((leaf.in_features, leaf.out_features) if outputs else (leaf.in_features,))]


_REGISTRY: dict[str, AdapterFamily] = {}


def register(family: AdapterFamily) -> AdapterFamily:
    """Add a family to the registry (names are unique)."""
    if family.name in _REGISTRY:
        raise ValueError(f"adapter family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def get_family(name: str) -> AdapterFamily:
    """The family registered under ``name``; SpaceError listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name).lower(), list(_REGISTRY), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (registered: {', '.join(sorted(_REGISTRY))})"
        raise SpaceError(f"space.adapters: unknown adapter family {name!r}{hint}") from None


def families() -> dict[str, AdapterFamily]:
    """All registered families by name."""
    return dict(_REGISTRY)
