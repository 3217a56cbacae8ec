"""What runs in Ray workers: one trial as a Ray Tune function trainable (build, train, report),
and the final training of the selected config as a Ray task. No orchestration here.

Each report carries the validation metrics and a checkpoint (adapter weights plus optimizer
state), so the scheduler can stop the trial at any report, Ray can restart it from the last
one, and the driver can register the adapter of the best trial without retraining it.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from autopeft import _compat
from autopeft.data import TokenizedData
from autopeft.engine.memory import release_memory
from autopeft.engine.training import (
    BestWeights,
    StudySpec,
    TrainState,
    TrialDiverged,
    adapter_size_mb,
    build_adapter,
    checkpoint_step,
    pick_device,
    restore_checkpoint,
    restore_weights,
    save_checkpoint,
    train,
)


def run_trial(config: dict[str, Any], *, spec: StudySpec, data: TokenizedData) -> None:
    """The trainable Ray Tune runs for each sampled ``config``."""
    _compat.wait_for_trial_threads()  # the next trial on this worker waits for this one's clean-up
    try:
        _train_and_report(config, spec, data)
    finally:
        # Trials share worker processes (actor reuse): once the trial's frame is gone, free its
        # model and optimizer for good so memory does not grow per trial.
        release_memory()


def _train_and_report(config: dict[str, Any], spec: StudySpec, data: TokenizedData) -> None:
    # deferred: Ray takes seconds to import; imported in the code that runs on it
    from ray import tune

    setup_started = time.perf_counter()
    context = tune.get_context()
    cpus = context.get_trial_resources().required_resources.get("CPU", 1) if context else 1
    torch.set_num_threads(max(1, int(cpus)))  # match torch's threads to the trial's CPU share
    device, amp_dtype = pick_device()

    if spec.faults is not None:
        spec.faults.maybe_raise(config)
    built = build_adapter(spec, config)
    state = TrainState()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # Ray restarted this trial: continue where it stopped
        with checkpoint.as_directory() as directory:
            state = restore_checkpoint(built, Path(directory))

    def report(metrics: dict[str, Any], current: TrainState) -> None:
        metrics = {**metrics, "family": built.family, "num_target_modules": len(built.module_names),
                   # the worker's resident memory: a search whose trials share a worker shows
                   # here whether memory grows from trial to trial
                   "worker_pid": os.getpid(), "worker_rss_mb": psutil.Process().memory_info().rss / 2**20}
        with tempfile.TemporaryDirectory(prefix="autopeft-ckpt-") as directory:
            save_checkpoint(built, current, Path(directory))
            metrics["adapter_size_mb"] = adapter_size_mb(Path(directory))  # measured on disk, not estimated
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    if state.step >= spec.max_steps and state.history:
        # restored from its final checkpoint (the driver died before recording the end): say so again
        report({**state.history[-1], "final": True}, state)
        return
    train(built, spec, data, config, on_eval=report, state=state, device=device, amp_dtype=amp_dtype,
          setup_started=setup_started)


@dataclass
class FinalTraining:
    """What the final training's Ray task sends back to the driver: its validation curve, the
    trained adapter's peft files (no optimizer state: nothing trains on from it), or why it
    diverged; and where it ran."""

    history: list[dict[str, float]] = field(default_factory=list)
    adapter_files: dict[str, bytes] = field(default_factory=dict)
    #: The evaluation whose weights ``adapter_files`` hold: the best by the study's objective
    #: (``spec.metric``), not necessarily the last; None when no evaluation had a finite value.
    kept_step: int | None = None
    error: str | None = None
    node_id: str = ""
    #: seconds inside the training loop: training steps, and its validation evaluations
    train_time_s: float = 0.0
    eval_time_s: float = 0.0


def train_final(spec: StudySpec, config: dict[str, Any], data: TokenizedData,
                metric_names: tuple[str, ...], start: Any = None) -> FinalTraining:
    """Train ``config`` for ``spec.max_steps`` steps, in a Ray task that holds a trial's
    resources, so it gets the device and CPU share a trial gets (on a cluster: a GPU worker, not
    the driver's host). With ``start`` (a trial's Ray checkpoint) the training continues that
    trial's adapter weights, with a new optimizer and a new learning-rate schedule over its
    steps, on the batches that follow the trial's; without, it starts from the config's initialisation. The adapter sent back holds the
    weights of its best evaluation by ``spec.metric``: a long training at a rate chosen on short
    trials can peak before its end, and the user gets that peak, not the later slide."""
    # deferred: Ray takes seconds to import; imported in the code that runs on it
    import ray

    context = ray.get_runtime_context()
    torch.set_num_threads(max(1, int(context.get_assigned_resources().get("CPU", 1))))
    device, amp_dtype = pick_device()
    out = FinalTraining(node_id=context.get_node_id())

    def record(metrics: dict[str, Any], _state: TrainState) -> None:
        row = {k: float(metrics[k]) for k in (*metric_names, "train_loss") if isinstance(metrics.get(k), (int, float))}
        out.history.append({**row, "step": float(metrics["step"])})
        best.offer(built.model, metrics, int(metrics["step"]))

    if spec.faults is not None:
        spec.faults.maybe_raise(config)
    built = build_adapter(spec, config)
    trial_steps = 0
    if start is not None:
        with start.as_directory() as directory:
            restore_weights(built, Path(directory))  # not its optimizer and schedule: those were the trial's
            trial_steps = checkpoint_step(Path(directory))
    best = BestWeights(spec.metric, spec.mode)
    state = TrainState()
    try:
        train(built, spec, data, config, on_eval=record, state=state, device=device, amp_dtype=amp_dtype,
              data_offset=trial_steps)
    except TrialDiverged as exc:
        out.error = str(exc)
        return out
    finally:
        out.train_time_s, out.eval_time_s = state.train_time_s, state.eval_time_s
    best.restore(built.model)
    out.kept_step = best.step
    with tempfile.TemporaryDirectory(prefix="autopeft-final-") as directory:
        built.model.save_pretrained(directory)
        out.adapter_files = {str(p.relative_to(directory)): p.read_bytes()
                             for p in Path(directory).rglob("*") if p.is_file()}
    return out
