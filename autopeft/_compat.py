"""Every private API of Ray, Optuna, MLflow and transformers that autopeft (its bench included)
relies on, in one place.

Each helper names the attribute it reaches into and the version it was checked against
(``CHECKED``); an upgrade that moves one fails here, at a name that says what broke, instead
of deep inside a study. Nothing else in the package touches a dependency's private names.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# imported here, not deferred: the sampler below subclasses one of its classes
import optuna

#: The versions these helpers were checked against.
CHECKED = {"ray": "2.60.0", "optuna": "5.1.0", "mlflow": "3.17.2", "transformers": "5.24.0",
           "huggingface_hub": "2.4.0", "datasets": "5.2.0"}


# --------------------------------------------------------------------------- Ray Tune

#: Seconds Tune waits, when it reuses a worker for the next trial (``reuse_actors``), for the last
#: trial's function to return (``TUNE_FUNCTION_THREAD_TIMEOUT_S``, read in the worker by
#: ``FunctionTrainable.reset_config``; Tune's default is 2).
TRIAL_THREAD_TIMEOUT_S = 300


def wait_for_trial_threads(timeout_s: int = TRIAL_THREAD_TIMEOUT_S) -> None:
    """Called in the worker as each trial starts: let the next trial that reuses this worker wait
    up to ``timeout_s`` for this one's function to return (a value set in the worker's environment
    already is kept).

    Why: after its last report a trial still removes its checkpoint folder and frees its model
    (``release_memory``); on two busy cores that took more than Tune's 2 s, the reset failed
    ("Could not re-use actor for trial ..."), and Ray Tune 2.60 then left the new trial neither
    running nor ended, the searcher never told of it, and ``Tuner.fit`` waited for a trial forever
    in ``TuneController._update_trial_queue`` (a CI run, session 33: the shared study's set-up
    stopped by pytest-timeout after 900 s with that stack)."""
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(timeout_s))


def asha_bracket_class() -> type:
    """``ray.tune.schedulers.async_hyperband._Bracket``: ASHA's rung book-keeping, whose
    ``cutoff`` the bootstrapped scheduler overrides (Ray offers no hook to pick the class)."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    return _Bracket


def asha_brackets(scheduler: Any) -> list[Any]:
    """``ASHAScheduler._brackets``: the brackets Ray builds in ``__init__``."""
    return list(scheduler._brackets)


def asha_rungs(bracket: Any) -> list[tuple[float, dict[str, float]]]:
    """``_Bracket._rungs``: (milestone, {trial id: signed metric}) per rung, highest milestone first."""
    return list(bracket._rungs)


def asha_trial_bracket(scheduler: Any, trial_id: str) -> Any:
    """``AsyncHyperBandScheduler._trial_info``: the bracket a running trial was assigned to."""
    return scheduler._trial_info.get(trial_id)


def optuna_search_study(searcher: Any) -> optuna.Study:
    """``OptunaSearch._ot_study``: the study Ray's searcher creates once it has a space."""
    return searcher._ot_study


def optuna_search_trials(searcher: Any) -> dict[str, optuna.Trial]:
    """``OptunaSearch._ot_trials``: Ray trial id → the Optuna trial it asked for."""
    return searcher._ot_trials


def optuna_search_completed(searcher: Any) -> set[str]:
    """``OptunaSearch._completed_trials``: Ray trial ids already told to Optuna."""
    return searcher._completed_trials


# --------------------------------------------------------------------------- Optuna


def optuna_trial_id(trial: Any) -> int:
    """``Trial._trial_id`` / ``FrozenTrial._trial_id``: the storage's id of a trial (the public
    ``number`` is per study; the storage API takes this one)."""
    return int(trial._trial_id)


#: The lock types a sampler may hold, by the name of the factory that makes a new one.
_LOCKS: dict[type, str] = {type(threading.Lock()): "Lock", type(threading.RLock()): "RLock"}
_DROPPED_LOCKS = "__autopeft_dropped_locks__"


