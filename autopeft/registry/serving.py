"""The MLflow pyfunc flavour of an autopeft adapter.

``mlflow.pyfunc.load_model("models:/NAME@ALIAS").predict(frame)`` loads the base model by
reference, attaches the adapter stored with the model version and predicts, through
:class:`~autopeft.engine.predictor.AdapterPredictor`: a regression model's values come back in
the units of its training data (its ``autopeft.json`` carries the ``target_scale``).

Importing this module has no side effects. The file MLflow logs as the model's code is
``pyfunc_entry.py`` ("models from code"), which hands MLflow an :class:`AdapterPyfunc`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from autopeft.schema import Artifact

#: Name of the adapter folder inside the logged model's artifacts (kept importable here).
ADAPTER_ARTIFACT = Artifact.ADAPTER


class AdapterPyfunc(PythonModel):
    """Predicts with the autopeft adapter logged beside it."""

    def load_context(self, context: Any) -> None:
        from autopeft.engine.predictor import AdapterPredictor

        self._predictor = AdapterPredictor.load(context.artifacts[Artifact.ADAPTER])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self._predictor.predict_frame(pd.DataFrame(model_input))
