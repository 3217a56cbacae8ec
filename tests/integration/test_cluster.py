"""A search on a two-node Ray cluster survives losing the node that runs a trial, and trains its
final adapter on a worker node, not on the driver's head node."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from autopeft.config import resolve
from autopeft.study import prepare, run_search

from ..conftest import write_config

pytestmark = pytest.mark.integration


def _trial_runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("cluster")
    if exp is None:
        return []
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("autopeft.run_kind") == "trial"]


def test_node_loss_retries_the_trial_from_its_checkpoint(tmp_path: Path, sst2_slice, minilm_path, tracking_uri,
                                                         no_shared_ray):
    import ray
    from ray.cluster_utils import Cluster

    # The head runs no trials (0 CPUs), so trials land on the worker node we then remove;
    # a replacement node joins, as an autoscaler would bring one after a preemption.
    # The GCS checks each node every second and declares it dead after 3 missed checks (Ray's
    # defaults: every 3 s, 5 misses, after 5 s): the test waits seconds, not tens of seconds, for
    # what a cluster's GCS does the same way.
    health = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 1000,
              "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "_system_config": health})
    head_id = cluster.head_node.node_id
    worker = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    uri = tracking_uri
    # trials of 30 steps: the node dies after the first report (step 10), two more follow the restart
    path = write_config(
        tmp_path, train=sst2_slice["train"], study_name="cluster",
        data__max_train_examples=240, data__max_eval_examples=80,
        space={"adapters": {"lora": {"r": 4}}, "batch_size": 16},
        budget={"trials": 2, "max_steps": 30, "eval_interval": 10, "cpus_per_trial": 2, "max_failures": 2,
                "final_steps": 10},
        pruning={"enabled": False},
        tracking={"uri": uri, "experiment": "cluster", "registered_model": "cluster-model"},
        backend={"address": cluster.address})
    outcome: dict = {}

    def search() -> None:
        try:
            outcome["result"] = run_search(prepare(resolve(path)))
        except BaseException as exc:  # surfaced by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=search)
    try:
        thread.start()
        client = MlflowClient(uri)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            runs = _trial_runs(client)
            if runs and client.get_metric_history(runs[0].info.run_id, "accuracy"):
                interrupted = runs[0].info.run_id
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no trial reported within 300 s: {outcome}")
        cluster.remove_node(worker, allow_graceful=False)  # the node dies mid-trial
        removed_ms = time.time() * 1000
        replacement = cluster.add_node(num_cpus=2)
        thread.join(timeout=600)
        assert not thread.is_alive(), "the search did not finish after the node was replaced"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()

    assert "error" not in outcome, repr(outcome.get("error"))
    result = outcome["result"]
    assert len(result.trials) == 2 and all(t.outcome == "COMPLETE" for t in result.trials)
    assert result.model_version == "1"
    runs = _trial_runs(MlflowClient(uri))
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    # the interrupted trial continued from its checkpoint: its curve has each step once, in order
    for run in runs:
        steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "accuracy")]
        assert steps == [10, 20, 30], steps
    # and it was in flight when the node died: it had reported before, and ended after
    curve = sorted(MlflowClient(uri).get_metric_history(interrupted, "accuracy"), key=lambda m: m.step)
    assert curve[0].timestamp < removed_ms < curve[-1].timestamp, (removed_ms, [m.timestamp for m in curve])
    # the final training ran as a Ray task with a trial's resources: on the worker node (the head,
    # where the driver runs, has no CPUs to give), and its tag says where
    assert result.final_node_id == replacement.node_id != head_id
    parent = MlflowClient(uri).get_run(result.parent_run_id)
    assert parent.data.tags["autopeft.final_training_node"] == replacement.node_id
    # its curve is logged whether its adapter or (a 10-step training rarely beats a 30-step trial)
    # the trial's was registered
    assert [m.step for m in MlflowClient(uri).get_metric_history(result.parent_run_id, "final_accuracy")] == [10]
