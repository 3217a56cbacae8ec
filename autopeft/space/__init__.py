"""The search space as data: spec classes, ready spaces, loading."""

from __future__ import annotations

from autopeft.space.spec import (
    ADAPTER_KEY,
    MASK,
    TRAINING_KEYS,
    ChoiceSpec,
    ParamSpec,
    PlacementSpec,
    RangeSpec,
    Scalar,
    SearchSpace,
    check_bounds,
    config_names,
    encode_choice,
    family_params,
    load_space,
    ready_spaces_dir,
    resolve_space_path,
    suggest,
)

__all__ = [
    "ADAPTER_KEY",
    "check_bounds",
    "ChoiceSpec",
    "config_names",
    "encode_choice",
    "family_params",
    "load_space",
    "MASK",
    "ParamSpec",
    "PlacementSpec",
    "RangeSpec",
    "ready_spaces_dir",
    "resolve_space_path",
    "Scalar",
    "SearchSpace",
    "suggest",
    "TRAINING_KEYS",
]
