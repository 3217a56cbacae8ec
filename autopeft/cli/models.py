"""Model-registry lifecycle commands: ``promote``, ``rollback``, ``models``, ``export``.

Each command opens the registry with a reachability check first (an unreachable tracking
server is an error within seconds), maps unknown names to exit 2 and refused gates to exit 1.
The logic lives in :mod:`autopeft.registry` and :mod:`autopeft.promotion`; this module only
parses flags and prints.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer
from rich.text import Text

from autopeft.cli._inputs import TRACKING_URI, local_tracking_uri
from autopeft.cli._output import console, fail, out
from autopeft.errors import AutoPeftError, UserInputError
from autopeft.process import configure_process
from autopeft.schema import Alias, Artifact, VersionTags, history_aliases


def _read_config(path: Optional[Path]) -> dict[str, Any]:
    """The raw YAML of ``--config``: only its ``promotion`` and ``tracking`` sections are used,
    so a search config and a promotion-only file both work."""
    if path is None:
        return {}
    import yaml

    if not path.is_file():
        raise UserInputError(f"--config: no such file {str(path)!r}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserInputError(f"--config: {path} is not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"--config: expected a mapping at the top of {path}")
    return data


def _gates(config: dict[str, Any], flags: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from autopeft.registry.promotion import PromotionConfig

    values = dict(config.get("promotion") or {})
    values.update({k: v for k, v in flags.items() if v is not None})  # flags win over the file
    try:
        return PromotionConfig.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UserInputError(f"promotion.{where}: {err['msg']}") from None


def register(app: typer.Typer) -> None:
    """Add the lifecycle commands to ``app``."""

    @app.command()
    def promote(
        name: str = typer.Argument(..., help="Registered model name."),
        version: Optional[str] = typer.Option(None, "--version", help="Version to promote."),
        from_alias: Optional[str] = typer.Option(None, "--from", help="Promote the version holding this alias (default: candidate)."),
        to_alias: str = typer.Option(Alias.PRODUCTION, "--to", help="Alias to move."),
        test_data: Optional[str] = typer.Option(None, "--test-data", help="Labelled test data (a csv/tsv/jsonl/parquet/... file, a saved dataset's folder, or a URL: s3://, gs://, https://): re-evaluate both versions on it when their recorded test sets differ."),
        encoding: Optional[str] = typer.Option(None, "--encoding", help="The test data's text encoding, e.g. cp1252 (default: UTF-8, or what a byte-order mark names)."),
        min_metric: Optional[float] = typer.Option(None, help="Gate: the test metric must be at least this good."),
        max_trainable_share: Optional[float] = typer.Option(None, help="Gate: most trainable parameters as a share (0..1]."),
        max_latency_ms: Optional[float] = typer.Option(None, help="Gate: most ms per single-example prediction (measured here)."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML with a 'promotion:' section (thresholds) and optionally 'tracking.uri'."),
        force: bool = typer.Option(False, "--force", help="Move the alias even when a gate fails (needs --reason)."),
        reason: str = typer.Option("", "--reason", help="Why; recorded on the version and in the alias history."),
        tracking_uri: Optional[str] = TRACKING_URI,
    ) -> None:
        """Move an alias (production) to a version after its gates pass."""
        configure_process()
        from autopeft.config import checked_encoding
        from autopeft.data import is_data, is_url, not_a_file
        from autopeft.registry.promotion import promote as run_promote
        from autopeft.registry.versions import Registry

        try:
            raw = _read_config(config)
            gates = _gates(raw, {"min_metric": min_metric, "max_trainable_share": max_trainable_share,
                                 "max_latency_ms": max_latency_ms})
            if encoding is not None:
                encoding = checked_encoding(encoding, "--encoding")
            if test_data is not None and not is_url(test_data) and not is_data(Path(test_data)):
                raise UserInputError(not_a_file("--test-data", test_data))  # a file, or a saved dataset's folder
            registry = Registry.open(local_tracking_uri(tracking_uri, raw))
            result = run_promote(registry, name, version=version, from_alias=from_alias, to_alias=to_alias,
                                 config=gates, test_data=test_data, encoding=encoding, force=force, reason=reason)
        except AutoPeftError as exc:
            fail(exc)
            return
        if result.event is None:
            out.print(f"{name}: version {result.version} already holds {to_alias!r}; nothing to do", highlight=False)
            return
        for gate in result.gates:
            mark = ("pass", "green") if gate.passed else ("overridden", "yellow") if result.forced else ("fail", "red")
            out.print(Text.assemble("  ", mark, f" {gate.gate}: {gate.message}"), highlight=False, soft_wrap=True)
        held = f"version {result.previous}" if result.previous else "no version"
        how = f"forced ({reason})" if result.forced else "gates passed"
        out.print(f"{name}: {to_alias!r} moved from {held} to version {result.version} ({how})", highlight=False)

    @app.command()
    def rollback(
        name: str = typer.Argument(..., help="Registered model name."),
        alias: str = typer.Option(Alias.PRODUCTION, "--alias", help="Alias to move back."),
        reason: str = typer.Option("", "--reason", help="Why; recorded on the version and in the alias history."),
        tracking_uri: Optional[str] = TRACKING_URI,
    ) -> None:
        """Move an alias (production) back to the version that held it before."""
        configure_process()
        from autopeft.registry.versions import Registry

        try:
            event = Registry.open(local_tracking_uri(tracking_uri)).rollback(name, alias, reason)
        except AutoPeftError as exc:
            fail(exc)
            return
        out.print(f"{name}: {alias!r} rolled back from version {event.previous} to version {event.version}",
                  highlight=False)

    @app.command()
    def models(
        name: Optional[str] = typer.Argument(None, help="Registered model (omit to list every model)."),
        tracking_uri: Optional[str] = TRACKING_URI,
    ) -> None:
        """Table of registered models, or of one model's versions: aliases, metrics, lineage."""
        configure_process()
        from autopeft.registry.versions import Registry

        try:
            registry = Registry.open(local_tracking_uri(tracking_uri))
            shown = _models_view(registry, out.width) if name is None else _versions_view(registry, name, out.width)
        except AutoPeftError as exc:
            fail(exc)
            return
        for item in shown:
            out.print(item, highlight=False, markup=False) if isinstance(item, str) else out.print(item)

    @app.command()
    def export(
        ref: str = typer.Argument(..., metavar="NAME@ALIAS", help="NAME@ALIAS or NAME/VERSION."),
        out_dir: Path = typer.Option(..., "--out", help="Folder to write (must be empty or absent)."),
        merged: bool = typer.Option(False, "--merged", help="Merge the adapter into its base model (plain transformers)."),
        tracking_uri: Optional[str] = TRACKING_URI,
    ) -> None:
        """Write a version's adapter, or a merged full model, to a folder."""
        configure_process()
        from autopeft.registry.versions import Registry, parse_model_ref

        try:
            model_name, version, alias = parse_model_ref(ref)
            if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
                raise UserInputError(f"--out: {str(out_dir)!r} exists and is not an empty folder")
            registry = Registry.open(local_tracking_uri(tracking_uri))
            found = registry.resolve(model_name, version=version, alias=alias)
            created = not out_dir.exists()
            try:
                with tempfile.TemporaryDirectory(prefix="autopeft-export-") as tmp:
                    adapter = registry.download(model_name, str(found.version), Path(tmp))
                    if merged:
                        from autopeft.engine.predictor import export_merged

                        with console.status("merging the adapter into its base model..."):
                            export_merged(adapter, out_dir)
                    else:
                        shutil.copytree(adapter, out_dir, dirs_exist_ok=True)
            except BaseException:
                if created:  # no half-written export left behind to be mistaken for a good one
                    shutil.rmtree(out_dir, ignore_errors=True)
                raise
            provenance = {"model": model_name, "version": str(found.version), "alias": alias,
                          "merged": merged, "tracking_uri": registry.uri, "tags": dict(found.tags or {}),
                          "lineage": registry.lineage(found).to_dict()}
            (out_dir / Artifact.EXPORT_PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True))
        except AutoPeftError as exc:
            fail(exc)
            return
        what = "merged model" if merged else "adapter"
        out.print(f"exported {model_name} version {found.version} ({what}) to {out_dir}", highlight=False)


