"""autopeft from Python: the same study as the CLI, without it.

>>> import autopeft
>>> result = autopeft.search(model="minilm", train="reviews.csv", test="reviews-test.csv", time="20m")
>>> result.model_version                     # registered in MLflow, alias 'candidate'
>>> predictor = autopeft.load("models:/reviews-adapter@candidate", tracking_uri="sqlite:///mlflow.db")
>>> predictor.predict(pd.DataFrame({"sentence": ["a delight from start to finish"]}))
>>> job = autopeft.submit(model="minilm", train="reviews.csv", time="1h", address="http://head:8265",
...                       settings={"tracking.uri": "http://mlflow:5000"})   # a Ray job; returns at once
>>> job.status(), job.wait()

Bad input raises a :class:`~autopeft.errors.UserInputError` before any compute starts, as the
CLI's exit code 2 does; a failed study raises another :class:`~autopeft.errors.AutoPeftError`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autopeft.auto.flow import Overrides, prepare_request
from autopeft.auto.infer import Request
from autopeft.config import parse_duration
from autopeft.engine.predictor import AdapterPredictor
from autopeft.errors import ConfigError, RegistryError
from autopeft.process import configure_process
from autopeft.registry.versions import mlflow_uris
from autopeft.schema import Artifact
from autopeft.service import StudyJob, connect, submit_study
from autopeft.study import SearchResult, run_search


def search(model: str | None = None, train: str | Path | None = None, *, test: str | Path | None = None,
           validation: str | Path | None = None, time: str | float | None = None, label: str | None = None,
           text: Sequence[str] = (), task: str | None = None, config: str | Path | None = None,
           settings: Mapping[str, Any] | None = None, on_line: Callable[[str], None] = print,
           verbose: bool = False) -> SearchResult:
    """Run a study and register its best adapter; returns the result (``model_version``,
    ``best``, ``test_metrics``, ``adapter_dir``, ...).

    Zero-config: ``model`` and ``train`` (plus ``test``, ``time``; ``label``/``text``/``task``
    only where inference cannot tell). Or ``config``: a YAML file, as ``autopeft search --config``.
    ``settings`` overrides config keys by dotted name (``{"budget.trials": 4}``). Each inferred
    choice and the budget's plan go to ``on_line`` (``print`` by default).
    """
    configure_process()
    request, overrides = _inputs(model, train, test, validation, time, label, text, task, config, settings)
    if request is None:
        prepared = prepare_request(config=config, overrides=overrides, say=on_line)
    else:
        prepared = prepare_request(request, overrides=overrides, say=on_line)
    return run_search(prepared, verbose=verbose)


def _inputs(model: str | None, train: str | Path | None, test: str | Path | None, validation: str | Path | None,
            time: str | float | None, label: str | None, text: Sequence[str], task: str | None,
            config: str | Path | None, settings: Mapping[str, Any] | None) -> tuple[Request | None, Overrides]:
    """(the zero-config request, or None with a config file; the overrides) of ``search`` and ``submit``."""
    if time is not None:
        try:
            parse_duration(time)
        except ValueError as exc:
            raise ConfigError(f"time: {exc}") from None
    overrides: Overrides = [(key.split("."), value) for key, value in (settings or {}).items()]
    if config is None:
        return _request(model, train, test, validation, time, label, text, task), overrides
    given = {"model.name_or_path": model, "data.train": train, "data.test": test, "data.validation": validation,
             "budget.time": time}
    return None, overrides + [(key.split("."), str(value)) for key, value in given.items() if value is not None]


def _request(model: str | None, train: str | Path | None, test: str | Path | None, validation: str | Path | None,
             time: str | float | None, label: str | None, text: Sequence[str], task: str | None) -> Request:
    """The zero-config request of ``search`` and ``submit``."""
    if model is None or train is None:
        raise ConfigError(f"{'model' if model is None else 'train'}: expected a config file (config=...) or a "
                          "model and a training file (model=..., train=...)")
    return Request(model=model, train=str(train), test=None if test is None else str(test),
                   validation=None if validation is None else str(validation), label=label,
                   text=tuple(text), task=task, time=None if time is None else str(time))


def load(ref: str | Path, *, tracking_uri: str | None = None) -> AdapterPredictor:
    """A ready predictor (``predict(frame)``) for a registered version (``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION``) or a local adapter folder (a study's ``best_adapter``)."""
    path = Path(str(ref)).expanduser()
    if not str(ref).startswith("models:/"):
        if not path.is_dir():
            raise RegistryError(f"ref: expected models:/NAME@ALIAS, models:/NAME/VERSION or an adapter folder, "
                                f"found {str(ref)!r}")
        return AdapterPredictor.load(path)
    # deferred: MLflow takes seconds to import; a local adapter folder loads without it
    import mlflow

    # the download lives only while the predictor loads (weights and tokenizer end up in memory):
    # a service that loads versions for its lifetime must not fill /tmp with their copies
    with tempfile.TemporaryDirectory(prefix="autopeft-load-") as target, \
            mlflow_uris(tracking_uri or mlflow.get_tracking_uri()):
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=str(ref), dst_path=target))
        except Exception as exc:  # MLflow raises several types for a missing model, version or alias
            raise RegistryError(f"ref: cannot load {str(ref)!r}: {' '.join(str(exc).split())[:200]}") from None
        adapter = next((p for p in local.rglob(Artifact.ADAPTER) if p.is_dir()), None)
        if adapter is None:
            raise RegistryError(f"ref: {str(ref)!r} holds no autopeft adapter (no {Artifact.ADAPTER}/ folder)")
        return AdapterPredictor.load(adapter)


def submit(model: str | None = None, train: str | Path | None = None, *, address: str | None = None,
           test: str | Path | None = None, validation: str | Path | None = None, time: str | float | None = None,
           label: str | None = None, text: Sequence[str] = (), task: str | None = None,
           config: str | Path | None = None, settings: Mapping[str, Any] | None = None,
           output_dir: str | None = None, token_file: str | Path | None = None) -> StudyJob:
    """Submit a study to a Ray cluster as a Ray job and return at once: a handle with
    ``status()``, ``logs()``, ``follow(write)``, ``cancel()``, ``wait()`` and ``figures()``.

    The same inputs as :func:`search`, plus ``address`` (the Ray dashboard, ``http://HEAD:8265``;
    default ``RAY_API_SERVER_ADDRESS``), ``output_dir`` (on the cluster) and ``token_file``. Local
    files travel with the job; ``settings["tracking.uri"]`` (or the config's) must be an MLflow
    the cluster reaches. Bad input raises a :class:`~autopeft.errors.UserInputError` before
    anything reaches the cluster."""
    request, overrides = _inputs(model, train, test, validation, time, label, text, task, config, settings)
    job, _staged = submit_study(lambda: connect(address, token_file=token_file),
                                config=None if config is None else Path(config), request=request,
                                overrides=overrides, output_dir=output_dir)
    return job
