"""Prepare a study: every check that needs no compute, before Ray starts or anything is written.

Model, data, the space against the model's structure, the Ray address, the tracking store, the
output folder, the study name and the warm-start points: a problem with any of them is a
one-line :class:`~autopeft.errors.UserInputError` here, never a failure after trials began.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from autopeft.adapters.fit import fit_to_model
from autopeft.config import SQLITE_PREFIX, ResolvedConfig, default_study_name, from_dump, sqlite_file
from autopeft.data import RawData, check_rendering, is_url, load, locate
from autopeft.engine.faults import FaultPlan
from autopeft.errors import ConfigError
from autopeft.model.loading import check_fits_model, resolve_location
from autopeft.model.placement import ModelStructure
from autopeft.registry.tracking import (
    check_reachable,
    check_registered_model_name,
    recorded_study,
    write_problem,
)
from autopeft.space import ChoiceSpec
from autopeft.study.manifest import StudyManifest
from autopeft.study.warmstart import collect
from autopeft.tasks import get_task

logger = logging.getLogger("autopeft")


@dataclass
class Prepared:
    """Everything checked and loaded before any compute starts."""

    resolved: ResolvedConfig
    study_name: str
    location: str
    structure: ModelStructure
    raw: RawData
    output_dir: Path
    optuna_storage: str
    #: Set when resuming: the study's manifest (parent run, Ray experiment) from the first run.
    manifest: Any = None
    #: Configs enqueued as the first trials (``warmstart.WarmPoint``), checked in prepare().
    warm_start: list[Any] = field(default_factory=list)
    #: Fault injection for reliability tests, read once here (``engine.faults``); None: off.
    faults: FaultPlan | None = None
    #: Training steps the learning-rate calibration took before the search (``study.calibration``).
    calibration_steps: int = 0
    #: Why no family was probed though the calibration was on (``study.calibration``); None otherwise.
    calibration_skipped: str | None = None

    @property
    def config(self):  # noqa: ANN201 - SearchConfig, kept short for readers
        return self.resolved.config

    @property
    def cache_dir(self) -> Path:
        """Where the tokenized splits and the budget probe's timings are cached, by fingerprint."""
        return self.output_dir / "cache"


def validate_space(resolved: ResolvedConfig, structure: ModelStructure) -> None:
    """Every family exists, fits the task and takes the given parameters; every placement
    choice resolves to at least one module of this model. Families the architecture cannot
    run are dropped from the space with their reason (``space.fit_to_model``)."""
    space = resolved.space
    fit = fit_to_model(space, structure, resolved.config.task.kind)
    for name, reason in fit.excluded.items():
        logger.warning("space.adapters.%s: excluded: %s", name, reason)
        del space.adapters[name]
    for what, excluded in (("roles", fit.excluded_roles), ("layers", fit.excluded_layers)):
        for choice, reason in excluded.items():
            logger.warning("space.placement.%s: %s excluded: %s", what, choice, reason)
    # so that the sampler never draws, nor a warm start enqueues, a placement the model cannot take
    if fit.kept_roles is not None:
        space.placement.roles = ChoiceSpec(choices=fit.kept_roles)
    if fit.kept_layers is not None:
        space.placement.layers = ChoiceSpec(choices=fit.kept_layers)
    sampler = resolved.config.sampler.name
    differing = space.training_keys_set_per_family()
    if differing and sampler in ("gp", "nsga2"):
        # Optuna's gp and nsga2 model only parameters every trial samples from one distribution
        logger.warning(
            "space: %s differs between adapter families, so the %s sampler draws it at random instead of "
            "modelling it (tpe models it per trial; or give every family the same range)", ", ".join(differing), sampler)


def default_storage(resolved: ResolvedConfig, output_dir: Path) -> str:
    tracking = resolved.config.tracking
    if tracking.optuna_storage:
        return tracking.optuna_storage
    db = sqlite_file(tracking.uri)
    folder = db.resolve().parent if db is not None else output_dir.resolve()
    return f"{SQLITE_PREFIX}{folder / 'optuna.db'}"


def storage_field(resolved: ResolvedConfig) -> str:
    """The key the user set that the Optuna storage comes from (errors name it, not a key never set)."""
    tracking = resolved.config.tracking
    if tracking.optuna_storage:
        return "tracking.optuna_storage"
    return "tracking.uri" if sqlite_file(tracking.uri) is not None else "output_dir"


