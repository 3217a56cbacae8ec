"""What travels with a submitted study: its config and every local file it names, copied into
one folder that becomes the job's working directory (Ray's ``runtime_env`` ``working_dir``).

Data on the Hub (``hub:NAME``, ``data.hub``) or behind a URL (``s3://...``), a model named by
Hub id or packaged name, and a ready space name are passed by reference. A local model folder
travels like the data. Where the task reads files named in the data (images), the data file's
folder travels whole. The config is rewritten to the copies' relative paths; everything else in
it is as the user wrote it (so the cluster plans what the user left open, as ``search`` would).
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autopeft.auto.infer import HUB_PREFIX, names_for
from autopeft.config import SQLITE_PREFIX, apply_overrides, default_study_name, resolve, sqlite_file
from autopeft.data import saved_dataset
from autopeft.errors import ClusterError, ConfigError
from autopeft.tasks import get_task

#: Ray's dashboard refuses larger uploads (``ray_constants.DASHBOARD_CLIENT_MAX_SIZE``); larger
#: inputs belong on S3 or the Hub, passed by reference.
UPLOAD_LIMIT_BYTES = 100 * 1024**2
#: The config's name in the job's working directory.
CONFIG_NAME = "search.yaml"

Overrides = list[tuple[list[str], Any]]


@dataclass
class Travelling:
    """One local input copied into the working directory."""

    field: str  # the config field or flag that names it
    source: Path
    target: str  # relative to the working directory
    size: int


@dataclass
class Staged:
    """A working directory ready to travel, and the ``autopeft`` arguments that run in it."""

    directory: Path
    args: list[str]
    study_name: str
    tracking_uri: str
    experiment: str | None = None  # None: zero-config names it on the cluster, after the data
    registered_model: str | None = None
    trials: int | None = None  # None: the cluster plans it from the time budget
    files: list[Travelling] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def by_reference(value: str) -> bool:
    """A location the cluster reads itself: a Hub dataset or a URL (s3://, gs://, https://)."""
    return value.startswith(HUB_PREFIX) or "://" in value


def check_tracking_uri(uri: str, field_name: str = "tracking.uri") -> None:
    """A submitted study writes to MLflow from the cluster: a server or a database it reaches,
    not a file path relative to this machine's working folder."""
    if uri.startswith(SQLITE_PREFIX):
        db = sqlite_file(uri)
        if db is not None and db.is_absolute():  # sqlite:////abs: a path on the cluster's driver node
            return
    elif uri.startswith("file:"):
        # file:///abs (and file:/abs) hold the path after "file:": a path on the cluster's driver node
        if uri[len("file:"):].removeprefix("//").startswith("/"):
            return
    elif "://" in uri or uri.startswith("databricks"):
        return
    raise ClusterError(f"{field_name}: a submitted study writes to MLflow from the cluster; expected a tracking "
                       f"server (http://HOST:5000) or a database URL the cluster reaches, found {uri!r} (a file "
                       "on this machine); set --tracking-uri")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _locate(value: str, base_dir: Path | None) -> Path | None:
    """The local file or folder ``value`` names (as given, else beside the config), or None."""
    given = Path(value).expanduser()
    for candidate in (given, *([base_dir / given] if base_dir is not None and not given.is_absolute() else [])):
        if candidate.exists():
            return candidate.resolve()
    return None


class _Packer:
    """Collects the inputs to copy, names their copies, and checks the total against the limit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[Travelling] = []

    def add(self, field_name: str, source: Path, target: str) -> str:
        self.files.append(Travelling(field_name, source, target, _size(source)))
        return target

    def data_file(self, field_name: str, source: Path, split: str, whole_folder: bool) -> str:
        if saved_dataset(source) is not None:  # datasets' save_to_disk: the folder is the data
            return self.add(field_name, source, f"data/{split}-{source.name}")
        if not source.is_file():
            raise ConfigError(f"{field_name}: expected a data file, found a folder {str(source)!r}")
        if whole_folder:  # the rows name files beside the data file (images): the folder travels
            folder = self.add(field_name, source.parent, f"data/{split}")
            return f"{folder}/{source.name}"
        return self.add(field_name, source, f"data/{split}-{source.name}")

    def write(self) -> None:
        """Check the size (before anything is copied), then copy."""
        total = sum(f.size for f in self.files)
        if total > UPLOAD_LIMIT_BYTES:
            biggest = max(self.files, key=lambda f: f.size)
            raise ClusterError(
                f"{biggest.field}: the study's local files total {total / 1024**2:.1f} MiB ({biggest.source} alone "
                f"{biggest.size / 1024**2:.1f} MiB), over the {UPLOAD_LIMIT_BYTES // 1024**2} MiB a Ray job may "
                "upload; put large data on S3 or the Hub (data.hub, --train hub:NAME) and pass it by reference")
        self.directory.mkdir(parents=True, exist_ok=True)
        for item in self.files:
            target = self.directory / item.target
            target.parent.mkdir(parents=True, exist_ok=True)
            if item.source.is_dir():
                shutil.copytree(item.source, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item.source, target)


def stage_config(config: Path, overrides: Overrides, directory: Path, *, output_dir: str) -> Staged:
    """Stage a config file (and ``--set`` overrides): validated here, so a wrong field is a
    one-line error before anything travels; its local files copied; paths rewritten."""
    resolved = resolve(config, overrides)  # ConfigError / SpaceError, one line
    cfg = resolved.config
    check_tracking_uri(cfg.tracking.uri)
    raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    raw = apply_overrides(copy.deepcopy(raw), overrides)
    base_dir = config.resolve().parent
    packer = _Packer(directory)
    data = raw.setdefault("data", {})
    whole_folder = any(spec.kind == "image" for spec in get_task(cfg.task.kind).columns)
    for split in ("train", "validation", "test"):
        value = data.get(split)
        if not isinstance(value, str) or by_reference(value):
            continue
        source = _locate(value, base_dir)
        if source is None:
            raise ConfigError(f"data.{split}: no such file {value!r} (looked beside the config too)")
        data[split] = packer.data_file(f"data.{split}", source, split, whole_folder)
    model = raw.setdefault("model", {})
    model_dir = _locate(str(model.get("name_or_path", "")), base_dir) if model.get("name_or_path") else None
    if model_dir is not None and model_dir.is_dir():
        model["name_or_path"] = packer.add("model.name_or_path", model_dir, "model")
    if isinstance(raw.get("space"), str):
        space_file = _locate(raw["space"], base_dir)
        if space_file is not None and space_file.is_file():
            raw["space"] = packer.add("space", space_file, f"space{space_file.suffix}")
    warm = raw.get("warm_start") or {}
    sources = warm.get("sources") if isinstance(warm, dict) else None
    if sources:
        listed = [sources] if isinstance(sources, str) else list(sources)
        for i, entry in enumerate(listed):
            warm_file = _locate(str(entry), base_dir)
            if warm_file is not None and warm_file.is_file():
                listed[i] = packer.add("warm_start.sources", warm_file, f"warm/{i}-{warm_file.name}")
        warm["sources"] = listed
    study_name = cfg.study_name or default_study_name(cfg.tracking.experiment)
    raw["study_name"], raw["output_dir"] = study_name, output_dir
    if isinstance(raw.get("backend"), dict):
        # the driver runs on the cluster: Ray gives it the cluster's address (RAY_ADDRESS)
        raw["backend"].pop("address", None)
    packer.write()
    (directory / CONFIG_NAME).write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return Staged(directory=directory, args=["search", "--config", CONFIG_NAME], study_name=study_name,
                  tracking_uri=cfg.tracking.uri, experiment=cfg.tracking.experiment,
                  registered_model=cfg.tracking.registered_model,
                  trials=cfg.budget.trials if "trials" in cfg.budget.model_fields_set or cfg.budget.time is None
                  else None, files=packer.files)


def stage_request(request: Any, overrides: Overrides, directory: Path, *, output_dir: str,
                  study_name: str | None) -> Staged:
    """Stage a zero-config request (``--model M --train FILE ...``): its files copied, the flags
    passed on; the cluster infers the rest (the inference's lines are in the job's log)."""
    overridden = {".".join(path): value for path, value in overrides}
    uri = str(overridden.get("tracking.uri") or "")
    if not uri:
        raise ClusterError("--tracking-uri: a submitted study writes to MLflow from the cluster; give the tracking "
                           "server it reaches (http://HOST:5000)")
    check_tracking_uri(uri, "--tracking-uri")
    packer = _Packer(directory)
    args = ["search"]
    whole_folder = request.task is not None and any(spec.kind == "image" for spec in get_task(request.task).columns)
    for flag, split in (("--train", "train"), ("--validation", "validation"), ("--test", "test")):
        value = getattr(request, split)
        if value is None:
            continue
        if not by_reference(value):
            source = _locate(value, None)
            if source is None:
                raise ConfigError(f"{flag}: no such file {value!r}")
            value = packer.data_file(flag, source, split, whole_folder)
        args += [flag, value]
    model = request.model
    model_dir = _locate(model, None)
    if model_dir is not None and model_dir.is_dir():
        model = packer.add("--model", model_dir, "model")
    args += ["--model", model]
    for flag, value in (("--time", request.time), ("--label", request.label), ("--task", request.task)):
        if value is not None:
            args += [flag, str(value)]
    for text in request.text:
        args += ["--text", text]
    # the names inference would give on the cluster, given here: there the file is a copy whose
    # name and folder say nothing, and jobs must find the study's experiment
    experiment, registered_model = names_for(request.train)
    settings = {"tracking.experiment": experiment, "tracking.registered_model": registered_model, **overridden}
    settings.pop("backend.address", None)  # the driver runs on the cluster: Ray gives it the address
    name = study_name or str(settings.get("study_name") or "") or default_study_name(str(settings["tracking.experiment"]))
    settings["study_name"] = name
    settings["output_dir"] = output_dir
    for key, value in settings.items():
        args += ["--set", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
    packer.write()
    trials = settings.get("budget.trials")
    return Staged(directory=directory, args=args, study_name=name, tracking_uri=uri,
                  experiment=str(settings["tracking.experiment"]),
                  registered_model=str(settings["tracking.registered_model"]),
                  trials=int(trials) if trials is not None else None, files=packer.files)
