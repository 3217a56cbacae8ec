"""A real search over the ready space ``all-adapters`` on the packaged MiniLM and an SST-2 slice:
the families MiniLM cannot run are excluded before Ray starts, and several different families
train, report and are recorded side by side in one study."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from autopeft.config import resolve
from autopeft.study import prepare, run_search

from ..conftest import write_config

pytestmark = pytest.mark.integration


def test_search_over_all_adapters(tmp_path: Path, sst2_slice, tracking_uri, minilm_path, local_ray):
    config = write_config(
        tmp_path, train=sst2_slice["train"], test=sst2_slice["test"], study_name="all-adapters",
        data__validation_fraction=0.2, space="all-adapters",
        # a few steps per trial: this checks that the families run together, not how well
        budget={"trials": 6, "max_steps": 4, "eval_interval": 4, "cpus_per_trial": 2, "eval_batch_size": 96},
        pruning={"enabled": False},
        tracking={"uri": tracking_uri, "experiment": "all-adapters", "registered_model": "all-adapters-model"})
    prepared = prepare(resolve(config))
    # BERT-style MiniLM takes no past_key_values: prefix tuning is excluded before the search
    assert "prefix_tuning" not in prepared.resolved.space.adapters
    assert len(prepared.resolved.space.adapters) == 24

    result = run_search(prepared)
    families = {t.params["adapter"] for t in result.trials}
    outcomes = {t.params["adapter"]: t.outcome for t in result.trials}
    print("families run:", sorted(families))
    assert len(families) >= 4, families
    assert all(o == "COMPLETE" for o in outcomes.values()), outcomes

    client = MlflowClient(tracking_uri)
    children = client.search_runs([client.get_experiment_by_name("all-adapters").experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert {r.data.params.get("adapter") for r in children} == families
    assert all(r.data.metrics["trainable_params"] > 0 for r in children)
    assert str(client.get_model_version_by_alias("all-adapters-model", "candidate").version) == result.model_version
