"""The search space as data (the define-by-run compiler is ``autopeft.study.define_by_run``).

A space file names the adapter families to try, each with its own parameters, plus the
placement, learning rate, batch size and warm-up ratio shared by all families. The compiled
function samples the adapter family first, then only that family's parameters, so Optuna
never sees a LoRA rank in an IA3 trial.

A family may also set its own ``learning_rate``, ``batch_size``, ``warmup_ratio`` or
``weight_decay``; it replaces the shared one in that family's trials (IA3, which scales
activations from 1, needs a higher learning rate than LoRA). Where the space has several
families, Optuna samples such a parameter under the family's own name (``ia3.learning_rate``,
:meth:`SearchSpace.sampled_name`): it is another hyperparameter with another scale, and under one
name TPE would model IA3's rates and LoRA's as one. The trial's config still holds it under its
plain key (:func:`config_names`), which is what training reads.

A parameter is either a fixed value, a range ``{low, high, log, step}`` (integer when both ends
are integers) or ``{choices: [...]}``. Lists inside ``choices`` (e.g. a set of module roles)
are encoded as comma-joined strings because Optuna's categorical values must be scalars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from autopeft._validation import load_yaml, one_line
from autopeft.errors import SpaceError

if TYPE_CHECKING:
    import optuna


Scalar = Union[bool, int, float, str, None]

#: Name of the sampled parameter that holds the adapter family.
ADAPTER_KEY = "adapter"
#: The layer selector that searches one on/off bit per layer.
MASK = "mask"
#: Training parameters shared by every family, which a family may set for itself.
TRAINING_KEYS = ("learning_rate", "batch_size", "warmup_ratio", "weight_decay")


class RangeSpec(BaseModel):
    """A numeric range; integer when both ends are integers and ``step`` is an integer."""

    model_config = ConfigDict(extra="forbid")
    low: Union[int, float] = Field(description="Lower end, inclusive.")
    high: Union[int, float] = Field(description="Upper end, inclusive.")
    log: bool = Field(False, description="Sample on a log scale.")
    step: Union[int, float, None] = Field(None, description="Grid step (not with log).")

    @model_validator(mode="after")
    def _check(self) -> RangeSpec:
        # YAML's .nan passes every comparison below, and .inf every upper bound
        for end, value in (("low", self.low), ("high", self.high), ("step", self.step)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{end}: expected a finite number, found {value}")
        if self.high < self.low:
            raise ValueError(f"empty range: low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, found {self.low}")
        if self.log and self.step is not None:
            raise ValueError("a range cannot have both log and step")
        return self

    @property
    def is_int(self) -> bool:
        return (
            isinstance(self.low, int)
            and isinstance(self.high, int)
            and (self.step is None or isinstance(self.step, int))
        )

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.is_int:
            return trial.suggest_int(
                name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)

    def values_bounds(self) -> tuple[float, float]:
        return float(self.low), float(self.high)


class ChoiceSpec(BaseModel):
    """A categorical parameter."""

    model_config = ConfigDict(extra="forbid")
    choices: list[Any] = Field(description="The values to choose from.")

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("choices is empty")
        odd = next((v for v in value if isinstance(v, float) and not math.isfinite(v)), None)
        if odd is not None:  # YAML's .nan or .inf: a rank or rate no trial can train with
            raise ValueError(f"expected finite numbers among the choices, found {odd}")
        return value

    def encoded(self) -> list[Scalar]:
        return [encode_choice(v) for v in self.choices]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.encoded())


def _parse_spec(value: Any) -> Any:
    """A mapping is a range or a choice, decided by its keys, so errors speak of the right one."""
    if isinstance(value, float) and not math.isfinite(value):  # else each branch of the union says its own
        raise ValueError(f"expected a finite number, found {value}")
    if isinstance(value, (RangeSpec, ChoiceSpec)) or not isinstance(value, Mapping):
        return value
    model: type[BaseModel] = ChoiceSpec if "choices" in value else RangeSpec
    if model is RangeSpec and not ({"low", "high"} & set(value)):
        raise ValueError(f"expected a value, {{low, high}} or {{choices: [...]}}, found keys {sorted(value)}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where + ': ' if where else ''}{msg}") from None


ParamSpec = Annotated[Union[RangeSpec, ChoiceSpec, bool, int, float, str, list, None], BeforeValidator(_parse_spec)]


def encode_choice(value: Any) -> Scalar:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise ValueError(f"choice {value!r} is not a scalar or a list of scalars")


def suggest(spec: ParamSpec, trial: optuna.Trial, name: str) -> Any:
    """Sample ``spec`` under ``name``; a fixed value is returned as it is (not sampled)."""
    if isinstance(spec, (RangeSpec, ChoiceSpec)):
        return spec.suggest(trial, name)
    return encode_choice(spec) if isinstance(spec, list) else spec


def check_bounds(spec: ParamSpec, field: str, *, minimum: float | None = None,
                 maximum: float | None = None, integer: bool = False) -> None:
    """Raise SpaceError when a spec can produce a value outside [minimum, maximum]."""
    if isinstance(spec, RangeSpec):
        values: list[Any] = [spec.low, spec.high]
        if integer and not spec.is_int:
            raise SpaceError(f"{field}: expected an integer range, found {spec.low}..{spec.high}")
    elif isinstance(spec, ChoiceSpec):
        values = list(spec.choices)
    else:
        values = [spec]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"{field}: expected a number, found {value!r}")
        if integer and not isinstance(value, int):
            raise SpaceError(f"{field}: expected an integer, found {value!r}")
        if minimum is not None and value < minimum:
            raise SpaceError(f"{field}: expected a value >= {minimum}, found {value!r}")
        if maximum is not None and value > maximum:
            raise SpaceError(f"{field}: expected a value <= {maximum}, found {value!r}")


class PlacementSpec(BaseModel):
    """Where adapters go: which transformer layers and which module roles."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # .nan passes every bound
    layers: ParamSpec = Field(
        "all",
        description="Layer selector(s): all, first-K, last-K, every-K, A..B (a block), a list "
        "of indices, or mask (one on/off bit per layer, each searched: AutoPEFT style).",
    )
    roles: ParamSpec = Field(
        "all-linear",
        description="Module roles: query, key, value, attention_output, mlp_up, mlp_down, "
        "mlp_gate, qkv, mlp, attention, all-linear; a list or a choice of lists.",
    )


