"""The model registry side of autopeft: register adapters with lineage, move aliases, keep history.

The registry alone answers "what is this and where did it come from"; the adapter is stored,
the base model only referenced. A registered version carries:

- a description in plain words (what the adapter is, its study and trial, its validation and
  test figures, its trainable share, how to load it), and the registered model one saying what
  autopeft registers there (:func:`version_description`, :func:`model_description`);
- a short summary as tags (:class:`~autopeft.schema.VersionSummary`: about a dozen, each under
  100 characters, the ones ``search_model_versions`` filters on);
- its full lineage (:class:`~autopeft.schema.VersionTags`: params, base model reference, data
  and test fingerprints, split sizes, adapter config, space hash, git commit...) as
  ``artifacts/lineage.json`` of the logged model, and as ``lineage`` in the adapter's
  ``autopeft.json``.

:meth:`Registry.lineage` reads a version's lineage back, from ``lineage.json`` and the tags, or
from the tags alone for versions of older releases (which wrote every field as a tag).

Lifecycle rules (see docs/registry.md):

- Moving an alias is the only mutation. Nothing is deleted; every move is recorded twice: as
  tags on the version that received the alias, and as one event in the registered model's tags
  (``autopeft.history.<alias>.<seq>``), which is the alias's history that ``rollback`` replays.
- Unknown models, versions and aliases raise :class:`~autopeft.errors.RegistryError` (exit 2);
  an unreachable tracking server raises :class:`~autopeft.errors.TrackingError` within seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from autopeft import __version__
from autopeft._compat import mlflow_globals_restored
from autopeft.config import check_store_exists
from autopeft.errors import RegistryError, TrackingError
from autopeft.registry.reachability import probe
from autopeft.schema import (
    MAX_VERSION_TAG,
    AdapterMetadata,
    Alias,
    AliasEvent,
    Artifact,
    ModelTag,
    PromotionTags,
    VersionSummary,
    VersionTag,
    VersionTags,
    alias_history,
    current_user,
    now_iso,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

# Kept importable here for callers that have not moved to autopeft.schema yet.
CANDIDATE_ALIAS = Alias.CANDIDATE
PRODUCTION_ALIAS = Alias.PRODUCTION
HISTORY_PREFIX = ModelTag.HISTORY_PREFIX
history_from_tags = alias_history
_MAX_TAG = MAX_VERSION_TAG
_T = TypeVar("_T")
#: The file MLflow logs as the pyfunc model's code ("models from code"): found by path, never
#: imported here, since running it registers the model object with MLflow.
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")
#: The pyfunc artifact key of ``lineage.json`` (MLflow stores it as ``artifacts/lineage.json``).
LINEAGE_ARTIFACT = Path(Artifact.LINEAGE).stem


# --------------------------------------------------------------------------- registration


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    reqs = [f"autopeft=={__version__}"] if "unknown" not in __version__ else []
    for dist in ("torch", "transformers", "peft", "pandas", "mlflow"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except Exception:  # not installed under that name; let pip resolve it
            reqs.append(dist)
    return reqs


def signature(input_columns: Sequence[str], outputs: Sequence[tuple[str, str]]) -> Any:
    """The pyfunc's input and output schema: string input columns (texts, whitespace-joined
    words, image paths) and the task kind's ``outputs`` ("string[]": a list of strings)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    def column(name: str, kind: str) -> ColSpec:
        return ColSpec(Array("string"), name) if kind == "string[]" else ColSpec(kind, name)

    return ModelSignature(inputs=Schema([ColSpec("string", c) for c in input_columns]),
                          outputs=Schema([column(name, kind) for name, kind in outputs]))


def git_commit(directory: Path | None = None) -> dict[str, str]:
    """The ``git_commit`` and ``git_dirty`` version tags for the git checkout holding
    ``directory`` (default: the working directory), or {} outside one."""
    cwd = str(directory or Path.cwd())
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git binary, or a hung file system
        return {}
    return VersionTags(git_commit=sha.stdout.strip(),
                       git_dirty=dirty.returncode == 0 and bool(dirty.stdout.strip())).to_tags(only_set=True)


