"""The adapter-family protocol and its registry.

A family is registered in one line (``register(AdapterFamily(...))``), the way peft registers
its methods. It declares the parameters it adds to the search space, with default ranges,
and builds a peft config from one sampled point and the resolved placement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autopeft.errors import SpaceError

if TYPE_CHECKING:
    from peft import PeftConfig

    from autopeft.placement import ModelStructure
    from autopeft.space import ParamSpec


@dataclass(frozen=True)
class AdapterTarget:
    """What a builder needs to know about the model and the placement of one trial."""

    module_names: list[str]
    structure: ModelStructure
    peft_task_type: str


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
    #: Task kinds the family applies to.
    task_kinds: tuple[str, ...] = ("sequence_classification", "regression")

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
        from autopeft.space import ChoiceSpec, RangeSpec, check_bounds

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
        raise SpaceError(
            f"space.adapters: unknown adapter family {name!r} (registered: {', '.join(sorted(_REGISTRY))})"
        ) from None


def families() -> dict[str, AdapterFamily]:
    """All registered families by name."""
    return dict(_REGISTRY)
