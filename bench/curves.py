"""What ASHA's rungs see: the learning curves of searches that ran every trial to the end, and
an ASHA replay on them with a chosen rung metric.

A bench run with ``keep_workdir: true`` keeps each search's MLflow store. For the searches
without early stopping there (``autopeft-lora-fifo``, ``random``), every trial's validation
accuracy and loss at every evaluation is a counterfactual for ASHA: this module feeds those
reports, trial after trial, to autopeft's own scheduler (``_asha.BootstrappedASHA``) and reports
which trials it would have stopped and whether the trial that ended best survived, next to how
well each metric at the first rungs ranks the trials by their final accuracy.

    python -m bench.curves bench/results/tmp/<run>/ [--out curves.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: Validation metrics read from each trial's run, and which way is better.
METRICS = {"accuracy": "max", "loss": "min"}


def read_curves(tracking_uri: str) -> list[dict[str, Any]]:
    """Each trial run of the store (trials are nested runs), in start order: its name and
    {metric: {step: value}} for the metrics in ``METRICS``."""
    from mlflow import MlflowClient

    from autopeft.schema import RunTag, TrialRunTags

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`{RunTag.TRIAL_ID}` != ''", max_results=10000,
                              order_by=["attributes.start_time ASC"])
    return [{"trial": TrialRunTags.from_tags(run.data.tags).trial_id or run.info.run_id,
             **{m: {h.step: h.value for h in client.get_metric_history(run.info.run_id, m)} for m in METRICS}}
            for run in runs]


def replay(curves: list[dict[str, Any]], metric: str, *, grace_period: int = 1, reduction_factor: float = 2.0,
           bootstrap_count: int = 2) -> dict[int, int]:
    """Run autopeft's ASHA over ``curves`` one trial after another (as a search with one trial
    at a time does) comparing rungs on ``metric``; {index of a stopped trial: step it stopped at}."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from autopeft.study.scheduler import BootstrappedASHA

    steps = sorted({s for c in curves for s in c[metric]})
    scheduler = BootstrappedASHA(bootstrap_count=bootstrap_count, time_attr="training_iteration", metric=metric,
                                 mode=METRICS[metric], max_t=len(steps), grace_period=grace_period,
                                 reduction_factor=reduction_factor)
    stopped: dict[int, int] = {}
    for index, curve in enumerate(curves):
        trial = Trial("__fake", stub=True)
        scheduler.on_trial_add(None, trial)  # type: ignore[arg-type]  # ASHA never reads the controller
        for iteration, step in enumerate(steps, start=1):
            if step not in curve[metric]:
                break
            result = {"training_iteration": iteration, metric: curve[metric][step]}
            decision = scheduler.on_trial_result(None, trial, result)
            if decision == TrialScheduler.STOP and iteration < len(steps):  # at the last step: done, not stopped
                stopped[index] = step
                break
    return stopped


def rank_agreement(curves: list[dict[str, Any]], metric: str, step: int) -> float:
    """Spearman correlation between ``metric`` at ``step`` (signed so higher is better) and the
    final accuracy, over the trials that reached the last step."""
    from scipy.stats import spearmanr

    final = max(s for c in curves for s in c["accuracy"])
    full = [c for c in curves if final in c["accuracy"] and step in c[metric]]
    sign = 1.0 if METRICS[metric] == "max" else -1.0
    return float(spearmanr([sign * c[metric][step] for c in full], [c["accuracy"][final] for c in full]).statistic)


def analyse(curves: list[dict[str, Any]], **asha: Any) -> dict[str, Any]:
    final = max(s for c in curves for s in c["accuracy"])
    finals = [c["accuracy"].get(final) for c in curves]
    best = int(np.nanargmax([f if f is not None else np.nan for f in finals]))
    steps = sorted({s for c in curves for s in c["accuracy"]})
    out: dict[str, Any] = {"trials": len(curves), "best_final_accuracy": finals[best],
                           "rank_agreement": {m: {str(s): rank_agreement(curves, m, s) for s in steps[:-1]}
                                              for m in METRICS}}
    for metric in METRICS:
        stopped = replay(curves, metric, **asha)
        out[f"rungs_on_{metric}"] = {
            "stopped": {curves[i]["trial"]: {"at_step": s, "final_accuracy": finals[i]} for i, s in stopped.items()},
            "best_trial_kept": best not in stopped,
            "steps_used": sum(stopped.get(i, final) for i in range(len(curves))),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.curves", description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", help="a kept bench work folder (<out>/tmp/<run>/)")
    p.add_argument("--methods", default="autopeft-lora-fifo,random", help="searches without early stopping")
    p.add_argument("--out", help="write the analysis as JSON here")
    args = p.parse_args(argv)
    methods = args.methods.split(",")
    result = {}
    for db in sorted(Path(args.workdir).glob("*/mlflow.db")):
        if any(db.parent.name.endswith(f"-{m}") for m in methods):
            result[db.parent.name] = analyse(read_curves(f"sqlite:///{db.resolve()}"))
    if not result:
        print(f"no kept searches of {', '.join(methods)} under {args.workdir}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
