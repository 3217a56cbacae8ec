"""The warm-start portfolio, learned from data: the written, re-runnable procedure that builds
``autopeft/study/portfolio.yaml`` (what a study enqueues first, ``autopeft.study.warmstart``).

    python -m bench.portfolio --tasks sst2,rte,qnli --steps 48     # make bench-portfolio

1. **Pool.** The former hand-set prior (``HANDSET``, the papers' and peft's recommended settings)
   and, alternating with it (a run cut short has measured some of each), seeded random draws
   from ready spaces (``--draws all-adapters=3,lora-family=1``): Optuna's ``RandomSampler(seed)``
   over the space's define-by-run function, the families MiniLM cannot run excluded first, so
   the same seed draws the same pool. Every candidate trains at the budget's
   batch size (what it measured is what the portfolio enqueues).
2. **Measure.** Each candidate trains on each task for the same small budget (steps, train and
   validation subsets, seed) with the bare engine loop (``bench.methods.train_one``: no Ray, no
   MLflow) and is scored on the validation split. Each (task, candidate) result is a JSON file in
   ``--cache`` (bench/results/portfolio/) keyed by the candidate's config, the budget and the
   data's fingerprint: an interrupted run resumes there and a rerun retrains nothing that did not
   change.
3. **Normalise.** Per task, a candidate's gap is ``(best - metric) / (best - trivial)``: 0 for the
   task's best candidate, 1 for a candidate no better than the trivial predictor (the kind's
   metric on a constant prediction: the training split's majority class, or its mean for
   regression). A task where no candidate beats the trivial level says nothing about which is
   better and is left out of the coverage (recorded as such).
4. **Choose.** Greedy cover: repeatedly add the candidate within ``delta`` of the best on the most
   tasks not yet covered (ties: the lowest mean gap, then the name); when every task is covered,
   a new round starts (each task covered again by a different entry) until ``k`` entries. **No
   task decides alone:** a candidate is eligible only when it is within ``delta`` on at least
   ``min_tasks`` (2) tasks, so a config that is best on one task and poor elsewhere never enters.
   The order is the greedy order: when a study's prior share is small, the first entries run.
5. **Fit the ready spaces.** For each ready space (search_spaces/*.yaml) no chosen entry fits
   (``warmstart.fit_to_space``): a respelling of a chosen entry (``respell``: the same roles under
   another name, the nearest ``last-M``, a number clipped into the space's range), *measured* like
   any candidate and kept, right after its entry and under its name (a variant: the first that
   fits a space is taken), only if it is itself within ``delta`` on ``min_tasks`` tasks; else the
   eligible candidate that fits it with the lowest mean gap; else the space is recorded as
   unfilled, with why.

The portfolio is written with its provenance: the tasks (task file, rows used, a fingerprint of
the rows), the budget, the pool, ``delta``/``k``, the git commit, the date and the score table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
CACHE = RESULTS / "portfolio"
OUT = ROOT / "autopeft" / "study" / "portfolio.yaml"

#: The hand-set prior the learned portfolio replaced (autopeft/study/warmstart.py before it), one
#: config per entry (its first variant): the pool's first candidates, so the data decide whether
#: they stay. Sources: peft's and the papers' recommended settings; LoRA at ~10x full fine-tuning's
#: LR, IA3 at ~100x.
HANDSET: list[tuple[str, dict[str, Any]]] = [
    ("lora-all-linear", {"adapter": "lora", "lora.r": 8, "lora.alpha": 16, "lora.dropout": 0.05,
                         "placement.layers": "all", "placement.roles": "all-linear", "learning_rate": 5e-4}),
    ("lora-top-attention", {"adapter": "lora", "lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.1,
                            "placement.layers": "last-4", "placement.roles": "query,key,value,attention_output",
                            "learning_rate": 2e-3}),
    ("dora-all-linear", {"adapter": "dora", "dora.r": 8, "dora.alpha": 16, "dora.dropout": 0.05,
                         "placement.layers": "all", "placement.roles": "all-linear", "learning_rate": 5e-4}),
    ("lora-qv", {"adapter": "lora", "lora.r": 8, "lora.alpha": 16, "lora.dropout": 0.1,
                 "placement.layers": "all", "placement.roles": "query,value", "learning_rate": 5e-4}),
    ("ia3-all-linear", {"adapter": "ia3", "placement.layers": "all", "placement.roles": "all-linear",
                        "learning_rate": 1e-2}),
]
DEFAULT_DRAWS = "all-adapters=3,lora-family=1"


@dataclass(frozen=True)
class Budget:
    """What every (task, candidate) run gets: the same steps, rows and seed."""

    steps: int = 48  # sized to ~40 min for 9 candidates x 3 GLUE tasks on one CPU core (bench/NOTES.md)
    batch_size: int = 16
    max_train: int = 2000
    max_validation: int = 400
    seed: int = 0
    max_length: int = 64
    warmup_ratio: float = 0.06  # where the candidate's config does not set one
    model: str = "minilm"


@dataclass(frozen=True)
class Candidate:
    name: str
    config: dict[str, Any]
    origin: str  # "handset" or "<space>#<draw>"


@dataclass
class TaskData:
    """A task's prepared splits as the measurement needs them."""

    name: str
    files: Any  # bench.data.TaskFiles
    fingerprint: str
    trivial: float
    metric: str


