"""Warm start: seed a study with configs known to be good, run as its first trials.

Sources: the best trials of earlier Optuna studies (by name, in this search's Optuna storage),
YAML/JSON files of configs, and the built-in portfolio (on by default): a few configs chosen from
data by a written procedure over several public tasks (``bench/portfolio.py``, ``make
bench-portfolio``), shipped as package data with its provenance (``portfolio.yaml``), validated
when loaded. Each config is fitted to the current space: keys the space does not
sample are dropped, and a config whose sampled values fall outside the space is skipped, so only
configs valid here are enqueued (``study.enqueue_trial``, which Optuna hands out before asking
the sampler). The source is stored on the Optuna trial and tagged on the trial's MLflow run.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autopeft._validation import load_yaml
from autopeft.adapters import get_family
from autopeft.config import WarmStartConfig
from autopeft.errors import ConfigError, SpaceError
from autopeft.objectives import ATTR_RAY_TRIAL
from autopeft.schema import RunTag, TrialAttr
from autopeft.space import ADAPTER_KEY, ChoiceSpec, RangeSpec, config_names, encode_choice

if TYPE_CHECKING:
    import optuna

    from autopeft.space import SearchSpace

#: Optuna user attribute and MLflow tag naming where an enqueued config came from.
ATTR_SOURCE = TrialAttr.WARM_START
TAG_SOURCE = RunTag.WARM_START

#: Where the built-in portfolio's entries come from, as their sources name it (``portfolio:<name>``).
PORTFOLIO_PREFIX = "portfolio:"
#: The built-in portfolio: package data, written by ``bench/portfolio.py`` (``make bench-portfolio``).
PORTFOLIO_FILE = Path(__file__).with_name("portfolio.yaml")


class PortfolioEntry(BaseModel):
    """One config of the portfolio, as the file states it. Entries that share a name are variants
    of one config for spaces that spell placement differently: the first that fits is taken."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="The entry's name (its source: portfolio:<name>).")
    candidate: str = Field("", description="The pool candidate measured (its column in provenance.scores).")
    config: dict[str, Any] = Field(description="A trial config: adapter, its family's parameters, placement, training keys.")
    origin: str = Field("", description="Where the config came from (the hand-set prior, or a space's seeded draw).")
    why: str = Field("", description="Why the procedure chose it.")
    gaps: dict[str, float | None] = Field(default_factory=dict, description="Its gap to each task's best (0: the best).")

    @model_validator(mode="after")
    def _valid_config(self) -> PortfolioEntry:
        check_config(self.config)
        return self


class Portfolio(BaseModel):
    """The portfolio file: entries in the order they are enqueued, and how they were chosen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1] = 1
    entries: list[PortfolioEntry] = Field(min_length=1)
    provenance: dict[str, Any] = Field(default_factory=dict,
                                       description="Tasks, budget, pool, selection rule, commit, date, score table.")

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        return [(f"{PORTFOLIO_PREFIX}{e.name}", dict(e.config)) for e in self.entries]


#: Bounds of the training keys a config may set (as ``SearchSpace.validate_shared`` checks a space's).
_TRAINING_BOUNDS: dict[str, tuple[float, float]] = {
    "learning_rate": (1e-7, 1.0), "batch_size": (1, 4096), "warmup_ratio": (0.0, 1.0), "weight_decay": (0.0, 1.0)}


def check_config(config: Mapping[str, Any]) -> None:
    """ValueError (one line) unless ``config`` is a trial config a study could run: a registered
    family, only that family's parameters at values its rules allow, placement (for families that
    place modules) and training keys within sensible bounds."""
    family_name = config.get(ADAPTER_KEY)
    if not isinstance(family_name, str):
        raise ValueError(f"config: expected an {ADAPTER_KEY!r} naming an adapter family, found {family_name!r}")
    try:
        family = get_family(family_name)
    except SpaceError as exc:
        raise ValueError(str(exc).replace("space.adapters: ", "config.adapter: ")) from None
    for key, value in config.items():
        if key == ADAPTER_KEY:
            continue
        prefix, _, pname = key.partition(".")
        if key in _TRAINING_BOUNDS:
            low, high = _TRAINING_BOUNDS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"config.{key}: expected a number in [{low:g}, {high:g}], found {value!r}")
        elif prefix == "placement" and pname in ("layers", "roles"):
            if not family.uses_placement:
                raise ValueError(f"config.{key}: {family_name} places no modules, so it takes no placement")
            if not (isinstance(value, str) and value) and not (
                    isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
                raise ValueError(f"config.{key}: expected a selector (e.g. all, last-2, all-linear, query,value), "
                                 f"found {value!r}")
        elif prefix == family_name:
            try:
                family.validate({pname: value})
            except SpaceError as exc:
                raise ValueError(str(exc).replace("space.adapters.", "config.")) from None
        else:
            raise ValueError(f"config.{key}: not a parameter of a {family_name} trial (expected {family_name}.<param>, "
                             f"placement.layers/roles or one of {', '.join(_TRAINING_BOUNDS)})")


def load_portfolio(path: str | Path | None = None) -> Portfolio:
    """The portfolio in ``path`` (default: the built-in one), validated; ConfigError naming the
    file and the entry otherwise."""
    path = Path(path) if path is not None else PORTFOLIO_FILE
    if path == PORTFOLIO_FILE:
        return _builtin()
    return _read_portfolio(path)


@functools.lru_cache(maxsize=1)
def _builtin() -> Portfolio:
    return _read_portfolio(PORTFOLIO_FILE)


def _read_portfolio(path: Path) -> Portfolio:
    try:
        raw = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"portfolio: cannot read {str(path)!r}: {' '.join(str(exc).split())[:200]}") from None
    try:
        return Portfolio.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"portfolio {str(path)!r}: {_entry_error(exc, raw)}") from None


def _entry_error(exc: ValidationError, raw: Any) -> str:
    """The first error in one line, naming the entry (by name where it has one)."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = ".".join(str(x) for x in loc)
    if len(loc) >= 2 and loc[0] == "entries" and isinstance(loc[1], int):
        entries = raw.get("entries") if isinstance(raw, Mapping) else None
        item = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        name = item.get("name") if isinstance(item, Mapping) else None
        where = f"entry {loc[1]}" + (f" ({name!r})" if name else "") + "".join(f".{x}" for x in loc[2:])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def builtin_points() -> list[tuple[str, dict[str, Any]]]:
    """The built-in portfolio as (source, config) pairs, in the order they are enqueued."""
    return load_portfolio().points()