class LocksRecreatedOnUnpickle:
    """Pickles without the locks an Optuna sampler holds, and makes new ones when unpickled.

    Ray pickles the searcher with its sampler (the tuner's state when a study starts, the
    searcher's snapshot as it runs); Optuna 5.1's GA samplers keep a ``threading.Lock``
    (``BaseGASampler._thread_lock``, guarding a per-process cache of generations) and no
    ``__getstate__``, so an NSGA-II study failed before its first trial. A lock carries no state
    worth keeping across processes: a new one is what the sampler's own ``__init__`` makes."""

    def __getstate__(self) -> dict[str, Any]:
        inherited: Any = super().__getstate__()  # object's: the instance's __dict__
        state = dict(inherited or {})
        dropped = {name: _LOCKS[type(value)] for name, value in state.items() if type(value) in _LOCKS}
        for name in dropped:
            del state[name]
        state[_DROPPED_LOCKS] = dropped
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        dropped = state.pop(_DROPPED_LOCKS, {})
        restore = getattr(super(), "__setstate__", None)
        if restore is not None:
            restore(state)
        else:
            self.__dict__.update(state)
        for name, kind in dropped.items():
            setattr(self, name, getattr(threading, kind)())


class PicklableNSGAIISampler(LocksRecreatedOnUnpickle, optuna.samplers.NSGAIISampler):
    """``optuna.samplers.NSGAIISampler`` that survives Ray's pickling (Ray's ``OptunaSearch.save``
    uses plain pickle, so the class lives here, importable by name)."""


# --------------------------------------------------------------------------- MLflow


@contextmanager
def mlflow_globals_restored() -> Iterator[None]:
    """Restore MLflow's process-wide tracking and registry URIs
    (``mlflow.tracking._tracking_service.utils._tracking_uri`` and
    ``mlflow.tracking._model_registry.utils._registry_uri``), and the environment variables
    ``mlflow.set_*_uri`` exports, to exactly what they were (unset included) after the block."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    env_keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {k: os.environ.get(k) for k in env_keys}
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --------------------------------------------------------------------------- transformers


def trainer_search_trial(trainer: Any) -> Any:
    """``Trainer._trial``: the hyperparameter-search trial a ``Trainer`` is training (an Optuna
    trial under the optuna backend, None outside a search). The bench's ``hf-optuna`` baseline
    scores each trial's model on test from a callback, which Trainer hands no trial."""
    return trainer._trial


# --------------------------------------------------------------------------- Hugging Face Hub


@contextmanager
def hub_offline() -> Iterator[None]:
    """Within the block, this process reads the Hub's cache only, as ``HF_HUB_OFFLINE=1`` would
    have it: ``huggingface_hub.constants.HF_HUB_OFFLINE`` and ``datasets.config.HF_HUB_OFFLINE``,
    which both libraries read from the environment once, at import, are set, then restored."""
    import datasets.config
    from huggingface_hub import constants

    saved = (constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


# --------------------------------------------------------------------------- Ray's state API


#: Held while RAY_API_SERVER_ADDRESS is pinned (the environment is the process's, not a thread's).
#: Reentrant: a client built inside another pin (a state query while a job client is built) must
#: not wait on its own thread; the inner pin restores the outer one on leaving.
_ADDRESS_PIN = threading.RLock()


@contextmanager
def job_service_address_pinned(address: str) -> Iterator[None]:
    """While Ray's job or state client is built: the dashboard at ``address`` is the one it
    reaches. Ray resolves the address they are given in ``ray.dashboard.utils.
    get_address_for_submission_client``, where ``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS``,
    replaces it (as in ``ray.init``): on a cluster's node, where ``RAY_ADDRESS`` names the local
    GCS, ``--address http://other-head:8265`` would reach this node's cluster, or fail. Each
    client resolves its address once, when it is built. The environment is the process's: a lock
    keeps two threads that build clients for different clusters from reading each other's pin."""
    name = "RAY_API_SERVER_ADDRESS"
    with _ADDRESS_PIN:
        before = os.environ.get(name)
        os.environ[name] = address
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


def cluster_resource_total(address: str, name: str, headers: dict[str, str] | None) -> float:
    """The total of resource ``name`` over the cluster's ALIVE nodes, through the dashboard at
    ``address``. ``ray.util.state.list_nodes`` takes no headers (a token-authenticated cluster
    needs them), so this uses its client, ``StateApiClient`` (a DeveloperAPI)."""
    from ray.util.state.api import StateApiClient
    from ray.util.state.common import ListApiOptions, StateResource

    with job_service_address_pinned(address):
        client = StateApiClient(address=address, headers={"Content-Type": "application/json", **(headers or {})})
    nodes: list[Any] = client.list(StateResource.NODES, options=ListApiOptions(detail=True),
                                   raise_on_missing_output=False)
    return float(sum((node.resources_total or {}).get(name, 0.0) for node in nodes if node.state == "ALIVE"))
