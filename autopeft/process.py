"""Process set-up, in one place: what the CLI, the bench and the tests call once at start.

Library calls set no environment variables; whatever a process needs from the environment of
Ray, Tune, MLflow and Hugging Face libraries is set here, before any of them starts. Every
value is a default: a variable the user already set wins.
"""

from __future__ import annotations

import os
import warnings

#: Environment defaults for a process that runs studies. Ray workers inherit them.
PROCESS_ENV: dict[str, str] = {
    # tokenizers' own thread pool deadlocks when a Ray worker forks after it started
    "TOKENIZERS_PARALLELISM": "false",
    # Tune's plain progress output (ours is the live view or the plain-text lines)
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_TRAIN_V2_ENABLED": "0",
    # Tune warns when a snapshot takes long; it is short here and the warning is noise
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Snapshot Tune's experiment state at most a second after any change, so a driver that
    # dies loses at most the trials started in that second (the driver cleans those up).
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Ctrl-C raises KeyboardInterrupt in the driver, which closes every run it opened (KILLED) and
    # ends with exit code 130 (CLI) or the exception (Python). Tune's own SIGINT handler would end
    # the trials quietly and return, and the search would go on to register a half-run study.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}

_configured = False


def configure_process(*, quiet_warnings: bool = True) -> None:
    """Set the environment defaults (``PROCESS_ENV``) and silence library chatter; idempotent."""
    global _configured
    for key, value in PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    if quiet_warnings:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
    _configured = True


def is_configured() -> bool:
    return _configured
