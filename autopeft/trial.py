"""One trial as a Ray Tune function trainable: build, train, report. No orchestration here.

Each report carries the validation metrics and a checkpoint (adapter weights plus optimizer
state), so the scheduler can stop the trial at any report, Ray can restart it from the last
one, and the driver can register the adapter of the best trial without retraining it.
"""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path
from typing import Any

import torch

from autopeft import _faults
from autopeft.data import TokenizedData
from autopeft.training import (
    StudySpec,
    TrainState,
    build_adapter,
    pick_device,
    adapter_size_mb,
    restore_checkpoint,
    save_checkpoint,
    train,
)


def run_trial(config: dict[str, Any], *, spec: StudySpec, data: TokenizedData) -> None:
    """The trainable Ray Tune runs for each sampled ``config``."""
    from ray import tune

    context = tune.get_context()
    cpus = context.get_trial_resources().required_resources.get("CPU", 1) if context else 1
    torch.set_num_threads(max(1, int(cpus)))  # match torch's threads to the trial's CPU share
    device, amp_dtype = pick_device()

    _faults.maybe_raise(config)
    built = build_adapter(spec, config)
    state = TrainState()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # Ray restarted this trial: continue where it stopped
        with checkpoint.as_directory() as directory:
            state = restore_checkpoint(built, Path(directory))

    def report(metrics: dict[str, Any], current: TrainState) -> None:
        metrics = {**metrics, "family": built.family, "num_target_modules": len(built.module_names)}
        with tempfile.TemporaryDirectory(prefix="autopeft-ckpt-") as directory:
            save_checkpoint(built, current, Path(directory))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    try:
        train(built, spec, data, config, on_eval=report, state=state, device=device, amp_dtype=amp_dtype)
    finally:
        # Trials may share a worker process (actor reuse): free the model and cached blocks so
        # memory does not grow from trial to trial.
        del built
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            metrics["adapter_size_mb"] = adapter_size_mb(Path(directory))  # measured on disk, not estimated
