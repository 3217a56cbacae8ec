"""A store written by the previous release stays readable: its registered version lists, reads,
promotes and predicts with the current code.

``tests/fixtures/legacy_store/store.tar.gz`` holds an MLflow store (SQLite + artifacts) in which
autopeft 8d8b0c6 (the release before the layered layout and ``autopeft.schema``) ran a
two-trial search and registered version 1 of ``legacy-sentiment``; ``build_fixture.py`` beside
it rebuilds it. MLflow records absolute artifact locations, so the test unpacks a copy into its
own folder and rewrites the folder the store was built in (``origin.json``) to that copy.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from autopeft.registry.versions import Registry
from autopeft.schema import Alias, Outcome, PromotionTags, RunKind, StudyRunTags, TrialRunTags, VersionTags

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_store" / "store.tar.gz"
REPO = Path(__file__).resolve().parents[2]
SENTENCES = ["a warm, funny and moving film", "dull, predictable and far too long"]


def relocate(store: Path, origin: str) -> None:
    """Rewrite every absolute path under ``origin`` that MLflow recorded (artifact locations of
    experiments, runs, logged models and model versions; tag values) to ``store``: every text
    value of every table of the SQLite store, and the logged models' ``MLmodel`` files."""
    new = str(store)
    with sqlite3.connect(store / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                db.execute(f'UPDATE "{table}" SET "{column}" = REPLACE("{column}", ?, ?) '
                           f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0', (origin, new, origin))
    for mlmodel in store.glob("mlartifacts/**/MLmodel"):
        mlmodel.write_text(mlmodel.read_text().replace(origin, new))


@pytest.fixture
def legacy(tmp_path: Path) -> dict[str, str]:
    """A relocated copy of the store: its URI and what origin.json says about it."""
    store = tmp_path / "store"
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(store, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # type: ignore[arg-type]
    origin = json.loads((store / "origin.json").read_text())
    relocate(store, origin["root"])
    with sqlite3.connect(store / "mlflow.db") as db:  # nothing left pointing at the old folder
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                              ("model_versions", "storage_location"), ("logged_models", "artifact_location")):
            assert not db.execute(f"SELECT 1 FROM {table} WHERE instr({column}, ?) > 0", (origin["root"],)).fetchall()
    return {**origin, "uri": f"sqlite:///{store / 'mlflow.db'}"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m autopeft.cli ARGS`` in a fresh process (wide terminal, so tables do not fold)."""
    env = {**os.environ, "COLUMNS": "300", "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "autopeft.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_previous_release_wrote_the_fixture():
    with tarfile.open(FIXTURE) as tar:
        names = tar.getnames()
        origin = json.loads(tar.extractfile("origin.json").read())  # type: ignore[union-attr]
    assert origin["autopeft_commit"].startswith("8d8b0c6")
    assert "mlflow.db" in names and any(n.endswith("/artifacts/adapter/autopeft.json") for n in names)
    assert FIXTURE.stat().st_size < 3_000_000


def test_models_lists_the_legacy_version(legacy, tmp_path):
    listed = cli("models", "--tracking-uri", legacy["uri"], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert legacy["registered_model"] in listed.stdout and "candidate→v1" in listed.stdout, listed.stdout
    versions = cli("models", legacy["registered_model"], "--tracking-uri", legacy["uri"], cwd=tmp_path)
    assert versions.returncode == 0, versions.stderr
    row = next(line for line in versions.stdout.splitlines() if "legacy-study" in line)
    for cell in ("candidate", "lora", "0.5625", "minilm @953f9c0d4634"):  # family, test accuracy, base model pin
        assert cell in row, versions.stdout


def test_schema_reads_the_legacy_tags(legacy):
    client = MlflowClient(tracking_uri=legacy["uri"], registry_uri=legacy["uri"])
    version = client.get_model_version(legacy["registered_model"], legacy["version"])
    tags = VersionTags.from_tags(version.tags)
    assert Registry.open(legacy["uri"]).lineage(version) == tags  # the reader: the tags alone, no lineage.json
    assert (tags.study, tags.family, tags.metric, tags.mode) == (legacy["study"], "lora", "accuracy", "max")
    assert tags.trial_id and tags.trial_run_id and tags.parent_run_id
    assert tags.base_model is not None and tags.base_model["name_or_path"] == "minilm"  # JSON on a version
    assert tags.base_name == "minilm" and tags.base_model_config_sha256 == tags.base_model["config_sha256"]
    assert tags.test_metric == pytest.approx(0.5625) and tags.val_metric is not None
    assert tags.test_fingerprint and tags.data_fingerprint and tags.split_sizes == {"test": 32, "train": 64,
                                                                                    "validation": 32}
    assert tags.params is not None and tags.params["adapter"] == "lora" and tags.params["lora.r"] == 4
    assert tags.trainable_params and 0 < (tags.trainable_share or 0) < 0.01 and tags.final_steps is None
    assert tags.adapter_config is not None and tags.adapter_config["peft_type"] == "LORA"
    assert tags.registered_at and tags.space_hash

    parent = client.get_run(tags.parent_run_id)
    study = StudyRunTags.from_tags(parent.data.tags)
    assert (study.study, study.kind, study.base_model) == (legacy["study"], RunKind.STUDY, "minilm")  # plain name
    assert study.best_trial_id == tags.trial_id and study.best_trial_run_id == tags.trial_run_id
    assert study.pareto_axes == [("accuracy", "max"), ("trainable_share", "min")]
    trial = TrialRunTags.from_tags(client.get_run(tags.trial_run_id).data.tags)
    assert (trial.trial_id, trial.kind, trial.outcome, trial.parent_run_id) == (
        tags.trial_id, RunKind.TRIAL, Outcome.COMPLETE, tags.parent_run_id)


def test_promote_the_legacy_version(legacy):
    from typer.testing import CliRunner

    from autopeft.cli.app import app

    name = legacy["registered_model"]
    result = CliRunner().invoke(app, ["promote", name, "--min-metric", "0.5", "--reason", "legacy store",
                                      "--tracking-uri", legacy["uri"]])
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    assert "test accuracy 0.5625 meets the threshold 0.5000" in text, text  # the gate read the recorded metric
    registry = Registry.open(legacy["uri"])
    production = registry.by_alias(name, Alias.PRODUCTION)
    assert production is not None and str(production.version) == "1"
    recorded = PromotionTags.from_tags(production.tags, Alias.PRODUCTION)
    assert (recorded.action, recorded.previous, recorded.forced, recorded.reason) == ("promote", "", False,
                                                                                      "legacy store")
    assert [(e.action, e.version) for e in registry.history(name, Alias.PRODUCTION)] == [("promote", "1")]


def test_the_legacy_adapter_predicts(legacy, tmp_path, minilm_path):
    import mlflow
    import torch

    from autopeft.engine.predictor import AdapterPredictor
    from autopeft.registry.versions import mlflow_uris

    name = legacy["registered_model"]
    adapter = Registry.open(legacy["uri"]).download(name, legacy["version"], tmp_path / "download")
    predictor = AdapterPredictor.load(adapter, device=torch.device("cpu"))
    assert predictor.info.study == legacy["study"] and predictor.info.label_names == ["negative", "positive"]
    frame = pd.DataFrame({"sentence": SENTENCES})
    labels = predictor.predict_frame(frame)["label"].tolist()
    assert set(labels) <= {"negative", "positive"} and len(labels) == 2

    with mlflow_uris(legacy["uri"]):  # the code the old release logged, run by MLflow
        model = mlflow.pyfunc.load_model(f"models:/{name}@{Alias.CANDIDATE}")
    assert model.predict(frame)["label"].tolist() == labels


def test_the_current_code_registers_the_legacy_adapter_again(legacy, tmp_path, minilm_path):
    """Registered by the current code (its models-from-code entry file), the same adapter loads by
    alias through pyfunc, and the lineage read back (now from lineage.json and a short summary of
    tags) is the one the old version's tags held."""
    import mlflow

    from autopeft.engine.predictor import AdapterPredictor
    from autopeft.registry.tracking import connect
    from autopeft.registry.versions import PYFUNC_ENTRY, mlflow_uris, register_adapter, signature
    from autopeft.schema import VersionSummary

    old = Registry.open(legacy["uri"])
    adapter = old.download(legacy["registered_model"], legacy["version"], tmp_path / "download")
    old_version = old.version(legacy["registered_model"], legacy["version"])
    (tmp_path / "new").mkdir()
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    client, experiment = connect(uri, "again")
    run = client.create_run(experiment)
    version = register_adapter(client, tracking_uri=uri, run_id=run.info.run_id, adapter_dir=adapter,
                               registered_model="again", tags=old.lineage(old_version),
                               model_signature=signature(["sentence"], [("label", "string"), ("score", "double")]))
    new_tags = {k: v for k, v in version.tags.items() if k.startswith("autopeft.")}
    assert set(new_tags) <= set(VersionSummary.keys().values()) and all(0 < len(v) < 100 for v in new_tags.values())
    assert new_tags["autopeft.adapter"].startswith("lora r=4 alpha=8") and new_tags["autopeft.test_metric"] == "0.5625"
    same = [*VersionTags.SEARCH_FIELDS, "base_model_name", "base_model_path", "base_model_config_sha256",
            "adapter_config", "space_hash", "registered_at", "registered_by"]
    new_lineage, old_lineage = Registry.open(uri).lineage(version), old.lineage(old_version)
    assert {f: getattr(new_lineage, f) for f in same} == {f: getattr(old_lineage, f) for f in same}
    assert "study `legacy-study`" in version.description and "test accuracy 0.5625" in version.description

    with mlflow_uris(uri):
        model = mlflow.pyfunc.load_model(f"models:/again@{Alias.CANDIDATE}")
        local = Path(mlflow.artifacts.download_artifacts(f"models:/again@{Alias.CANDIDATE}",
                                                         dst_path=str(tmp_path / "logged")))
    assert (local / PYFUNC_ENTRY.name).is_file()  # the entry file, not the AdapterPyfunc module
    frame = pd.DataFrame({"sentence": SENTENCES})
    expected = AdapterPredictor.load(adapter).predict_frame(frame)["label"].tolist()
    assert model.predict(frame)["label"].tolist() == expected