@dataclass(frozen=True)
class WarmPoint:
    params: dict[str, Any]
    source: str


def sampled_specs(space: SearchSpace, family: str) -> dict[str, Any]:
    """Config key → spec of what the compiled space samples (or fixes) for ``family`` (a training
    parameter under its plain key, as a trial's config holds it: ``SearchSpace.sampled_name``)."""

    specs: dict[str, Any] = {}
    if len(space.adapters) > 1:
        specs[ADAPTER_KEY] = ChoiceSpec(choices=list(space.adapters))
    fam = get_family(family)
    for pname, spec in fam.resolve_params(space.own_params(family)).items():
        specs[f"{family}.{pname}"] = spec
    if fam.uses_placement:
        specs["placement.layers"] = space.placement.layers
        specs["placement.roles"] = space.placement.roles
    specs.update(space.training_params(family))
    return specs


def _fits(value: Any, spec: Any) -> bool:

    if isinstance(spec, ChoiceSpec):
        try:
            return encode_choice(value) in spec.encoded()
        except ValueError:
            return False
    if isinstance(spec, RangeSpec):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if spec.is_int and float(value) != int(value):
            return False
        return float(spec.low) <= float(value) <= float(spec.high)
    return True  # a fixed value: the space decides, the key is dropped


def fit_to_space(params: Mapping[str, Any], space: SearchSpace) -> dict[str, Any] | None:
    """The config fitted to this space (under a trial config's keys), or None when it does not fit it."""

    family = space.family_of(params)
    if family not in space.adapters:
        return None
    specs = sampled_specs(space, str(family))
    out: dict[str, Any] = {}
    for key, value in params.items():
        spec = specs.get(key)
        if not isinstance(spec, (ChoiceSpec, RangeSpec)):
            continue  # not sampled here (other family, fixed value, unknown key): the space decides
        if not _fits(value, spec):
            return None
        if isinstance(spec, ChoiceSpec):
            value = encode_choice(value)
        elif spec.is_int:
            value = int(value)
        out[key] = value
    if len(space.adapters) > 1:
        out[ADAPTER_KEY] = family
    return out