@dataclass
class Selection:
    entries: list[str]
    reasons: dict[str, str]
    gaps: dict[str, dict[str, float]]  # task -> candidate -> gap
    informative: list[str]  # tasks where some candidate beat the trivial level
    unfilled: dict[str, str] = field(default_factory=dict)  # ready space -> why nothing fits it
    variant_of: dict[str, str] = field(default_factory=dict)  # variant candidate -> the entry it respells


# --------------------------------------------------------------------------- pool


def parse_draws(text: str) -> list[tuple[str, int]]:
    """``all-adapters=4,lora-family=3`` -> [("all-adapters", 4), ("lora-family", 3)]."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        space, sep, count = part.partition("=")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"--draws: expected SPACE=N, found {part!r}")
        out.append((space.strip(), int(count)))
    return out


def draw(space_name: str, n: int, seed: int, model: str = "minilm") -> list[Candidate]:
    """``n`` configs drawn at random (Optuna's RandomSampler, ``seed``) from a ready space bound to
    ``model`` (families it cannot run are excluded first, as a search would)."""
    import optuna

    from autopeft.adapters.fit import fit_to_model
    from autopeft.config import ModelConfig
    from autopeft.model.loading import resolve_location
    from autopeft.space import config_names, load_space
    from autopeft.study.define_by_run import compile_space
    from autopeft.tasks import get_task

    space = load_space(space_name)
    kind = get_task("sequence_classification")
    structure = kind.structure(ModelConfig(name_or_path=model), resolve_location(model), ["0", "1"])
    fit = fit_to_model(space, structure, kind.name)
    space = space.model_copy(update={"adapters": {k: v for k, v in space.adapters.items() if k in fit.kept}})
    space.bind_model(structure.num_layers)
    run = compile_space(space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for i in range(n):
        trial = study.ask()
        fixed = run(trial)
        config = {k: v for k, v in config_names({**trial.params, **fixed}).items()
                  if not k.startswith("placement.layer_")}
        if len(space.adapters) == 1:
            config.setdefault("adapter", next(iter(space.adapters)))
        config = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in config.items()}
        study.tell(trial, 0.0)
        out.append(Candidate(name=f"{space_name}-{i}-{config['adapter']}", config=config,
                             origin=f"{space_name}#{i}"))
    return out


def candidate_pool(draws: Sequence[tuple[str, int]], seed: int, budget: Budget) -> list[Candidate]:
    """The hand-set configs and the draws, alternating (a run cut short has measured some of each);
    every one at the budget's batch size (and its warm-up where the config sets none)."""
    handset = [Candidate(name, dict(cfg), "handset") for name, cfg in HANDSET]
    drawn = [c for space_name, n in draws for c in draw(space_name, n, seed, budget.model)]
    pool = [c for pair in itertools.zip_longest(handset, drawn) for c in pair if c is not None]
    return [Candidate(c.name, {**c.config, "batch_size": budget.batch_size,
                               "warmup_ratio": c.config.get("warmup_ratio", budget.warmup_ratio)}, c.origin)
            for c in pool]


# --------------------------------------------------------------------------- measure


def trivial_level(kind: str, metric: str, train_labels: Sequence[Any], labels: Sequence[Any],
                  num_labels: int) -> float:
    """The kind's ``metric`` on a constant prediction: the training split's majority class
    (classification) or its mean (regression), scored on ``labels``."""
    import numpy as np

    from autopeft.tasks import get_task

    gold = np.asarray(labels)
    if num_labels > 0:
        values, counts = np.unique(np.asarray(train_labels), return_counts=True)
        majority = int(values[counts.argmax()])
        outputs = np.zeros((len(gold), num_labels), dtype=np.float32)
        outputs[:, majority] = 1.0
    else:
        outputs = np.full((len(gold), 1), float(np.mean(np.asarray(train_labels, dtype=float))), dtype=np.float32)
    return float(get_task(kind).compute_metrics(outputs, gold)[metric])


def fingerprint_rows(paths: Sequence[Path]) -> str:
    """sha256 of the rows (as JSON records) of the prepared splits: what the scores were measured on."""
    import pandas as pd

    digest = hashlib.sha256()
    for path in paths:
        digest.update(pd.read_parquet(path).to_json(orient="records").encode())
    return digest.hexdigest()[:16]


def prepare(task: str, glue_dir: Path, work: Path, budget: Budget) -> TaskData:
    from bench.data import prepare_task
    from bench.methods import tokenized

    files = prepare_task(task, glue_dir, work / "data" / task, max_train=budget.max_train,
                         max_validation=budget.max_validation, max_test=1, data_seed=budget.seed)
    ctx = _context(files, work, budget)
    _, data = tokenized(ctx)
    num = len(data.label_names) if data.label_names else 0
    trivial = trivial_level(files.kind, files.metric, list(data.splits["train"].labels),
                            list(data.splits["validation"].labels), num)
    return TaskData(name=task, files=files, fingerprint=fingerprint_rows([files.train, files.validation]),
                    trivial=trivial, metric=files.metric)


def _context(files: Any, work: Path, budget: Budget) -> Any:
    from bench.methods import Context

    return Context(files=files, seed=budget.seed, workdir=work / "runs", model=budget.model,
                   max_length=budget.max_length, trial_steps=budget.steps, budget_steps=budget.steps,
                   eval_interval=budget.steps, cpus=1, metric=files.metric)


def train_candidate(task: TaskData, candidate: Candidate, budget: Budget, work: Path) -> dict[str, Any]:
    """One candidate trained on one task with the bare engine loop; its validation metric."""
    from bench.methods import train_one

    out = train_one(_context(task.files, work, budget), candidate.config)
    return {"metric": out["val"], "trainable_params": int(out["built"].trainable_params)}


Trainer = Callable[[TaskData, Candidate, Budget, Path], Mapping[str, Any]]


def cache_key(task: TaskData, candidate: Candidate, budget: Budget) -> str:
    text = json.dumps({"config": candidate.config, "budget": asdict(budget), "data": task.fingerprint},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure(tasks: Sequence[TaskData], pool: Sequence[Candidate], budget: Budget, cache: Path, work: Path, *,
            trainer: Trainer = train_candidate, log: Callable[[str], None] = print,
            train: bool = True) -> dict[str, dict[str, float]]:
    """task -> candidate -> validation metric; each result read from ``cache`` when its key (config,
    budget, data) matches, else trained and written there at once (a stopped run keeps it; without
    ``train``, left out). Candidates run in the outer loop, so a run stopped part-way has whole
    columns, every task of the first candidates."""
    cache.mkdir(parents=True, exist_ok=True)
    scores: dict[str, dict[str, float]] = {t.name: {} for t in tasks}
    for candidate in pool:
        for task in tasks:
            path = cache / f"{task.name}--{candidate.name}.json"
            key = cache_key(task, candidate, budget)
            if path.is_file():
                record = json.loads(path.read_text())
                if record.get("key") == key:
                    scores[task.name][candidate.name] = float(record["metric"])
                    continue
            if not train:
                continue
            started = time.perf_counter()
            try:
                result = dict(trainer(task, candidate, budget, work))
            except Exception as exc:  # one candidate failing must not lose the others: scored as failed
                log(f"{task.name} {candidate.name}: failed: {type(exc).__name__}: {exc}")
                result = {"metric": float("nan"), "error": f"{type(exc).__name__}: {exc}"}
            record = {"key": key, "task": task.name, "candidate": candidate.name, "config": candidate.config,
                      "budget": asdict(budget), "data_fingerprint": task.fingerprint, **result,
                      "wall_s": round(time.perf_counter() - started, 1)}
            path.write_text(json.dumps(record, indent=1, default=str) + "\n")
            scores[task.name][candidate.name] = float(record["metric"])
            log(f"{task.name} {candidate.name}: {task.metric} {record['metric']:.4f} ({record['wall_s']} s)")
    return scores


# --------------------------------------------------------------------------- score and choose


def gaps(scores: Mapping[str, Mapping[str, float]], trivial: Mapping[str, float]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """task -> candidate -> gap to the task's best relative to (best - trivial), and the tasks where
    the best beats the trivial level (the others are uninformative: every gap there is NaN). Below
    the trivial level a gap exceeds 1; a failed run (NaN metric) has an infinite gap."""
    out: dict[str, dict[str, float]] = {}
    informative = []
    for task, by_cand in scores.items():
        finite = [v for v in by_cand.values() if not math.isnan(v)]
        best = max(finite, default=float("nan"))
        span = best - trivial[task]
        if not finite or not span > 0:
            out[task] = {c: float("nan") for c in by_cand}
            continue
        informative.append(task)
        out[task] = {c: math.inf if math.isnan(v) else (best - v) / span for c, v in by_cand.items()}
    return out, informative


def greedy(gap: Mapping[str, Mapping[str, float]], tasks: Sequence[str], *, delta: float, k: int,
           min_tasks: int = 2) -> tuple[list[str], dict[str, str]]:
    """Greedy cover (see the module's docstring, step 4): the chosen candidates in order and why
    each was chosen. Only candidates within ``delta`` on at least ``min_tasks`` tasks are eligible."""
    candidates = sorted({c for t in tasks for c in gap[t]})

    def within(c: str) -> set[str]:
        return {t for t in tasks if gap[t].get(c, math.inf) <= delta}

    def mean_gap(c: str) -> float:
        return sum(min(gap[t].get(c, 1.0), 1.0) for t in tasks) / max(1, len(tasks))

    eligible = [c for c in candidates if len(within(c)) >= min(min_tasks, len(tasks))]
    chosen: list[str] = []
    reasons: dict[str, str] = {}
    covered: set[str] = set()
    round_ = 1
    while len(chosen) < k:
        left = [c for c in eligible if c not in chosen]
        if not left:
            break
        best = min(left, key=lambda c: (-len(within(c) - covered), mean_gap(c), c))
        new = within(best) - covered
        if not new:
            if covered:  # every task covered by this round's entries: the next round covers them again
                covered, round_ = set(), round_ + 1
                continue
            break
        chosen.append(best)
        covered |= new
        reasons[best] = (f"round {round_}: within {delta:g} of the best on {', '.join(sorted(within(best)))}"
                         f" (new: {', '.join(sorted(new))}); mean gap {mean_gap(best):.3f}")
    return chosen, reasons


def ready_spaces() -> dict[str, Any]:
    from autopeft.space import load_space, ready_spaces_dir

    return {p.stem: load_space(p) for p in sorted(ready_spaces_dir().glob("*.yaml"))}


def _nearest_layers(value: Any, choices: Sequence[Any]) -> Any:
    """``last-N`` as the ``last-M`` choice with the nearest M (ties: the smaller), else None."""
    def depth(v: Any) -> int | None:
        text = str(v)
        return int(text[5:]) if text.startswith("last-") and text[5:].isdigit() else None

    n = depth(value)
    options = [(abs(depth(c) - n), depth(c), c) for c in choices if n is not None and depth(c) is not None]  # type: ignore[operator]
    return min(options)[2] if options else None


def _same_roles(value: Any, choices: Sequence[Any]) -> Any:
    """The choice naming the same roles once groups are expanded (``attention`` = q, k, v and the
    attention output), else None."""
    from autopeft.model.placement import ROLE_GROUPS
    from autopeft.space import encode_choice

    def expand(v: Any) -> frozenset[str]:
        roles = str(encode_choice(v)).split(",")
        return frozenset(r for role in roles for r in ROLE_GROUPS.get(role, (role,)) if r != "qkv")

    return next((c for c in choices if expand(c) == expand(value)), None)


def respell(config: Mapping[str, Any], space: Any) -> dict[str, Any] | None:
    """``config`` moved to the nearest point of ``space`` where only its spelling or a bound keeps
    it out: the same roles under another name, the nearest ``last-M`` layers, a number clipped into
    a range or moved to the nearest numeric choice (on a log scale). None when the family is not in
    the space or a value has no such neighbour. A respelled config is another config: it is
    measured like any candidate before it may enter."""
    from autopeft.space import ChoiceSpec, RangeSpec
    from autopeft.study.warmstart import fit_to_space, sampled_specs

    family = config.get("adapter")
    if family not in space.adapters:
        return None
    specs = sampled_specs(space, str(family))
    out = dict(config)
    for key, value in config.items():
        spec = specs.get(key)
        if not isinstance(spec, (ChoiceSpec, RangeSpec)) or fit_to_space({"adapter": family, key: value}, space) is not None:
            continue
        new: Any = None
        if isinstance(spec, RangeSpec) and isinstance(value, (int, float)):
            new = min(max(value, spec.low), spec.high)
        elif not isinstance(spec, ChoiceSpec):  # a range that a non-number cannot be fitted into
            return None
        elif key == "placement.layers":
            new = _nearest_layers(value, spec.choices)
        elif key == "placement.roles":
            new = _same_roles(value, spec.choices)
        elif isinstance(value, (int, float)) and all(isinstance(c, (int, float)) and c > 0 for c in spec.choices):
            new = min(spec.choices, key=lambda c: abs(math.log(c) - math.log(max(value, 1e-12))))
        if new is None:
            return None
        out[key] = new
    return out if fit_to_space(out, space) is not None else None


Measurer = Callable[[Sequence[Candidate]], Mapping[str, Mapping[str, float]]]


def select(scores: Mapping[str, Mapping[str, float]], trivial: Mapping[str, float], pool: Sequence[Candidate], *,
           delta: float, k: int, min_tasks: int = 2, spaces: Mapping[str, Any] | None = None,
           measure_variants: Measurer | None = None) -> Selection:
    """Steps 3 to 5: gaps, the greedy cover, then a start for each ready space none of it fits: a
    measured respelling of a chosen entry (``respell``, when ``measure_variants`` can measure it)
    that is itself within ``delta`` on ``min_tasks`` tasks, else the best eligible candidate
    that fits it."""
    from autopeft.study.warmstart import fit_to_space

    gap, informative = gaps(scores, trivial)
    chosen, reasons = greedy(gap, informative, delta=delta, k=k, min_tasks=min_tasks)
    by_name = {c.name: c for c in pool}
    unfilled: dict[str, str] = {}
    variant_of: dict[str, str] = {}
    best = {t: max((v for v in scores[t].values() if not math.isnan(v)), default=math.nan) for t in scores}
    for space_name, space in (spaces if spaces is not None else ready_spaces()).items():
        if any(fit_to_space(by_name[c].config, space) is not None for c in chosen):
            continue
        for base in [c for c in chosen if c not in variant_of] if measure_variants is not None else []:
            config = respell(by_name[base].config, space)
            if config is None:
                continue
            variant = Candidate(f"{base}@{space_name}", config, f"variant of {base} for {space_name}")
            assert measure_variants is not None  # the loop runs over nothing without it
            measured = measure_variants([variant])
            for t in scores:  # against the pool's best and trivial level: the same yardstick
                value = measured[t].get(variant.name, math.nan)
                span = best[t] - trivial[t]
                gap[t][variant.name] = (math.inf if math.isnan(value) else (best[t] - value) / span) \
                    if t in informative else math.nan
            close = [t for t in informative if gap[t][variant.name] <= delta]
            if len(close) < min(min_tasks, len(informative)):
                continue
            by_name[variant.name] = variant
            variant_of[variant.name] = base
            at = max(i for i, c in enumerate(chosen) if c == base or variant_of.get(c) == base) + 1
            chosen.insert(at, variant.name)
            reasons[variant.name] = (f"variant of {base} for {space_name} (which it does not fit): measured, within "
                                     f"{delta:g} of the best on {', '.join(close)}")
            break
        if any(fit_to_space(by_name[c].config, space) is not None for c in chosen):
            continue
        fits = [c.name for c in pool if c.name not in chosen and fit_to_space(c.config, space) is not None]
        fitting = [c for c in fits
                   if sum(gap[t].get(c, math.inf) <= delta for t in informative) >= min(min_tasks, len(informative))]
        if not fitting:
            unfilled[space_name] = (f"the candidates that fit it ({', '.join(fits)}) are within delta on fewer than "
                                    f"{min_tasks} tasks" if fits else "no candidate of the pool fits it")
            continue
        pick = min(fitting, key=lambda c: (sum(min(gap[t][c], 1.0) for t in informative), c))
        chosen.append(pick)
        reasons[pick] = f"fills {space_name} (no entry before fits it): the eligible candidate that fits it with the lowest mean gap"
    return Selection(entries=chosen, reasons=reasons, gaps=gap, informative=informative, unfilled=unfilled,
                     variant_of=variant_of)


# --------------------------------------------------------------------------- write


def git_state() -> dict[str, Any]:
    from autopeft.registry.versions import git_commit
    from autopeft.schema import VersionTag

    tags = git_commit(ROOT)
    return {"commit": tags.get(VersionTag.GIT_COMMIT, ""), "dirty": tags.get(VersionTag.GIT_DIRTY) == "true"}


def portfolio_document(selection: Selection, pool: Sequence[Candidate], tasks: Sequence[TaskData],
                       scores: Mapping[str, Mapping[str, float]], budget: Budget, *, draws: Sequence[tuple[str, int]],
                       seed: int, delta: float, k: int, min_tasks: int, command: str,
                       git: Mapping[str, Any], date: str, variants: Sequence[Candidate] = ()) -> dict[str, Any]:
    from autopeft.study.warmstart import fit_to_space

    by_name = {c.name: c for c in [*pool, *variants]}
    spaces = ready_spaces()
    entries: list[dict[str, Any]] = [{"name": selection.variant_of.get(name, name), "candidate": name, "config": by_name[name].config,
                "origin": by_name[name].origin,
                "why": selection.reasons[name],
                "gaps": {t.name: _round(selection.gaps[t.name].get(name)) for t in tasks}}
               for name in selection.entries]
    table = {}
    for t in tasks:
        finite = {c: v for c, v in scores[t.name].items() if not math.isnan(v)}
        best = max(finite, key=lambda c: finite[c]) if finite else None
        table[t.name] = {"metric": t.metric, "trivial": _round(t.trivial),
                         "best": _round(finite[best]) if best else None, "best_candidate": best,
                         "informative": t.name in selection.informative,
                         "candidates": {c: {"value": _round(v), "gap": _round(selection.gaps[t.name].get(c))}
                                        for c, v in scores[t.name].items()}}
    return {
        "version": 1,
        "entries": entries,
        "provenance": {
            "built_by": command,
            "commit": git.get("commit", ""), "dirty": bool(git.get("dirty", False)),
            "date": date,
            "model": budget.model,
            "tasks": [{"name": t.name, "file": _rel(t.files.source), "rows": dict(t.files.sizes),
                       "fingerprint": t.fingerprint} for t in tasks],
            "budget": asdict(budget),
            "pool": {"handset": [n for n, _ in HANDSET], "draws": dict(draws), "seed": seed,
                     "candidates": {c.name: {"origin": c.origin, "config": c.config} for c in pool}},
            "selection": {"delta": delta, "k": k, "min_tasks": min_tasks,
                          "rule": "greedy cover of the tasks within delta of each task's best (gap relative to "
                                  "best - trivial), min_tasks per entry; then one entry per ready space none fits"},
            "fits": {name: list(dict.fromkeys(e["name"] for e in entries if fit_to_space(e["config"], space) is not None))
                     for name, space in spaces.items()},
            "variants": {v.name: {"origin": v.origin, "config": v.config} for v in variants},
            "unfilled": selection.unfilled,
            "scores": table,
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _rel(path: str | Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class _NoAliases(yaml.SafeDumper):
    """Writes a config shared by an entry and the provenance twice, not as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


HEADER = ("# The warm-start portfolio: what a study enqueues first (autopeft/study/warmstart.py), in this order.\n"
          "# Built from data by `make bench-portfolio` (python -m bench.portfolio, its docstring is the procedure);\n"
          "# rebuild it rather than editing it: the provenance below says what it was measured on.\n")


def markdown(doc: Mapping[str, Any]) -> str:
    prov = doc["provenance"]
    b = prov["budget"]
    lines = [f"Budget: {b['steps']} steps, batch {b['batch_size']}, train {b['max_train']} / validation "
             f"{b['max_validation']} rows, seed {b['seed']}; delta {prov['selection']['delta']}, k {prov['selection']['k']}.",
             "", "| task | trivial | best (candidate) | " + " | ".join(e["candidate"] for e in doc["entries"]) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in doc["entries"]) + " |"]
    for task, row in prov["scores"].items():
        cells = []
        for e in doc["entries"]:
            cell = row["candidates"].get(e["candidate"], {})
            cells.append(f"{cell.get('value')} (gap {cell.get('gap')})")
        lines.append(f"| {task} | {row['trivial']} | {row['best']} ({row['best_candidate']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.portfolio", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="sst2,rte,qnli", help="comma-separated task names or task files (bench/data.py)")
    p.add_argument("--glue-dir", default=str(ROOT.parent / "shared" / "data" / "glue"))
    p.add_argument("--draws", default=DEFAULT_DRAWS, help="seeded random draws per ready space, SPACE=N,...")
    p.add_argument("--pool-seed", type=int, default=0, help="seed of the draws")
    p.add_argument("--steps", type=int, default=Budget.steps)
    p.add_argument("--batch-size", type=int, default=Budget.batch_size)
    p.add_argument("--max-train", type=int, default=Budget.max_train)
    p.add_argument("--max-validation", type=int, default=Budget.max_validation)
    p.add_argument("--seed", type=int, default=Budget.seed, help="training and data seed")
    p.add_argument("--delta", type=float, default=0.15, help="a task is covered by a candidate within this gap")
    p.add_argument("-k", type=int, default=4, help="most entries of the greedy cover")
    p.add_argument("--min-tasks", type=int, default=2, help="tasks an entry must be within delta on")
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--dry-run", action="store_true", help="print the pool and exit")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: choose among the candidates the cache holds on every task (a run cut short)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from autopeft.process import configure_process

    configure_process()
    args = parse_args(argv)
    budget = Budget(steps=args.steps, batch_size=args.batch_size, max_train=args.max_train,
                    max_validation=args.max_validation, seed=args.seed)
    draws = parse_draws(args.draws)
    pool = candidate_pool(draws, args.pool_seed, budget)
    if args.dry_run:
        for c in pool:
            print(c.name, json.dumps(c.config))
        return 0
    import torch

    torch.set_num_threads(1)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if len(names) < 2:
        raise SystemExit("--tasks: expected at least two tasks (no task may decide the portfolio alone)")
    command = "python -m bench.portfolio " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="portfolio-") as tmp:
        work = Path(tmp)
        tasks = [prepare(name, Path(args.glue_dir), work, budget) for name in names]
        for t in tasks:
            print(f"{t.name}: rows {t.files.sizes}, trivial {t.metric} {t.trivial:.4f}, data {t.fingerprint}", flush=True)
        scores = measure(tasks, pool, budget, Path(args.cache), work,
                         log=lambda line: print(line, flush=True), train=not args.cached_only)
        # a candidate not measured on every task (--cached-only after a cut run) is left out, and said so
        unmeasured = [c.name for c in pool if any(c.name not in scores[t.name] for t in tasks)]
        pool = [c for c in pool if c.name not in unmeasured]
        scores = {t: {c: v for c, v in row.items() if c not in unmeasured} for t, row in scores.items()}
        variants: list[Candidate] = []

        def measure_variants(found: Sequence[Candidate]) -> dict[str, dict[str, float]]:
            variants.extend(found)
            more = measure(tasks, found, budget, Path(args.cache), work, log=lambda line: print(line, flush=True),
                           train=not args.cached_only)
            for t, row in more.items():
                scores[t].update(row)
            return more

        selection = select(scores, {t.name: t.trivial for t in tasks}, pool, delta=args.delta, k=args.k,
                           min_tasks=args.min_tasks, measure_variants=measure_variants)
    if not selection.entries:
        raise SystemExit(f"no candidate is within --delta {args.delta:g} of the best on --min-tasks {args.min_tasks} "
                         f"tasks: nothing to write (the scores are in {args.cache}; try a larger --delta or budget)")
    doc = portfolio_document(selection, pool, tasks, scores, budget, draws=draws, seed=args.pool_seed,
                             delta=args.delta, k=args.k, min_tasks=args.min_tasks, command=command,
                             git=git_state(), date=dt.date.today().isoformat(), variants=variants)
    doc["provenance"]["pool"]["not_measured"] = unmeasured
    out = Path(args.out)
    out.write_text(HEADER + yaml.dump(doc, Dumper=_NoAliases, sort_keys=False, width=120))
    (Path(args.cache) / "summary.md").write_text(markdown(doc))
    print(markdown(doc))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
