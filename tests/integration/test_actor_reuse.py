"""Trials that share a worker (Tune's ``reuse_actors``, which the study turns on) and take longer
than Tune's default 2 s to return after Tune stopped them still hand the worker on: the next
trial runs, the search ends. Real Ray Tune and Optuna on the local Ray; the trainable does what
``run_trial`` does after its last report (clean-up), only longer."""

from __future__ import annotations

import time

import pytest

from autopeft import _compat

pytestmark = pytest.mark.integration

#: Longer than Tune's default wait (2 s) for a reused worker's last trial to return.
CLEAN_UP_S = 4.0


def _slow_to_return(config: dict) -> None:
    from ray import tune

    _compat.wait_for_trial_threads()  # what run_trial does first
    try:
        tune.report({"score": float(config["x"])})
    finally:
        # run_trial's clean-up (release_memory), on a slow machine: it runs when Tune stops the trial,
        # which ends the report call, while the next trial already waits for the worker
        time.sleep(CLEAN_UP_S)


@pytest.mark.timeout(180)  # before the fix Tune waited for the next trial forever: fail in minutes, with the stack
def test_a_trial_slow_to_return_hands_its_worker_to_the_next_trial(local_ray, tmp_path) -> None:
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuner = tune.Tuner(
        tune.with_resources(_slow_to_return, {"cpu": 1}),
        param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(search_alg=OptunaSearch(metric="score", mode="max", seed=0), num_samples=3,
                                    max_concurrent_trials=1, reuse_actors=True),
        # stopped at its report, as ASHA stops a trial at a rung or its last step: the function is still
        # running then, and the next trial's reset of the worker waits for it
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="reuse", verbose=0,
                                  stop={"training_iteration": 1}),
    )
    grid = tuner.fit()
    assert len(grid) == 3
    assert not grid.errors, [str(e)[:200] for e in grid.errors]
    assert all(r.metrics and "score" in r.metrics for r in grid)