class SearchSpace(BaseModel):
    """What the search tries, shared by every adapter family plus each family's own parameters."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # .nan passes every bound
    adapters: dict[str, dict[str, ParamSpec]] = Field(
        description="Adapter families to try, each mapped to its parameters (empty: defaults)."
    )
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    learning_rate: ParamSpec = Field(
        default_factory=lambda: RangeSpec(low=1e-4, high=1e-2, log=True),
        description="Peak learning rate of AdamW.",
    )
    batch_size: ParamSpec = Field(16, description="Training batch size.")
    warmup_ratio: ParamSpec = Field(0.06, description="Share of steps spent warming up.")
    weight_decay: ParamSpec = Field(0.0, description="AdamW weight decay.")
    #: The model's layer count, bound by :func:`fit_to_model` (a ``mask`` needs one bit per layer).
    _num_layers: int | None = PrivateAttr(None)

    def bind_model(self, num_layers: int) -> None:
        self._num_layers = num_layers

    @property
    def num_layers(self) -> int | None:
        """The layer count of the model the space was bound to (``bind_model``), or None."""
        return self._num_layers

    @field_validator("adapters", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        if isinstance(value, list):  # a plain list of family names: all defaults
            return {name: {} for name in value}
        if isinstance(value, dict):
            return {k: (v if v is not None else {}) for k, v in value.items()}
        return value

    @field_validator("adapters")
    @classmethod
    def _at_least_one(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("expected at least one adapter family, found none")
        return value

    def own_params(self, family: str) -> dict[str, ParamSpec]:
        """The family's own parameters as the space gives them (its training parameters left out)."""
        return {k: v for k, v in self.adapters[family].items() if k not in TRAINING_KEYS}

    def training_overrides(self, family: str) -> dict[str, ParamSpec]:
        """The training parameters ``family`` sets for itself."""
        return {k: v for k, v in self.adapters[family].items() if k in TRAINING_KEYS}

    def training_params(self, family: str) -> dict[str, ParamSpec]:
        """The training parameters of ``family``'s trials: the shared ones, replaced by its own."""
        return {**{key: getattr(self, key) for key in TRAINING_KEYS}, **self.training_overrides(family)}

    def training_keys_set_per_family(self) -> list[str]:
        """Training parameters some family sets differently from the others."""
        return [key for key in TRAINING_KEYS
                if len({repr(self.training_params(name)[key]) for name in self.adapters}) > 1]

    def sampled_name(self, family: str, key: str) -> str:
        """The Optuna name of training parameter ``key`` in ``family``'s trials: the family's own
        (``<family>.<key>``) where it sets its own spec and other families share the space, else ``key``."""
        return f"{family}.{key}" if key in self.adapters[family] and len(self.adapters) > 1 else key

    def family_of(self, config: Mapping[str, Any]) -> Any:
        """The family a config names, or the space's one family where it names none (a space of
        one family samples no ``adapter``); None where it names none in a space of several. The
        name is returned as given, so a caller can tell a family the space lacks."""
        family = config.get(ADAPTER_KEY)
        return next(iter(self.adapters)) if family is None and len(self.adapters) == 1 else family

    def sampled_names(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A trial config (training parameters under their plain keys) under the names Optuna
        samples it with: what ``enqueue_trial`` needs to hand a config to the define-by-run function."""
        family = self.family_of(config)
        if family not in self.adapters:
            return dict(config)
        return {(self.sampled_name(str(family), k) if k in TRAINING_KEYS else k): v for k, v in config.items()}

    def validate_shared(self) -> None:
        """Check the training parameters, shared and per family."""
        bounds: dict[str, dict[str, Any]] = {
            "learning_rate": {"minimum": 1e-12, "maximum": 10.0}, "batch_size": {"minimum": 1, "integer": True},
            "warmup_ratio": {"minimum": 0.0, "maximum": 1.0}, "weight_decay": {"minimum": 0.0}}
        for key in TRAINING_KEYS:
            own = {name: given[key] for name, given in self.adapters.items() if key in given}
            specs = {f"space.{key}": getattr(self, key), **{f"space.adapters.{n}.{key}": s for n, s in own.items()}}
            for where, spec in specs.items():
                check_bounds(spec, where, **bounds[key])


def load_space(source: str | Path | Mapping[str, Any], *, base_dir: Path | None = None) -> SearchSpace:
    """Load and validate a space from a YAML file, a ready space name or an inline mapping."""
    if isinstance(source, Mapping):
        raw: Any = dict(source)
        origin = "space"
    else:
        path = resolve_space_path(str(source), base_dir)
        try:
            raw = load_yaml(path.read_text())
        except yaml.YAMLError as exc:
            raise SpaceError(f"space: {path} is not valid YAML: {_first_line(exc)}") from None
        origin = "space"
        if not isinstance(raw, dict):
            raise SpaceError(f"space: expected a mapping in {path}, found {type(raw).__name__}")
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as exc:
        raise SpaceError(one_line(exc, SearchSpace, prefix=f"{origin}.")) from None
    space.validate_shared()
    return space


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def ready_spaces_dir() -> Path:
    """Where the ready spaces live: the packaged copy, else the source tree's."""
    packaged = Path(__file__).parents[1] / "search_spaces"
    return packaged if packaged.is_dir() else Path(__file__).parents[2] / "search_spaces"


def resolve_space_path(name: str, base_dir: Path | None = None) -> Path:
    """A file path (relative to the config file's folder), or the name of a ready space."""
    candidates = [Path(name)]
    if base_dir is not None:
        candidates.insert(0, base_dir / name)
    stem = name[:-5] if name.endswith(".yaml") else name
    candidates.append(ready_spaces_dir() / f"{stem}.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    ready = sorted(p.stem for p in ready_spaces_dir().glob("*.yaml"))
    raise SpaceError(
        f"space: no file {name!r} and no ready space of that name (ready spaces: {', '.join(ready)})"
    )


def config_names(params: Mapping[str, Any]) -> dict[str, Any]:
    """Sampled parameters (Optuna's names) as a trial config: a training parameter that the
    trial's family samples under its own name (:meth:`SearchSpace.sampled_name`) gets its plain
    key back. Needs no space: the family is the sampled ``adapter``, and a space of one family
    samples under plain keys."""
    prefix = f"{params.get(ADAPTER_KEY)}."
    return {(k[len(prefix):] if k.startswith(prefix) and k[len(prefix):] in TRAINING_KEYS else k): v
            for k, v in params.items()}


def family_params(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a sampled trial config into (family name, that family's own parameters)."""
    adapter = str(config[ADAPTER_KEY])
    prefix = f"{adapter}."
    return adapter, {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}


