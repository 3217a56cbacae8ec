"""The model registry side of a study: register the best adapter as a model version.

Versions carry lineage tags (study, trial, base model reference, data fingerprint, metrics) so
that the registry alone answers "where did this come from"; the adapter is stored, the base
model only referenced.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft import __version__
from autopeft.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CANDIDATE_ALIAS = "candidate"
PRODUCTION_ALIAS = "production"


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    reqs = [f"autopeft=={__version__}"] if "unknown" not in __version__ else []
    for dist in ("torch", "transformers", "peft", "pandas", "mlflow"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except Exception:  # not installed under that name; let pip resolve it
            reqs.append(dist)
    return reqs


def signature(text_columns: list[str], categorical: bool) -> Any:
    """The pyfunc's input and output schema (text columns in; label and score, or value, out)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    outputs = [ColSpec("string", "label"), ColSpec("double", "score")] if categorical else [ColSpec("double", "value")]
    return ModelSignature(inputs=Schema([ColSpec("string", c) for c in text_columns]), outputs=Schema(outputs))


def register_adapter(client: MlflowClient, *, tracking_uri: str, run_id: str, adapter_dir: Path,
                     registered_model: str, tags: Mapping[str, Any], model_signature: Any = None,
                     alias: str = CANDIDATE_ALIAS) -> ModelVersion:
    """Log ``adapter_dir`` as a pyfunc model in ``run_id``, register it and point ``alias`` at it."""
    import mlflow

    from autopeft import serving
    from autopeft.serving import ADAPTER_ARTIFACT

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=serving.__file__,  # models from code: nothing pickled
                signature=model_signature,
                artifacts={ADAPTER_ARTIFACT: str(adapter_dir)},
                pip_requirements=_pip_requirements(),
                registered_model_name=registered_model,
            )
    except Exception as exc:
        raise TrackingError(f"tracking: registering the best adapter as {registered_model!r} failed: {exc}") from exc
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, str(value))
    client.set_registered_model_alias(registered_model, alias, version)
    return client.get_model_version(registered_model, version)