def _points_from_file(path: Path, field: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{field}: cannot read {str(path)!r}: {' '.join(str(exc).split())[:200]}") from None
    if isinstance(data, Mapping) and "configs" in data:
        data = data["configs"]
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise ConfigError(f"{field}: expected a list of configs (mappings of parameter to value) in {path}")
    out = []
    for i, item in enumerate(data):
        params = item.get("params", item)
        if not isinstance(params, Mapping):
            raise ConfigError(f"{field}: config {i} in {path}: expected a mapping of parameter to value")
        out.append((f"file:{path.name}#{i}", dict(params)))
    return out


def _points_from_study(name: str, storage: str, top_k: int, field: str) -> list[tuple[str, dict[str, Any]]]:
    # deferred: optuna (and its SQLAlchemy) load on first use, not at package import
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise ConfigError(f"{field}: {name!r} is neither a file nor a study in {storage}") from None
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not complete:
        raise ConfigError(f"{field}: study {name!r} has no COMPLETE trial to start from")
    directions = study.directions
    # rank by the first objective (the task metric); for several objectives, Pareto points first
    sign = -1.0 if directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    front = {t.number for t in study.best_trials} if len(directions) > 1 else set()
    ranked = sorted(complete, key=lambda t: (t.number not in front, sign * t.values[0]))
    return [(f"study:{name}#{t.number}", config_names(t.params)) for t in ranked[:top_k]]


def prior_slots(config: WarmStartConfig, trials: int) -> int:
    """How many built-in portfolio configs a study of ``trials`` trials enqueues.

    Capped at a share of the trials: measured on SST-2 (bench/NOTES.md), a prior that fills most
    of a small study leaves the sampler almost nothing, and its fixed learning rates are not
    tuned to the trial length, so it lost to plain random search at that budget. Capped in
    trials too: an ASHA search of 16 trials gave the prior 4, and its third and fourth configs
    (LR 5e-4 on all layers) were stopped at the majority class in every seed; with 2, the search
    came level with random search (bench/NOTES.md, *The prior capped at two trials*)."""
    if not config.prior:
        return 0
    return min(config.prior_max_trials, max(1, int(config.prior_share * trials)))


def collect(config: WarmStartConfig, space: SearchSpace, storage: str, *, trials: int,
            base_dir: Path | None = None, portfolio: Portfolio | None = None) -> list[WarmPoint]:
    """All warm-start points valid in ``space``, sources first then the portfolio (``portfolio``,
    default the built-in one; at most ``prior_slots`` of it, in its order), without repeats. Bad
    sources raise ConfigError naming ``warm_start.sources`` before any compute. Sources are not
    capped: the user chose them."""
    raw: list[tuple[str, dict[str, Any]]] = []
    for i, source in enumerate(config.sources):
        field = f"warm_start.sources.{i}"
        candidates = [Path(source)] + ([base_dir / source] if base_dir is not None else [])
        path = next((p for p in candidates if p.is_file()), None)
        if path is not None:
            found = _points_from_file(path, field)
        elif source.endswith((".yaml", ".yml", ".json")):
            raise ConfigError(f"{field}: no such file {source!r}")
        else:
            found = _points_from_study(source, storage, config.top_k, field)
        fitted = [(s, p) for s, p in found if fit_to_space(p, space) is not None]
        if not fitted:
            raise ConfigError(f"{field}: none of the {len(found)} configs from {source!r} fits the current space")
        raw += fitted
    points: list[WarmPoint] = []
    seen: set[str] = set()
    prior_left = prior_slots(config, trials)
    taken: set[str] = set()
    prior = (portfolio or load_portfolio()).points() if prior_left else []
    for source, params in raw + prior:
        from_prior = source.startswith(PORTFOLIO_PREFIX)
        if from_prior and prior_left == 0:
            break
        point = fit_to_space(params, space)
        if point is None or (from_prior and source in taken):  # a variant of an entry already taken
            continue
        taken.add(source)
        key = json.dumps(point, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            points.append(WarmPoint(params=point, source=source))
            prior_left -= from_prior
    return points


def enqueue(study: optuna.Study, points: Sequence[WarmPoint], space: SearchSpace) -> None:
    """Enqueue the points in order; Optuna hands them out before asking the sampler. A point
    holds a trial config; it is enqueued under the names ``space`` samples it with."""
    for point in points:
        study.enqueue_trial(space.sampled_names(point.params), user_attrs={ATTR_SOURCE: point.source})


def tag_runs(client: Any, storage: str, study_name: str, runs: Mapping[str, str | None]) -> int:
    """Tag the MLflow run of every warm-started trial with its source; returns how many.

    The searcher stores each Optuna trial's Ray trial id, which the trial runs are keyed by.
    Done from the study once the search ends, so it also holds for a resumed study.
    """
    # deferred: optuna (and its SQLAlchemy) load on first use, not at package import
    import optuna


    study = optuna.load_study(study_name=study_name, storage=storage)
    tagged = 0
    for trial in study.get_trials(deepcopy=False):
        source = trial.user_attrs.get(ATTR_SOURCE)
        run_id = runs.get(trial.user_attrs.get(ATTR_RAY_TRIAL, ""))
        if source and run_id:
            client.set_tag(run_id, TAG_SOURCE, source)
            tagged += 1
    return tagged
