"""What the integration tests share: one local Ray; one finished study that every test which
only reads a study (end to end, multi-objective, report, final training, warm start) reads; and
twenty short trials of a tiny model, read by the memory test and single-objective ASHA's.

Ray starts once per test process (``local_ray``) and stays up across the tests that use it; a
test that needs its own Ray or cluster (``no_shared_ray``) shuts it down first, and the next user
starts it again (tests/conftest.py orders them, and groups the tests for parallel runs). Fault
tests run their own searches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from tests.conftest import REPO, make_config, new_mlflow_store, write_sst2_slice, write_yaml

HANDSET_PORTFOLIO = REPO / "tests" / "fixtures" / "handset-portfolio.yaml"

# --------------------------------------------------------------------------- Ray


def _start_local_ray() -> None:
    from autopeft.study import init_ray

    init_ray(None)  # a no-op when it is running


def _stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="session")
def _ray_stopped_at_exit() -> Iterator[None]:
    yield
    _stop_ray()


@pytest.fixture
def local_ray(_ray_stopped_at_exit) -> None:
    """Local Ray in this process, shared with the tests before and after (run_search leaves a
    Ray it did not start running)."""
    _start_local_ray()


@pytest.fixture
def no_shared_ray() -> Iterator[None]:
    """For a test that starts its own Ray (a cluster, or workers that need its environment): the
    shared one is shut down before it, and whatever it started after it."""
    _stop_ray()
    yield
    _stop_ray()


# --------------------------------------------------------------------------- the finished study

STUDY = "finished"
MODEL = "finished-model"
#: LoRA on all linear layers of MiniLM is ~1.4% trainable: over; q/v LoRA and IA3 are under
LIMIT = 0.005
WARM_FILE_CONFIG = {"adapter": "lora", "lora.r": 4, "placement.layers": "last-2", "placement.roles": ["query", "value"],
                    "learning_rate": 2e-3}
TRIALS, MAX_STEPS, EVAL_INTERVAL, FINAL_STEPS = 6, 20, 10, 60
MAX_LENGTH = 32


@dataclass
class FinishedStudy:
    """A study run once per session; tests read it and change nothing in it."""

    prepared: Any  # autopeft.study.Prepared
    result: Any  # autopeft.study.SearchResult
    uri: str
    folder: Path

    @property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


def finished_study_config(folder: Path, data: dict[str, Path], warm: Path) -> dict:
    """The shared study: a real search (Ray Tune + Optuna NSGA-II + ASHA on validation loss +
    MLflow + peft on MiniLM and an SST-2 slice) with two objectives (accuracy vs trainable
    share), a sampler constraint, warm start from a file and the (hand-set) portfolio, knee selection, a test
    set and a final training longer than the trials."""
    return make_config(
        folder, train=data["train"], test=data["test"], study_name=STUDY,
        model={"name_or_path": "minilm", "max_length": MAX_LENGTH},
        data__validation_fraction=0.25,
        space={
            # IA3 with its own learning-rate range (the hand-set portfolio's IA3 config at 1e-2 fits it)
            "adapters": {"lora": {"r": {"choices": [4, 8]}, "alpha": {"choices": [8, 16]}},
                         "ia3": {"learning_rate": {"low": 3e-3, "high": 3e-2, "log": True}}},
            "placement": {"layers": {"choices": ["all", "last-2"]},
                          "roles": {"choices": [["query", "value"], "all-linear"]}},
            "learning_rate": {"low": 1e-4, "high": 5e-3, "log": True},
            "batch_size": 16,
        },
        objectives=[{"metric": "accuracy", "mode": "max"}, {"metric": "trainable_share", "mode": "min"}],
        constraints={"max_trainable_share": LIMIT},
        sampler={"name": "nsga2", "population_size": 4},
        selection={"policy": "knee"},
        warm_start={"sources": [str(warm)], "prior_share": 0.5,
                    "prior_max_trials": 3},  # 3 of the 6 trials: all the portfolio that fits
        budget={"trials": TRIALS, "max_steps": MAX_STEPS, "eval_interval": EVAL_INTERVAL, "cpus_per_trial": 2,
                "final_steps": FINAL_STEPS},
        # rungs compare validation loss (the objectives stay accuracy and share)
        pruning={"grace_period": 1, "reduction_factor": 2, "metric": "loss"},
        tracking__experiment=STUDY, tracking__registered_model=MODEL,
    )


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory, glue_dir, minilm_path, mlflow_db_template,
                   _ray_stopped_at_exit) -> FinishedStudy:
    from autopeft.config import resolve
    from autopeft.study import prepare, run_search, warmstart

    folder = tmp_path_factory.mktemp("finished-study")
    new_mlflow_store(mlflow_db_template, folder / "mlflow.db")
    data = write_sst2_slice(glue_dir, folder)
    warm = folder / "warm.yaml"
    warm.write_text(yaml.safe_dump({"configs": [WARM_FILE_CONFIG, {"adapter": "vera"}]}))  # vera: not in this space
    config = finished_study_config(folder, data, warm)
    _start_local_ray()
    # the portfolio fixed to the hand-set one (tests/fixtures/handset-portfolio.yaml), so the tests
    # can name its entries whatever the learned portfolio holds; the driver collects it in prepare()
    with mock.patch.object(warmstart, "_builtin", lambda: warmstart.load_portfolio(HANDSET_PORTFOLIO)):
        prepared = prepare(resolve(write_yaml(folder / "search.yaml", config)))
    result = run_search(prepared)
    return FinishedStudy(prepared=prepared, result=result, uri=config["tracking"]["uri"], folder=folder)


# --------------------------------------------------------------------------- twenty short trials

TWENTY_TRIALS, TWENTY_MAX_STEPS, TWENTY_EVAL_INTERVAL = 20, 10, 5


def tiny_bert_dir(directory: Path, tokenizer_from: str) -> Path:
    """A 2-layer random BERT with MiniLM's tokenizer: its trials take well under a second."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tokenizer_from).save_pretrained(directory)
    return directory


