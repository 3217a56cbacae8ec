"""The model lifecycle through a real MLflow tracking server on loopback.

Two short searches register two versions of one model. The second is trained on the same
sentences with every label flipped, so on the true test set it is worse than the first by
construction (not by luck of a short training run): whatever the first learned, the second
learned the opposite. The test checks that precondition explicitly, then: promote the first;
the second is refused (first for comparing different test sets, then on the numbers); --force
moves it and is recorded; rollback restores the first; the production model predicts the same
labels through pyfunc, plain peft, ``mlflow models serve`` and a merged export in plain
transformers.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from autopeft.cli.app import app
from autopeft.config import resolve
from autopeft.registry.versions import Registry
from autopeft.study import prepare, run_search

from ..conftest import write_config
from .mlflow_server import mlflow_server_uri, model_server  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.integration
MODEL = "lifecycle"


def search_yaml(tmp_path: Path, name: str, train: Path, test: Path, uri: str, trials: int) -> Path:
    return write_config(
        tmp_path, f"{name}.yaml", train=train, test=test, study_name=name, data__validation_fraction=0.25,
        space={"adapters": {"lora": {"r": 8}}, "placement": {"layers": "all", "roles": ["query", "value"]},
               "learning_rate": {"low": 3e-3, "high": 6e-3, "log": True}, "batch_size": 16},
        budget={"trials": trials, "max_steps": 20, "eval_interval": 20, "cpus_per_trial": 2},
        pruning={"enabled": False},
        tracking={"uri": uri, "experiment": "lifecycle", "registered_model": MODEL})


def cli(*args: str, uri: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--tracking-uri", uri])
    return result.exit_code, result.output


def production(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(MODEL, "production").version)


def peft_labels(adapter_dir: Path, sentences: list[str]) -> list[str]:
    """Labels from the adapter loaded with plain transformers + peft (no autopeft code)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    meta = json.loads((adapter_dir / "autopeft.json").read_text())
    names = meta["label_names"]
    base = AutoModelForSequenceClassification.from_pretrained(
        meta["base_model"]["reference"]["location"], num_labels=len(names))
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    with torch.no_grad():
        enc = tokenizer(sentences, truncation=True, max_length=meta["max_length"], padding=True, return_tensors="pt")
        return [names[i] for i in model(**enc).logits.argmax(-1).tolist()]