# --------------------------------------------------------------------------- models views
#
# A table where it fits the terminal (or the COLUMNS a log is written with); otherwise one
# block per model or version, a value per line, so no cell is folded into pieces.


def _fits(table: Any, width: int) -> bool:
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=max(width, 1000), markup=False)  # the table's natural width, unconstrained
    return Measurement.get(console, console.options, table).maximum <= width


def _models_view(registry: Any, width: int) -> list[Any]:
    from rich.table import Table

    rows = []
    for model in registry.models():
        aliases = ", ".join(f"{a}→v{v}" for a, v in sorted((model.aliases or {}).items())) or "-"
        rows.append((model.name, str(len(registry.versions(model.name))), aliases,
                     _time(model.last_updated_timestamp)))
    table = Table()
    for column in ("model", "versions", "aliases", "updated"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    lines: list[Any] = [f"registered models at {registry.uri}"]
    if _fits(table, width):
        return [*lines, table]
    for name, count, aliases, updated in rows:
        lines += ["", name, f"  versions  {count}, updated {updated}", f"  aliases   {aliases}"]
    return lines


_VERSION_COLUMNS = ("version", "aliases", "adapter", "placement", "val", "test", "trainable", "study / trial",
                    "base model", "data / test set", "git", "created")
_VERSION_COLUMNS_NARROW = ("version", "aliases", "adapter", "val", "test", "trainable", "study / trial")


def _versions_view(registry: Any, name: str, width: int) -> list[Any]:
    from rich.table import Table

    model = registry.model(name)
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    versions = registry.versions(name)
    lineage = {str(v.version): registry.lineage(v) for v in versions}
    metric = next((t.metric for t in lineage.values() if t.metric), "")
    rows = []
    for version in versions:
        tags = lineage[str(version.version)]
        rows.append({
            "version": str(version.version),
            "aliases": ", ".join(sorted(by_version.get(str(version.version), []))) or "-",
            "adapter": tags.adapter_summary or tags.family_name or "?",
            "placement": tags.placement_summary or "-",
            "val": _number(tags.val_metric),
            "test": _number(tags.test_metric),
            "trainable": _share(tags.trainable_share),
            "trainable params": f"{tags.trainable_params:,} parameters" if tags.trainable_params else "",
            "study / trial": f"{tags.study or '?'} / {tags.trial_id or '?'}",
            "base model": _base(tags),
            "data / test set": f"{(tags.data_fingerprint or '-')[:8]} / {(tags.test_fingerprint or '-')[:8]}",
            "git": ((tags.git_commit or "")[:8] + ("*" if tags.git_dirty else "")) or "-",
            "created": _time(version.creation_timestamp),
        })
    headers = {"val": f"val {metric}".strip(), "test": f"test {metric}".strip()}
    shown: list[Any] = [f"{name} at {registry.uri}"]
    for columns in (_VERSION_COLUMNS, _VERSION_COLUMNS_NARROW):  # the widest table that fits
        table = Table()
        for column in columns:
            table.add_column(headers.get(column, column), no_wrap=True)
        for row in rows:
            table.add_row(*(row[c] for c in columns))
        if _fits(table, width):
            shown.append(table)
            break
    else:  # one block per version: a label column and the values, each on its own line
        for row in rows:
            shown += ["", f"version {row['version']}  {row['aliases']}  {row['created']}"]
            for label, value in (("adapter", row["adapter"]), ("placement", row["placement"]),
                                 (metric or "metric", f"val {row['val']}, test {row['test']}"),
                                 ("trainable", f"{row['trainable']} ({row['trainable params']})"
                                  if row["trainable params"] else row["trainable"]),
                                 ("study/trial", row["study / trial"]),
                                 ("base model", row["base model"]), ("data/test", row["data / test set"]),
                                 ("git", row["git"])):
                shown.append(f"  {label:<11} {value}")
    for alias in history_aliases(model.tags or {}):
        steps = [f"v{e.version} ({e.action}{': ' + e.reason if e.reason else ''}, {e.at})"
                 for e in registry.history(name, alias)]
        if steps:  # one move per line: a log keeps each one whole
            shown += ["", f"{alias} history: {steps[0]}"]
            shown += [f"  → {step}" for step in steps[1:]]
    return shown


def _time(ms: Any) -> str:
    from datetime import datetime, timezone

    if not ms:
        return "-"
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return "-"


def _share(value: Any) -> str:
    try:
        return f"{float(value):.3%}"
    except (TypeError, ValueError):
        return "-"


def _base(tags: VersionTags) -> str:
    name = tags.base_name or "?"
    pin = tags.base_pin
    return f"{name} @{pin[:12]}" if pin else name