@dataclass
class TwentyTrials:
    prepared: Any  # autopeft.study.Prepared
    result: Any  # autopeft.study.SearchResult
    uri: str


@pytest.fixture(scope="session")
def twenty_trials(tmp_path_factory, glue_dir, minilm_path, mlflow_db_template,
                  _ray_stopped_at_exit) -> TwentyTrials:
    """Twenty trials of a tiny random BERT on an SST-2 slice, one at a time: a single-objective
    study (TPE, so Optuna keeps each trial's curve) with ASHA on validation loss (grace 1, factor
    2; two reports a trial, so its one rung is at the first). Its tests read what the worker
    reported of its memory and which trials ASHA stopped."""
    from autopeft.config import resolve
    from autopeft.study import prepare, run_search

    folder = tmp_path_factory.mktemp("twenty-trials")
    uri = new_mlflow_store(mlflow_db_template, folder / "mlflow.db")
    data = write_sst2_slice(glue_dir, folder)
    model = tiny_bert_dir(folder / "tiny-bert", minilm_path)
    config = make_config(
        folder, train=data["train"], study_name="twenty", model__name_or_path=str(model),
        data__max_train_examples=240, data__max_eval_examples=80,
        space__adapters={"lora": {"r": {"choices": [4, 8, 16]}}, "dora": {}, "ia3": {}},
        objective={"metric": "accuracy", "mode": "max"},
        budget={"trials": TWENTY_TRIALS, "max_steps": TWENTY_MAX_STEPS, "eval_interval": TWENTY_EVAL_INTERVAL,
                "cpus_per_trial": 2},
        pruning={"grace_period": 1, "reduction_factor": 2, "metric": "loss"},
        tracking__experiment="twenty", tracking__registered_model="twenty-model")
    _start_local_ray()
    prepared = prepare(resolve(write_yaml(folder / "search.yaml", config)))
    return TwentyTrials(prepared=prepared, result=run_search(prepared), uri=uri)