def test_lifecycle_through_a_tracking_server(tmp_path, sst2_slice, minilm_path, mlflow_server_uri, local_ray):  # noqa: F811
    uri = mlflow_server_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    train = pd.read_csv(sst2_slice["train"])
    flipped = train.assign(label=1 - train["label"])
    flipped.to_csv(tmp_path / "flipped.csv", index=False)
    test = pd.read_csv(sst2_slice["test"])
    test.iloc[:120].to_csv(tmp_path / "test-b.csv", index=False)  # another test set: fingerprints differ

    # -- two searches register two versions (the second moves 'candidate'); one trial each keeps
    # the test short: the lifecycle, not the search, is under test here
    first = run_search(prepare(resolve(search_yaml(tmp_path, "lc-good", sst2_slice["train"], sst2_slice["test"],
                                                   uri, trials=1))))
    second = run_search(prepare(resolve(search_yaml(tmp_path, "lc-flipped", tmp_path / "flipped.csv",
                                                    tmp_path / "test-b.csv", uri, trials=1))))
    assert (first.model_version, second.model_version) == ("1", "2")
    assert mlflow.active_run() is None

    # the first version's lineage (its tags summarise it; lineage.json of its logged model has it all)
    lineage = Registry.open(uri).lineage(client.get_model_version(MODEL, "1"), strict=True)
    for field in ("study", "trial_id", "parent_run_id", "base_model_name", "base_model_config_sha256",
                  "data_fingerprint", "split_sizes", "space_hash", "family", "adapter_config", "trainable_params",
                  "val_metric", "test_metric", "version", "registered_at"):
        assert getattr(lineage, field), field
    assert lineage.split_sizes["test"] == len(test)
    if (Path.cwd() / ".git").exists():
        assert len(lineage.git_commit) == 40

    # -- promote the first: no production yet, so only thresholds apply
    code, output = cli("promote", MODEL, "--version", "1", uri=uri)
    assert code == 0, output
    assert production(client) == "1"

    # -- the second was tested on another test set: refuse to compare, exit 2, nothing moves
    code, output = cli("promote", MODEL, "--from", "candidate", uri=uri)
    assert code == 2 and "different test sets" in output and "--test-data" in output, output
    assert production(client) == "1"

    # -- re-evaluated on one test set the flipped-label version is worse: exit 1 with both numbers
    # (the test data named by a URL, as data on a cluster's storage is)
    code, output = cli("promote", MODEL, "--test-data", Path(sst2_slice["test"]).as_uri(), uri=uri)
    assert code == 1, output
    text = " ".join(output.split())
    assert "promote refused" in text and "is worse than production version 1" in text, output
    numbers = [float(x) for x in __import__("re").findall(r"accuracy (\d\.\d{4})", text)]
    assert len(numbers) == 2 and numbers[0] < numbers[1], text  # the precondition, stated
    assert production(client) == "1"

    # -- --force moves it and records why and who held it before (without --test-data the
    # comparison is recorded as not made, rather than made on different test sets)
    code, output = cli("promote", MODEL, "--force", "--reason", "canary needs v2", uri=uri)
    assert code == 0 and "overridden not_worse: not compared" in " ".join(output.split()), output
    assert production(client) == "2"
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["autopeft.production.forced"] == "true"
    assert tags["autopeft.production.reason"] == "canary needs v2"
    assert tags["autopeft.production.previous"] == "1"

    # -- rollback restores the first, recorded likewise
    code, output = cli("rollback", MODEL, "--reason", "canary failed", uri=uri)
    assert code == 0 and "to version 1" in output, output
    assert production(client) == "1"
    history = client.get_registered_model(MODEL).tags
    events = [json.loads(history[k]) for k in sorted(history) if k.startswith("autopeft.history.production.")]
    assert [(e["action"], e["version"], e["previous"]) for e in events] == [
        ("promote", "1", None), ("force", "2", "1"), ("rollback", "1", "2")]
    assert [str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")].count("2") == 1

    code, output = cli("models", MODEL, uri=uri)
    assert code == 0 and "production history: v1 (promote" in output and "(force: canary needs v2" in output, output
    code, output = cli("promote", "no-such-model", uri=uri)
    assert code == 2 and "no registered model named 'no-such-model'" in output

    # -- pyfunc by alias predicts what the plain peft adapter predicts
    sentences = test["sentence"].tolist()[:16]
    frame = pd.DataFrame({"sentence": sentences})
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    pyfunc_labels = mlflow.pyfunc.load_model(f"models:/{MODEL}@production").predict(frame)["label"].tolist()
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}@production", dst_path=str(tmp_path / "dl")))
    assert pyfunc_labels == peft_labels(local / "artifacts" / "adapter", sentences)

    # -- mlflow models serve answers /invocations with the same labels
    with model_server(f"models:/{MODEL}@production", uri, tmp_path / "serve.log") as url:
        body = json.dumps({"dataframe_split": {"columns": ["sentence"], "data": [[s] for s in sentences]}}).encode()
        request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = json.loads(response.read())["predictions"]
    assert [row["label"] for row in served] == pyfunc_labels

    # -- export: the adapter alone, and a merged model plain transformers loads
    code, output = cli("export", f"{MODEL}@production", "--out", str(tmp_path / "adapter-export"), uri=uri)
    assert code == 0, output
    assert (tmp_path / "adapter-export" / "adapter_config.json").is_file()
    code, output = cli("export", f"{MODEL}@production", "--out", str(tmp_path / "merged"), "--merged", uri=uri)
    assert code == 0, output
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    merged = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "merged")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "merged"))
    with torch.no_grad():
        enc = tokenizer(sentences, truncation=True, max_length=32, padding=True, return_tensors="pt")
        ids = merged(**enc).logits.argmax(-1).tolist()
    assert [merged.config.id2label[i] for i in ids] == pyfunc_labels
    assert json.loads((tmp_path / "merged" / "autopeft-export.json").read_text())["version"] == "1"
    assert mlflow.active_run() is None
