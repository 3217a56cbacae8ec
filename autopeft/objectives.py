"""Quality vs. cost: objectives, sampler constraints, the Pareto set and the selection policy.

A study optimises the task metric and, optionally, cost metrics every trial measures while it
trains (``training.py``): the trainable-parameter share, the adapter size on disk, the peak
training memory and the inference latency per example. Constraints go to the Optuna sampler as
``constraints_func`` (so it learns to avoid infeasible regions) and read the measurements the
searcher stores as user attributes of each Optuna trial before telling it the outcome.

At the end a selection policy picks the adapter to register: the best task metric, the best
task metric within limits, or the knee of the Pareto front. The whole Pareto set is recorded as
a table (CSV and Parquet) on the study's parent MLflow run.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Protocol

import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator

from autopeft._validation import StrictModel
from autopeft.schema import Artifact, Metric, Outcome, StudyRunTags, TrialAttr

if TYPE_CHECKING:
    import optuna
    import pandas as pd

#: Cost metrics every trial measures and reports, with what they mean (all: lower is cheaper).
COST_METRICS: dict[str, str] = {
    "trainable_share": "trainable parameters / all parameters (adapter plus task head)",
    "trainable_params": "number of trainable parameters",
    "adapter_size_mb": "size of the saved adapter (peft safetensors) in MiB",
    "peak_memory_mb": "peak training memory in MiB (process RSS on CPU, max_memory_allocated on GPU)",
    "latency_ms": "inference latency per example in ms (batch of one, median over validation examples)",
}

#: Optuna user-attribute prefix of the measurements the searcher stores on each trial
#: (``schema.TrialAttr``; kept importable here).
ATTR_PREFIX = TrialAttr.MEASUREMENT_PREFIX
#: Ray's trial id, stored on the Optuna trial so the report can join Optuna and MLflow.
ATTR_RAY_TRIAL = TrialAttr.RAY_TRIAL_ID

SamplerName = Literal["tpe", "nsga2", "gp", "random"]
PolicyName = Literal["best", "best-within", "knee"]


class _Strict(StrictModel):
    model_config = ConfigDict(validate_assignment=True)


def _share(value: Any) -> Any:
    """``0.005`` or ``"0.5%"`` → 0.005."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"expected a share like 0.005 or '0.5%', found {value!r}") from None
    return value