def prepare(resolved: ResolvedConfig, *, manifest: Any = None) -> Prepared:
    """All checks that need no compute: model, data, space against the model, study name, paths.
    Nothing is written: no folder, no store, no study (they are made once compute starts).

    With ``manifest`` (a :class:`~autopeft.study.StudyManifest`), prepares to resume that study.
    """
    cfg = resolved.config
    task = get_task(cfg.task.kind)
    location = resolve_location(cfg.model.name_or_path, cfg.model.revision)
    base_dir = resolved.source.parent if resolved.source else None
    raw = load(cfg.data, task, seed=cfg.seed, base_dir=base_dir)
    for split in ("train", "validation", "test"):  # absolute, so a resume works from any folder
        given = getattr(cfg.data, split)
        if given is not None and not is_url(given):  # a URL is fetched again by each process
            setattr(cfg.data, split, str(locate(given, base_dir).resolve()))
    structure = task.structure(cfg.model, location, raw.label_names or ["0", "1"])
    # the tokenizer (or image processor) is loaded again to tokenize: a folder without one, or
    # with another model's, fails here rather than in every trial
    preprocessor = task.load_preprocessor(cfg.model, location)
    if cfg.data.messages_column is not None:  # a chat template that refuses a conversation: here, not in a trial
        for frame in raw.frames.values():
            check_rendering(frame[raw.text_columns[0]], preprocessor)
    check_fits_model(cfg.model, location, preprocessor, cfg.model.max_length, auto_class=task.auto_class)
    validate_space(resolved, structure)
    check_ray_address(cfg.backend.address)
    check_local_resources(cfg.backend.address, cfg.budget.cpus_per_trial, cfg.budget.gpus_per_trial)
    check_reachable(cfg.tracking.uri, cfg.tracking.experiment)
    check_registered_model_name(cfg.tracking.registered_model)

    output_dir = Path(cfg.output_dir)
    check_writable("output_dir", output_dir)
    storage_path = cfg.backend.storage_path
    if storage_path and "://" not in storage_path:  # a remote store (s3://...) is Ray's to reach
        check_writable("backend.storage_path", Path(storage_path))

    if manifest is not None:
        return Prepared(resolved=resolved, study_name=manifest.study_name, location=location, structure=structure,
                        raw=raw, output_dir=output_dir, optuna_storage=manifest.optuna_storage, manifest=manifest,
                        faults=FaultPlan.from_env())
    study_name = cfg.study_name or default_study_name(cfg.tracking.experiment)
    storage = default_storage(resolved, output_dir)
    existing = study_names(storage, storage_field(resolved))
    if study_name in existing:
        raise ConfigError(
            f"study_name: a study named {study_name!r} already exists in {storage}; continue it with "
            f"'autopeft resume {study_name} --output-dir {output_dir}' or choose another name"
        )
    recorded = recorded_study(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.registered_model, study_name)
    if recorded:
        # its Optuna study is elsewhere (another storage or output_dir), its MLflow record is here
        raise ConfigError(f"study_name: a study named {study_name!r} is already recorded in {cfg.tracking.uri} "
                          f"({recorded}); choose another name")
    with _no_new_file(_resolved(sqlite_file(storage))):  # reading an earlier study must not create the database
        warm = collect(cfg.warm_start, resolved.space, storage, trials=cfg.budget.trials, base_dir=base_dir)
    return Prepared(resolved=resolved, study_name=study_name, location=location, structure=structure, raw=raw,
                    output_dir=output_dir, optuna_storage=storage, warm_start=warm, faults=FaultPlan.from_env())


def check_writable(field_name: str, path: Path) -> None:
    """The folder ``path`` can be created and written, asked without creating it (or any above it)."""
    problem = write_problem(path, folder=True)
    if problem:
        raise ConfigError(f"{field_name}: cannot write to {str(path)!r}: {problem}")


def study_names(storage: str, field_name: str) -> list[str]:
    """The studies in the Optuna ``storage``, read without creating it: a SQLite file that does
    not exist yet holds none (its folder must take it)."""
    path = _resolved(sqlite_file(storage))
    if path is not None:
        problem = write_problem(path)
        if problem:
            raise ConfigError(f"{field_name}: cannot write the Optuna storage {str(path)!r}: {problem}")
        if not path.is_file():
            return []
    try:
        return optuna.study.get_all_study_names(storage=storage)
    except Exception as exc:
        raise ConfigError(f"{field_name}: cannot open the Optuna storage {storage!r}: "
                          f"{' '.join(str(exc).split())[:200]}") from None


def _resolved(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


@contextmanager
def _no_new_file(path: Path | None) -> Iterator[None]:
    """Remove the SQLite file (and its journals) at ``path`` if the block created it."""
    existed = path is None or path.exists()
    try:
        yield
    finally:
        if not existed and path is not None:
            for leftover in (path, *(path.with_name(path.name + s) for s in ("-journal", "-wal", "-shm"))):
                leftover.unlink(missing_ok=True)


def prepare_resume(study_name: str, output_dir: Path) -> Prepared:
    """Re-check a study's recorded config and prepare to continue it."""
    manifest = StudyManifest.load(output_dir, study_name)
    return prepare(from_dump(manifest.config), manifest=manifest)




def check_ray_address(address: str | None, timeout_s: float = 5.0) -> None:
    """A Ray address that does not answer fails here in seconds (``ray.init`` retries for minutes)."""
    if address in (None, "", "auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"backend.address: expected auto, HOST:PORT or ray://HOST:PORT, found {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(f"backend.address: no Ray cluster answers at {address!r}: {exc.strerror or exc}") from None


def check_local_resources(address: str | None, cpus_per_trial: float, gpus_per_trial: float) -> None:
    """On local Ray, a trial asking for more CPUs or GPUs than this machine has would wait forever
    for them: refuse it here. (A cluster's resources can grow with autoscaling: not checked. A
    driver run as a Ray job is given the cluster's address in ``RAY_ADDRESS``.)"""
    if (address or os.environ.get("RAY_ADDRESS")) not in (None, "", "local"):
        return
    cpus = os.cpu_count() or 1
    if cpus_per_trial > cpus:
        raise ConfigError(f"budget.cpus_per_trial: a trial asks for {cpus_per_trial:g} CPUs, but this machine has "
                          f"{cpus} (local Ray); lower it, or run on a cluster with backend.address")
    if gpus_per_trial > 0:
        # deferred: torch takes seconds to import; needed only when the config asks for GPUs
        import torch

        gpus = torch.cuda.device_count()
        if gpus_per_trial > gpus:
            raise ConfigError(f"budget.gpus_per_trial: a trial asks for {gpus_per_trial:g} GPUs, but this machine "
                              f"has {gpus} (local Ray); set 0 to train on the CPU, or run on a cluster with "
                              "backend.address")