def complete_lineage(adapter_dir: Path, given: VersionTags, space: Any = None) -> VersionTags:
    """``given`` (the search's record) with what the registry derives, so every registration has
    it: the base model's name, local path, revision and config hash from its reference, the peft
    adapter config, a hash of the search space, the git commit of the project, when and by whom.
    A field ``given`` sets keeps its value."""
    derived = VersionTags(base_model=given.base_model)
    derived.derive_base_model()
    config_file = Path(adapter_dir) / "adapter_config.json"  # peft's file
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        keep = ("peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "use_dora", "target_modules",
                "feedforward_modules", "layers_to_transform", "modules_to_save", "bias")
        derived.adapter_config = {k: config[k] for k in keep if config.get(k) is not None}
    if space is not None:
        derived.space_hash = hashlib.sha256(json.dumps(space, sort_keys=True, default=str).encode()).hexdigest()[:16]
    git = VersionTags.from_tags(git_commit())
    derived.git_commit, derived.git_dirty = git.git_commit, git.git_dirty
    derived.registered_at, derived.registered_by = now_iso(), current_user()
    return given.filled_from(derived)


def _run_space(client: MlflowClient, *run_ids: str | None) -> Any:
    """The study's search space as the search logged it (``space.json`` of the study's run: the
    first of ``run_ids`` that has it), or None."""
    for run_id in dict.fromkeys(r for r in run_ids if r):
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = client.download_artifacts(run_id, Artifact.SPACE, tmp)
                return json.loads(Path(path).read_text())
        except Exception:  # an older study, a trial's run, a store without it: the hash is optional
            continue
    return None


def _record_in_metadata(adapter_dir: Path, lineage: VersionTags) -> AdapterMetadata | None:
    """Write the lineage into the adapter's ``autopeft.json`` (so the exported and the
    registered adapter say where they came from); the metadata, or None without a readable file."""
    meta_file = Path(adapter_dir) / Artifact.METADATA_FILE
    try:
        metadata = AdapterMetadata.from_json(meta_file.read_text())
    except (OSError, ValueError, KeyError):  # not an autopeft adapter folder: lineage.json still has it
        return None
    metadata.lineage = lineage.to_dict()
    try:
        meta_file.write_text(metadata.to_json())
    except OSError:  # a read-only folder: lineage.json still has it
        pass
    return metadata


