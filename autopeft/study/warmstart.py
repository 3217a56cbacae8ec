"""Warm start: seed a study with configs known to be good, run as its first trials.

Sources: the best trials of earlier Optuna studies (by name, in this search's Optuna storage),
YAML/JSON files of configs, and a small built-in prior of well-known good configs per adapter
family (on by default). Each config is fitted to the current space: keys the space does not
sample are dropped, and a config whose sampled values fall outside the space is skipped, so only
configs valid here are enqueued (``study.enqueue_trial``, which Optuna hands out before asking
the sampler). The source is stored on the Optuna trial and tagged on the trial's MLflow run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from autopeft.adapters import get_family
from autopeft.config import WarmStartConfig
from autopeft.errors import ConfigError
from autopeft.objectives import ATTR_RAY_TRIAL
from autopeft.schema import RunTag, TrialAttr
from autopeft.space import ADAPTER_KEY, ChoiceSpec, RangeSpec, encode_choice

if TYPE_CHECKING:
    import optuna

    from autopeft.space import SearchSpace

#: Optuna user attribute and MLflow tag naming where an enqueued config came from.
ATTR_SOURCE = TrialAttr.WARM_START
TAG_SOURCE = RunTag.WARM_START

#: Well-known starting points (source: the papers' and peft's recommended settings). Full
#: fine-tuning of BERT-size encoders uses LR ~2e-5..5e-5; LoRA works best at ~10x that, IA3
#: (rescaling vectors, few parameters) at ~100x. The first two differ in placement and learning
#: rate, so that the sampler's model starts from two distinct regions: all layers at a cautious
#: LR, and the top layers' attention at a high one (of the SST-2 benchmark's 93 full 100-step
#: trials, the 10 best by validation all had LR >= 1e-3, and 6 of them tuned only the last 4
#: layers, which 14 of the 93 did; bench/NOTES.md). Entries that share a source are variants of
#: one config for spaces that spell placement differently: the first that fits the space is taken.
BUILTIN_PRIOR: list[tuple[str, dict[str, Any]]] = [
    # in the order they are enqueued: when the prior's share of the trials is small, only the
    # first ones run, so the two that cover different regions come first
    ("prior:lora-all-linear", {"adapter": "lora", "lora.r": 8, "lora.alpha": 16, "lora.dropout": 0.05,
                               "placement.layers": "all", "placement.roles": "all-linear", "learning_rate": 5e-4}),
    ("prior:lora-top-attention", {"adapter": "lora", "lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.1,
                                  "placement.layers": "last-4", "placement.roles": "query,key,value,attention_output",
                                  "learning_rate": 2e-3}),
    ("prior:lora-top-attention", {"adapter": "lora", "lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.1,
                                  "placement.layers": "last-2", "placement.roles": "attention",
                                  "learning_rate": 2e-3}),
    ("prior:dora-all-linear", {"adapter": "dora", "dora.r": 8, "dora.alpha": 16, "dora.dropout": 0.05,
                               "placement.layers": "all", "placement.roles": "all-linear", "learning_rate": 5e-4}),
    ("prior:lora-qv", {"adapter": "lora", "lora.r": 8, "lora.alpha": 16, "lora.dropout": 0.1,
                       "placement.layers": "all", "placement.roles": "query,value", "learning_rate": 5e-4}),
    # IA3 scales activations from 1 and needs a higher LR than LoRA: on SST-2 (MiniLM, 100 steps)
    # it was still at the majority class at 3e-3 (59%) and learned at 1e-2 (76%) and 3e-2 (78%).
    # The 3e-3 variant is for spaces whose learning rates stop below 1e-2.
    ("prior:ia3-all-linear", {"adapter": "ia3", "placement.layers": "all", "placement.roles": "all-linear",
                              "learning_rate": 1e-2}),
    ("prior:ia3-all-linear", {"adapter": "ia3", "placement.layers": "all", "placement.roles": "all-linear",
                              "learning_rate": 3e-3}),
]


@dataclass(frozen=True)
class WarmPoint:
    params: dict[str, Any]
    source: str


def _sampled_specs(space: SearchSpace, family: str) -> dict[str, Any]:
    """Optuna name → spec of what the compiled space samples (or fixes) for ``family``."""

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
    """The config as Optuna parameters of this space, or None when it does not fit it."""

    family = params.get(ADAPTER_KEY)
    if family is None and len(space.adapters) == 1:
        family = next(iter(space.adapters))
    if family not in space.adapters:
        return None
    specs = _sampled_specs(space, str(family))
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
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
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
    return [(f"study:{name}#{t.number}", dict(t.params)) for t in ranked[:top_k]]


def prior_slots(config: WarmStartConfig, trials: int) -> int:
    """How many built-in prior configs a study of ``trials`` trials enqueues.

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
            base_dir: Path | None = None) -> list[WarmPoint]:
    """All warm-start points valid in ``space``, sources first then the prior (at most
    ``prior_slots`` of it), without repeats. Bad sources raise ConfigError naming
    ``warm_start.sources`` before any compute. Sources are not capped: the user chose them."""
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
    for source, params in raw + BUILTIN_PRIOR:  # prior_slots is 0 with the prior off
        from_prior = source.startswith("prior:")
        if from_prior and prior_left == 0:
            break
        point = fit_to_space(params, space)
        if point is None or (from_prior and source in taken):  # a variant of a prior config already taken
            continue
        taken.add(source)
        key = json.dumps(point, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            points.append(WarmPoint(params=point, source=source))
            prior_left -= from_prior
    return points


def enqueue(study: optuna.Study, points: Sequence[WarmPoint]) -> None:
    """Enqueue the points in order; Optuna hands them out before asking the sampler."""
    for point in points:
        study.enqueue_trial(point.params, user_attrs={ATTR_SOURCE: point.source})


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
