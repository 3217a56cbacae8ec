"""One exception tree for everything autopeft raises on purpose.

Errors under :class:`UserInputError` mean the user's input is wrong (exit code 2): they are
raised before any compute starts and name the field, what was expected and what was found.
Everything else under :class:`AutoPeftError` is a runtime failure (exit code 1).
"""

from __future__ import annotations


class AutoPeftError(Exception):
    """Base class of every error autopeft raises on purpose."""


class UserInputError(AutoPeftError):
    """The input is wrong; nothing was computed or recorded."""


class ConfigError(UserInputError):
    """The search config (YAML or flags) is invalid."""


class SpaceError(UserInputError):
    """The search space is invalid, or does not fit the model or task."""


class DataError(UserInputError):
    """The data set cannot be loaded or does not match the config."""


class ModelError(UserInputError):
    """The base model cannot be found or loaded."""


class TrackingError(AutoPeftError):
    """MLflow (tracking store or model registry) failed or is unreachable."""


class SearchError(AutoPeftError):
    """The search ran but could not produce a result (e.g. every trial failed)."""


class RegistryError(UserInputError):
    """A registered model, version or alias that does not exist, or a lifecycle request that
    cannot apply (e.g. nothing to roll back to); nothing was changed."""


class GateRefused(AutoPeftError):
    """A promotion gate refused the candidate; the alias did not move."""


class TrackingUnreachable(UserInputError):
    """The configured MLflow tracking store does not answer (checked before any compute)."""


class StudyCancelled(KeyboardInterrupt):
    """The driver was told to stop (SIGTERM: ``autopeft cancel``, ``ray job stop``, a pod's
    shutdown). A KeyboardInterrupt, so it ends a study the way Ctrl-C does: every run the study
    opened is closed (KILLED), finished trials are kept, and ``autopeft resume`` continues it."""

    def __init__(self, signal_name: str, at: str) -> None:
        super().__init__(f"cancelled ({signal_name} at {at})")
        self.signal_name = signal_name
        self.at = at


class ClusterError(UserInputError):
    """The cluster's job service cannot be used as asked: no address, an address where nothing
    answers, a missing or refused token, an unknown job, inputs that cannot travel."""


class JobError(AutoPeftError):
    """The cluster's job service failed a request it accepted (a server-side error)."""