class ConstraintsConfig(_Strict):
    """Upper limits on the cost metrics; a trial over any limit is infeasible."""

    max_trainable_share: Optional[float] = Field(None, gt=0, description="e.g. 0.005 or '0.5%'.")
    max_trainable_params: Optional[int] = Field(None, gt=0, description="Trainable parameters.")
    max_adapter_size_mb: Optional[float] = Field(None, gt=0, description="Adapter size on disk, MiB.")
    max_peak_memory_mb: Optional[float] = Field(None, gt=0, description="Peak training memory, MiB.")
    max_latency_ms: Optional[float] = Field(None, gt=0, description="Inference latency per example, ms.")

    @field_validator("max_trainable_share", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        return _share(value)

    def limits(self) -> dict[str, float]:
        """Cost metric → upper limit, for the limits that are set."""
        return {name[len("max_"):]: float(value) for name, value in self.model_dump().items()
                if name.startswith("max_") and value is not None}


class SamplerConfig(_Strict):
    """Which Optuna sampler decides what to try (each handles one or several objectives)."""

    name: SamplerName = Field("tpe", description="tpe (also multi-objective), nsga2, gp, random.")
    population_size: Optional[int] = Field(
        None, ge=2, description="NSGA-II generation size; default: a quarter of the trials, 4..50."
    )
    n_startup_trials: Optional[int] = Field(
        None, ge=1, description="Trials before the TPE/GP model is used; default: the warm-start configs plus a "
        "quarter of the trials (2..10) drawn at random."
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class SelectionConfig(ConstraintsConfig):
    """Which trial's adapter is registered. ``best-within`` uses the max_* limits given here."""

    policy: PolicyName = Field("best", description="best, best-within (limits below) or knee.")

    @model_validator(mode="after")
    def _limits_fit_policy(self) -> SelectionConfig:
        if self.policy == "best-within" and not self.limits():
            raise ValueError("policy best-within needs at least one limit, e.g. max_trainable_share: 0.01")
        if self.policy != "best-within" and self.limits():
            raise ValueError(f"limits apply to policy best-within only (policy is {self.policy})")
        return self


def check_objectives(objectives: Sequence[tuple[str, str]], task_metrics: Sequence[str]) -> None:
    """First objective a task metric (ASHA stops on it), the others task or cost metrics, no repeats.
    Raises ValueError with the field named (pydantic turns it into the one-line error)."""
    names = [m for m, _ in objectives]
    if not names:
        raise ValueError("objectives: expected at least one objective")
    if names[0] not in task_metrics:
        raise ValueError(f"objectives.0.metric: the first objective must be a task metric ({', '.join(task_metrics)}), "
                         f"found {names[0]!r}")
    for i, name in enumerate(names):
        if name not in task_metrics and name not in COST_METRICS:
            raise ValueError(f"objectives.{i}.metric: unknown metric {name!r} (expected one of: "
                             f"{', '.join([*task_metrics, *COST_METRICS])})")
        if name in names[:i]:
            raise ValueError(f"objectives.{i}.metric: {name!r} appears twice")


def fill_modes(raw: Any) -> Any:
    """Cost objectives default to ``min`` (a missing mode would otherwise default to max)."""
    if not isinstance(raw, list):
        return raw
    out = []
    for item in raw:
        if isinstance(item, str):
            item = {"metric": item}
        if isinstance(item, Mapping) and "mode" not in item and item.get("metric") in COST_METRICS:
            item = {**item, "mode": "min"}
        out.append(item)
    return out


# --- sampler and constraints --------------------------------------------------------------------


class ConstraintsFunc:
    """Optuna ``constraints_func``: one value per limit, ``(value - limit) / limit`` (≤ 0 feasible).

    It reads the measurements the searcher stored as user attributes; a trial without one
    (it failed before measuring) counts as infeasible. A class, not a closure, because Ray
    pickles the searcher with its sampler.
    """

    def __init__(self, limits: Mapping[str, float]) -> None:
        self.limits = dict(limits)

    def __call__(self, trial: optuna.trial.FrozenTrial) -> list[float]:
        out = []
        for metric, limit in self.limits.items():
            value = trial.user_attrs.get(TrialAttr.measurement(metric))
            out.append(1.0 if value is None else (float(value) - limit) / limit)
        return out


def startup_trials(sampler: SamplerConfig, trials: int, warm_started: int = 0) -> int:
    """Trials before TPE/GP fit their model: the ``warm_started`` (enqueued) ones, then a quarter
    of the trials, 2..10, drawn at random. Optuna's default of 10 would leave a study of the
    default 8 trials purely random. Warm-started configs are not counted as start-up: they sit
    close together by design (strong defaults), and a model fitted on them alone only samples
    near them (seen in the benchmark: after the prior's two trials, TPE proposed a third
    all-linear config at a nearby learning rate). ``n_startup_trials``, when set, counts every
    trial, as in Optuna."""
    return sampler.n_startup_trials or warm_started + min(10, max(2, trials // 4))


def make_sampler(sampler: SamplerConfig, limits: Mapping[str, float], *, seed: int, trials: int,
                 concurrent: int, warm_started: int = 0) -> optuna.samplers.BaseSampler:
    import optuna

    from autopeft._compat import PicklableNSGAIISampler

    constraints = ConstraintsFunc(limits) if limits else None
    if sampler.name == "tpe":
        # with concurrent trials, pretend running ones scored badly so TPE spreads out
        return optuna.samplers.TPESampler(seed=seed, constant_liar=concurrent > 1, constraints_func=constraints,
                                          n_startup_trials=startup_trials(sampler, trials, warm_started))
    if sampler.name == "nsga2":
        population = sampler.population_size or min(50, max(4, trials // 4))
        return PicklableNSGAIISampler(seed=seed, population_size=population, constraints_func=constraints)
    if sampler.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, constraints_func=constraints,
                                         n_startup_trials=startup_trials(sampler, trials, warm_started))
    return optuna.samplers.RandomSampler(seed=seed)


def measurement_attrs(ray_trial_id: str, result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The user attributes that join an Optuna trial to its Ray trial and hold its cost
    measurements and family (what the sampler's constraints_func and the report read)."""
    attrs: dict[str, Any] = {TrialAttr.RAY_TRIAL_ID: ray_trial_id}
    for name in COST_METRICS:
        value = (result or {}).get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            attrs[TrialAttr.measurement(name)] = float(value)
    if result and result.get("family"):
        attrs[TrialAttr.FAMILY] = str(result["family"])
    return attrs


def record_measurements(ot_trial: Any, ray_trial_id: str, result: Mapping[str, Any] | None) -> None:
    """Store the trial's :func:`measurement_attrs` on its Optuna trial before it is told."""
    for key, value in measurement_attrs(ray_trial_id, result).items():
        ot_trial.set_user_attr(key, value)


# --- Pareto set and selection -------------------------------------------------------------------


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """True for the rows no other row dominates (at least as good in all, better in one)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.zeros(0, dtype=bool)
    signs = np.array([1.0 if m == "min" else -1.0 for m in modes])
    v = values * signs  # all "lower is better" now
    mask = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        others = np.delete(v, i, axis=0)
        dominated = np.any(np.all(others <= v[i], axis=1) & np.any(others < v[i], axis=1))
        mask[i] = not dominated
    return mask


def knee_index(values: np.ndarray, modes: Sequence[str]) -> int:
    """The Pareto point nearest the ideal point after min-max scaling each objective over the
    front (the trade-off where giving up a little of one objective stops buying much of another).
    Ties go to the earlier point."""
    values = np.asarray(values, dtype=float)
    signs = np.array([1.0 if m == "min" else -1.0 for m in modes])
    v = values * signs
    low, high = v.min(axis=0), v.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (v - low) / span  # 0 = best on that objective
    return int(np.argmin(np.sqrt((scaled ** 2).sum(axis=1))))


class _Trial(Protocol):
    trial_id: str
    outcome: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    run_id: str | None


def _num(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    return None


def within(metrics: Mapping[str, Any], limits: Mapping[str, float]) -> bool:
    """Whether every limited metric was measured and is at or under its limit."""
    for metric, limit in limits.items():
        value = _num(metrics.get(metric))
        if value is None or value > limit:
            return False
    return True


@dataclass
class Selection:
    """The trial the policy picked, why, and the Pareto set it picked from."""

    best: Any | None
    policy: str
    reason: str
    #: (metric, mode) of the Pareto set's axes: the objectives, or (task metric, trainable_share)
    #: for a single-objective study so that the trade-off is visible there too.
    axes: list[tuple[str, str]] = field(default_factory=list)
    pareto: list[Any] = field(default_factory=list)
    feasible: list[Any] = field(default_factory=list)


def pareto_axes(objectives: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    axes = list(objectives)
    if len(axes) == 1:
        axes.append(("trainable_share", "min"))
    return axes


def select(trials: Sequence[_Trial], objectives: Sequence[tuple[str, str]], constraints: Mapping[str, float],
           selection: SelectionConfig) -> Selection:
    """Apply the selection policy to the finished trials.

    Candidates are COMPLETE trials within the sampler constraints. Where none is, the policy
    falls back (and says so in ``reason``): COMPLETE trials ignoring constraints, then PRUNED
    ones, by the task metric, so a study always registers something to look at.
    """
    metric, mode = objectives[0]
    axes = pareto_axes(objectives)
    complete = [t for t in trials if t.outcome == Outcome.COMPLETE and all(_num(t.metrics.get(m)) is not None for m, _ in axes)]
    feasible = [t for t in complete if within(t.metrics, constraints)]
    front: list[_Trial] = []
    if feasible:
        mask = pareto_mask(np.array([[float(t.metrics[m]) for m, _ in axes] for t in feasible]), [md for _, md in axes])
        front = [t for t, keep in zip(feasible, mask, strict=True) if keep]

    def best_of(pool: Sequence[_Trial]) -> _Trial:
        key = lambda t: float(t.metrics[metric])  # noqa: E731
        return max(pool, key=key) if mode == "max" else min(pool, key=key)

    out = Selection(best=None, policy=selection.policy, reason="", axes=axes, pareto=front, feasible=feasible)
    if not feasible:
        for wanted, note in ((Outcome.COMPLETE, "no COMPLETE trial met the constraints"),
                             (Outcome.PRUNED, "no trial completed")):
            pool = [t for t in trials if t.outcome == wanted and _num(t.metrics.get(metric)) is not None]
            if pool:
                out.best = best_of(pool)
                out.reason = f"{note}: took the best {wanted} trial by {metric}"
                return out
        out.reason = "no trial produced a result"
        return out
    if selection.policy == "best":
        out.best = best_of(feasible)
        out.reason = f"best {metric} ({mode}) among {len(feasible)} feasible COMPLETE trials"
    elif selection.policy == "best-within":
        limits = selection.limits()
        pool = [t for t in feasible if within(t.metrics, limits)]
        text = ", ".join(f"{k} <= {v:g}" for k, v in limits.items())
        if pool:
            out.best = best_of(pool)
            out.reason = f"best {metric} ({mode}) among {len(pool)} trials with {text}"
        else:
            out.best = best_of(feasible)
            out.reason = f"no COMPLETE trial with {text}: took the best {metric} overall"
    else:
        values = np.array([[float(t.metrics[m]) for m, _ in axes] for t in front])
        out.best = front[knee_index(values, [md for _, md in axes])]
        out.reason = (f"knee of the Pareto front over {', '.join(m for m, _ in axes)} "
                      f"({len(front)} points; nearest the ideal point after scaling)")
    return out


def pareto_table(selection: Selection) -> pd.DataFrame:
    """The Pareto set as a table: trial, MLflow run, objective values, costs, config, chosen."""
    import pandas as pd

    chosen = selection.best.trial_id if selection.best is not None else None
    rows = []
    for t in selection.pareto:
        row: dict[str, Any] = {"trial_id": t.trial_id, "run_id": t.run_id or "", "family": t.params.get("adapter"),
                               "registered": t.trial_id == chosen}
        for m, _ in selection.axes:
            row[m] = _num(t.metrics.get(m))
        for m in COST_METRICS:
            row.setdefault(m, _num(t.metrics.get(m)))
        row["config"] = json.dumps(t.params, sort_keys=True, default=str)
        for key, value in sorted(t.params.items()):
            row[f"param.{key}"] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if column.startswith("param."):
            values = [v for v in frame[column] if v is not None and not (isinstance(v, float) and math.isnan(v))]
            # Parquet needs one type per column; a choice may mix numbers and names (e.g. layers)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    return frame


def record_selection(client: Any, parent_run_id: str, selection: Selection) -> pd.DataFrame:
    """Log the Pareto set (``pareto_set.csv`` and ``.parquet``) and the policy's choice."""
    frame = pareto_table(selection)
    with tempfile.TemporaryDirectory(prefix="autopeft-pareto-") as directory:
        frame.to_csv(Path(directory) / Artifact.PARETO_CSV, index=False)
        frame.to_parquet(Path(directory) / Artifact.PARETO_PARQUET, index=False)
        client.log_artifacts(parent_run_id, directory)
    tags = StudyRunTags(selection_policy=selection.policy, selection_reason=selection.reason,
                        pareto_axes=selection.axes)
    for key, value in tags.to_tags().items():
        client.set_tag(parent_run_id, key, value)
    client.log_metric(parent_run_id, Metric.PARETO_SET_SIZE, float(len(selection.pareto)))
    client.log_metric(parent_run_id, Metric.FEASIBLE_TRIALS, float(len(selection.feasible)))
    return frame