@contextmanager
def mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at ``uri`` for the block only.

    The fluent API (``log_model``) and MLflow 3's ``models:/`` downloads read these globals, and
    ``mlflow.set_*_uri`` also exports them as environment variables that child processes
    inherit; restoring them keeps one study's store from leaking into the next study, or a
    subprocess, in the same process.
    """
    import mlflow

    with mlflow_globals_restored():
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        yield


def register_adapter(client: MlflowClient, *, tracking_uri: str, run_id: str, adapter_dir: Path,
                     registered_model: str, tags: VersionTags | Mapping[str, Any], model_signature: Any = None,
                     alias: str = CANDIDATE_ALIAS) -> ModelVersion:
    """Log ``adapter_dir`` as a pyfunc model in ``run_id``, register it and point ``alias`` at it.

    ``tags``: the search's lineage record (:class:`~autopeft.schema.VersionTags`, or a mapping
    of its tag keys; other keys of a mapping are set on the version as they are). The registry
    completes it (:func:`complete_lineage`) and stores it as ``lineage.json`` beside the adapter
    in the logged model and in the adapter's ``autopeft.json``; the version gets its summary as
    tags (:class:`~autopeft.schema.VersionSummary`) and a description, the registered model a
    description when it has none."""
    import mlflow

    adapter_dir = Path(adapter_dir)
    own: dict[str, str] = {}
    if isinstance(tags, VersionTags):
        given = tags
    else:
        text = {k: str(v) for k, v in tags.items()}
        given = VersionTags.from_tags(text)
        lineage_keys = set(VersionTags.keys().values())
        own = {k: v for k, v in text.items() if k not in lineage_keys and v.strip()}
    lineage = complete_lineage(adapter_dir, given, _run_space(client, given.parent_run_id, run_id))
    metadata = _record_in_metadata(adapter_dir, lineage)
    try:
        with tempfile.TemporaryDirectory(prefix="autopeft-lineage-") as tmp:
            lineage_file = Path(tmp) / Artifact.LINEAGE
            lineage_file.write_text(lineage.to_json())
            with mlflow_uris(tracking_uri), mlflow.start_run(run_id=run_id):
                info = mlflow.pyfunc.log_model(
                    name=Artifact.MODEL,
                    python_model=str(PYFUNC_ENTRY),  # models from code: nothing pickled
                    signature=model_signature,
                    artifacts={Artifact.ADAPTER: str(adapter_dir), LINEAGE_ARTIFACT: str(lineage_file)},
                    pip_requirements=_pip_requirements(),
                    registered_model_name=registered_model,
                )
    except Exception as exc:
        raise TrackingError(f"tracking: registering the best adapter as {registered_model!r} failed: {exc}") from exc
    version = str(info.registered_model_version)
    for key, value in {**lineage.summary().to_tags(), **own}.items():
        client.set_model_version_tag(registered_model, version, key, value[:_MAX_TAG])
    client.update_model_version(registered_model, version,
                                description=version_description(registered_model, version, lineage, metadata))
    if not (client.get_registered_model(registered_model).description or "").strip():
        client.update_registered_model(registered_model, description=model_description(registered_model))
    client.set_registered_model_alias(registered_model, alias, version)
    return client.get_model_version(registered_model, version)


# --------------------------------------------------------------------------- descriptions


def model_description(name: str) -> str:
    """What the registered model holds and how to load it (Markdown, as the MLflow UI shows it)."""
    return (
        f"Adapters registered by autopeft: each version is the adapter (LoRA, IA3, ...) a study's search "
        f"selected, trained on a base model that is referenced, not stored. A version's description says what "
        f"the adapter is, which study and trial it came from and how it scored; its tags summarise it and its "
        f"model's `{Artifact.MODEL_LINEAGE}` holds the full lineage (params, data, base model, git commit).\n\n"
        f"Aliases: `{Alias.CANDIDATE}` is the version registered last; `{Alias.PRODUCTION}` moves only through "
        f"`autopeft promote` (gated on the test metric) and `autopeft rollback`, each move recorded in this "
        f"model's tags (`{ModelTag.HISTORY_PREFIX}*`).\n\n"
        f"Load a version: `mlflow.pyfunc.load_model(\"models:/{name}@{Alias.CANDIDATE}\")` (or "
        f"`models:/{name}/VERSION`) predicts from a DataFrame of the input columns; "
        f"`autopeft export {name}@{Alias.CANDIDATE} --out DIR` writes the adapter to a folder "
        f"(`--merged`: a plain transformers model)."
    )


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def version_description(name: str, version: str, lineage: VersionTags,
                        metadata: AdapterMetadata | None = None) -> str:
    """The version in plain words (Markdown): what the adapter is, where it came from, how it
    scored, how to load it. ``metadata``: the adapter's ``autopeft.json`` (the selection's reason)."""
    family = lineage.family_name or "an"
    what = f"**{family} adapter**"
    if lineage.adapter_summary and lineage.adapter_summary != family:
        what += f" `{lineage.adapter_summary}`"
    if lineage.base_name:
        what += f" on `{lineage.base_name}`" + (f" @{lineage.base_pin[:12]}" if lineage.base_pin else "")
    details = [p for p in (lineage.placement_summary,
                           f"learning rate {lineage.learning_rate:.4g}" if lineage.learning_rate else None) if p]
    paragraphs = [what + (f" ({'; '.join(details)})" if details else "") + "."]

    origin = f"**From** study `{lineage.study or '?'}`, trial `{lineage.trial_id or '?'}`"
    runs = [f"trial run `{lineage.trial_run_id}`" if lineage.trial_run_id else "",
            f"study run `{lineage.parent_run_id}`" if lineage.parent_run_id else ""]
    if any(runs):
        origin += f" ({', '.join(r for r in runs if r)})"
    reason = ((metadata.selection if metadata else {}) or {}).get("reason")
    if lineage.selection_policy:
        origin += f", selected by the `{lineage.selection_policy}` policy"
        origin += f": {' '.join(str(reason).split())[:300]}" if reason else ""
    origin += "."
    if lineage.final_steps:
        origin += (f" Trained for {lineage.final_steps} more steps with the trial's configuration before registration "
                   "(the source run says from what).")
    paragraphs.append(origin)

    metric = lineage.metric or "metric"
    scores = f"**Scores:** validation {metric} {_figure(lineage.val_metric)}, "
    if lineage.test_metric is not None:
        test_rows = (lineage.split_sizes or {}).get("test")
        where = [f"{test_rows} rows" if test_rows else "", f"fingerprint {lineage.test_fingerprint[:8]}"
                 if lineage.test_fingerprint else ""]
        scores += f"test {metric} {_figure(lineage.test_metric)}"
        scores += f" (test set: {', '.join(w for w in where if w)})" if any(where) else ""
    else:
        scores += "no test set"
    if lineage.mode:
        scores += f"; {'higher' if lineage.mode == 'max' else 'lower'} is better"
    scores += "."
    if lineage.trainable_share is not None:
        scores += f" Trainable share {lineage.trainable_share:.3%}"
        scores += f" ({lineage.trainable_params:,} parameters)." if lineage.trainable_params else "."
    paragraphs.append(scores)

    load = (f"**Load:** `mlflow.pyfunc.load_model(\"models:/{name}/{version}\")` (fetches the base model by "
            f"reference), or `autopeft export {name}/{version} --out DIR`. Full lineage: `{Artifact.MODEL_LINEAGE}` "
            f"of this version's model")
    if lineage.git_commit:
        load += f"; registered from git commit `{lineage.git_commit[:12]}`" + (
            " with uncommitted changes" if lineage.git_dirty else "")
    paragraphs.append(load + ".")
    return "\n\n".join(paragraphs)


# --------------------------------------------------------------------------- lifecycle


def keeps_lineage_file(tags: Mapping[str, str]) -> bool:
    """Whether a version with these tags keeps its lineage in ``lineage.json``: registered by
    this release (it carries the summary, not the whole record: older releases always wrote
    the mode as a tag)."""
    return VersionTag.MODE not in tags and any(key in tags for key in VersionSummary.keys().values())


def holders(events: list[AliasEvent], current: str | None) -> list[str]:
    """The stack of versions that held the alias, oldest first, as rollback sees it.

    A promotion pushes its version; a rollback pops the version it rolled back from. When the
    alias was moved outside autopeft (the MLflow UI), its current holder is pushed last, so a
    rollback still returns to the version before it.
    """
    stack: list[str] = []
    for event in events:
        if event.action == "rollback":
            while stack and stack[-1] != event.version:
                stack.pop()
            if not stack:
                stack.append(event.version)
        elif not stack or stack[-1] != event.version:
            stack.append(event.version)
    if current is not None and (not stack or stack[-1] != current):
        stack.append(current)
    return stack


def parse_model_ref(text: str) -> tuple[str, str | None, str | None]:
    """``NAME@ALIAS`` or ``NAME/VERSION`` (``models:/`` prefix optional) → (name, version, alias)."""
    ref = text[len("models:/"):] if text.startswith("models:/") else text
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        if name and alias:
            return name, None, alias
    elif re.fullmatch(r".+/\d+", ref):
        name, version = ref.rsplit("/", 1)
        return name, version, None
    raise RegistryError(f"model: expected NAME@ALIAS or NAME/VERSION, found {text!r}")


class Registry:
    """The registry operations autopeft's lifecycle commands need, over one MLflow client.

    Every call goes through :meth:`_call`, which turns MLflow's "does not exist" into a
    one-line RegistryError and connection failures into TrackingError.
    """

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    @classmethod
    def open(cls, uri: str) -> Registry:
        """Connect and probe once; TrackingError within seconds when the server does not answer."""
        check_store_exists(uri, "tracking uri")
        registry = cls(uri)
        started = time.monotonic()
        try:
            probe(uri)  # seconds, where the client would retry an unreachable server for minutes
            registry.client.search_registered_models(max_results=1)
        except Exception as exc:
            raise TrackingError(
                f"tracking: cannot reach MLflow at {uri!r} after {time.monotonic() - started:.1f}s: "
                f"{' '.join(str(exc).split())[:200]}"
            ) from None
        return registry

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        from mlflow.exceptions import MlflowException

        try:
            return fn()
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise RegistryError(what) from None
            raise TrackingError(f"tracking: {what.split(':')[0]}: {' '.join(str(exc).split())[:200]}") from None
        except (OSError, ConnectionError) as exc:
            raise TrackingError(f"tracking: cannot reach MLflow at {self.uri!r}: {exc}") from None

    # reads -----------------------------------------------------------------------------

    def model(self, name: str) -> RegisteredModel:
        return self._call(f"model: no registered model named {name!r} at {self.uri}",
                          lambda: self.client.get_registered_model(name))

    def models(self) -> list[RegisteredModel]:
        return self._call("models: listing failed", lambda: list(self.client.search_registered_models()))

    def version(self, name: str, version: str) -> ModelVersion:
        self.model(name)  # a clearer message when the model itself is unknown
        return self._call(f"version: {name!r} has no version {version!r}",
                          lambda: self.client.get_model_version(name, str(version)))

    def by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version holding ``alias``, or None when no version holds it."""
        aliases = self.model(name).aliases or {}
        if alias not in aliases:
            return None
        return self.version(name, str(aliases[alias]))

    def resolve(self, name: str, *, version: str | None = None, alias: str | None = None) -> ModelVersion:
        if version is not None:
            return self.version(name, version)
        assert alias is not None
        found = self.by_alias(name, alias)
        if found is None:
            known = ", ".join(sorted((self.model(name).aliases or {}).keys())) or "none"
            raise RegistryError(f"alias: {name!r} has no version with alias {alias!r} (aliases: {known})")
        return found

    def versions(self, name: str) -> list[ModelVersion]:
        self.model(name)
        found = self._call(f"model: no registered model named {name!r}",
                           lambda: list(self.client.search_model_versions(f"name = '{name}'")))
        return sorted(found, key=lambda v: int(v.version))

    def history(self, name: str, alias: str) -> list[AliasEvent]:
        return alias_history(self.model(name).tags or {}, alias)

    def lineage(self, version: ModelVersion, *, strict: bool = False) -> VersionTags:
        """The version's full lineage: ``lineage.json`` of its logged model, completed by its
        tags (versions of this release), or its tags alone (older releases wrote every field as
        a tag, and versions not registered by autopeft have none).

        When ``lineage.json`` should be there and cannot be read, the tags' summary is returned,
        or with ``strict`` a RegistryError (a promotion needs the mode and the test fingerprint)."""
        tags = dict(version.tags or {})
        recorded = VersionTags.from_tags(tags)
        if not keeps_lineage_file(tags):
            return recorded
        try:
            text = self._model_file(version.name, str(version.version), Artifact.MODEL_LINEAGE)
            return VersionTags.from_json(text).filled_from(recorded)
        except Exception as exc:  # missing file, unreachable artifact store, not JSON
            if strict:
                raise RegistryError(f"version: cannot read the lineage of {version.name!r} version {version.version} "
                                    f"({Artifact.MODEL_LINEAGE}): {' '.join(str(exc).split())[:200]}") from None
            return recorded

    def _model_file(self, name: str, version: str, path: str) -> str:
        """The text of one file of the version's logged model (downloaded alone)."""
        import mlflow.artifacts

        with tempfile.TemporaryDirectory(prefix="autopeft-read-") as tmp, mlflow_uris(self.uri):
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}/{path}",
                                                       dst_path=tmp, tracking_uri=self.uri, registry_uri=self.uri)
            return Path(local).read_text()

    def download(self, name: str, version: str, dst: Path) -> Path:
        """The version's logged model into ``dst``; returns the adapter folder inside it."""
        import mlflow.artifacts

        def fetch() -> str:
            # MLflow 3 resolves a version's logged model (models:/m-...) through the *global*
            # tracking URI whatever tracking_uri says, so point it here for the download only
            with mlflow_uris(self.uri):
                return mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                           dst_path=str(dst), tracking_uri=self.uri,
                                                           registry_uri=self.uri)

        local = self._call(f"version: cannot download {name!r} version {version}", fetch)
        adapter = Path(local) / "artifacts" / Artifact.ADAPTER  # MLflow keeps pyfunc artifacts in artifacts/
        if not adapter.is_dir():
            raise RegistryError(f"version: {name!r} version {version} is not an autopeft adapter "
                                f"(no artifacts/{Artifact.ADAPTER})")
        return adapter

    # the one mutation: moving an alias, recorded ---------------------------------------

    def move_alias(self, name: str, alias: str, version: str, *, action: str, reason: str = "",
                   gates: list[dict[str, Any]] | None = None,
                   version_tags: PromotionTags | Mapping[str, str] | None = None) -> AliasEvent:
        """Point ``alias`` at ``version`` and record who held it before, why and when (and
        ``version_tags``, e.g. the gates' results, on the version)."""
        model = self.model(name)
        aliases = model.aliases or {}
        previous = str(aliases[alias]) if alias in aliases else None
        events = alias_history(model.tags or {}, alias)
        event = AliasEvent(seq=(events[-1].seq + 1) if events else 1, alias=alias, action=action,
                           version=str(version), previous=previous, reason=reason, gates=list(gates or []))
        extra = version_tags.to_tags() if isinstance(version_tags, PromotionTags) else dict(version_tags or {})
        tags = {**PromotionTags(alias=alias, action=action, at=event.at, by=event.by, previous=previous or "",
                                reason=reason).to_tags(), **extra}

        def write() -> None:
            # the alias moves last: if a tag write fails, production has not changed
            for key, value in tags.items():
                self.client.set_model_version_tag(name, str(version), key, str(value)[:_MAX_TAG])
            self.client.set_registered_model_tag(name, event.tag_key, event.to_json())
            self.client.set_registered_model_alias(name, alias, str(version))

        self._call(f"alias: cannot move {alias!r} of {name!r}", write)
        return event

    def rollback(self, name: str, alias: str = PRODUCTION_ALIAS, reason: str = "") -> AliasEvent:
        """Move ``alias`` back to the version that held it before the current one."""
        current = self.by_alias(name, alias)
        if current is None:
            raise RegistryError(f"rollback: no version of {name!r} holds {alias!r}; nothing to roll back")
        stack = holders(self.history(name, alias), str(current.version))
        if len(stack) < 2:
            raise RegistryError(f"rollback: {alias!r} of {name!r} has had no holder before version "
                                f"{current.version}; nothing to roll back to")
        target = stack[-2]
        self.version(name, target)  # still exists (nothing is deleted, but someone may have)
        return self.move_alias(name, alias, target, action="rollback", reason=reason,
                               version_tags=PromotionTags(alias=alias, rolled_back_from=str(current.version)))


def registered_for_study(client: Any, name: str, study: str) -> str | None:
    """The version already registered for ``study`` (so a resumed study registers once)."""
    # deferred: MLflow takes seconds to import; the module's other readers do not all need it
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for version in versions:
        if VersionTags.from_tags(version.tags).study == study:
            return str(version.version)
    return None
