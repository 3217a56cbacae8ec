"""The MLflow pyfunc flavour of an autopeft adapter.

``mlflow.pyfunc.load_model("models:/NAME@ALIAS").predict(frame)`` loads the base model by
reference, attaches the adapter stored with the model version and predicts.
"""

from __future__ import annotations

from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc import PythonModel

#: Name of the adapter folder inside the logged model's artifacts.
ADAPTER_ARTIFACT = "adapter"


class AdapterPyfunc(PythonModel):
    """Predicts with the autopeft adapter logged beside it."""

    def load_context(self, context: Any) -> None:
        from autopeft.engine.predictor import AdapterPredictor

        self._predictor = AdapterPredictor.load(context.artifacts[ADAPTER_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self._predictor.predict_frame(pd.DataFrame(model_input))


# MLflow "models from code": when this file is logged as the model, loading it executes the
# file and takes the object set here (no pickled Python object in the registry).
mlflow.models.set_model(AdapterPyfunc())
