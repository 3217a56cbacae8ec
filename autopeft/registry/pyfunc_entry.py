"""The code MLflow logs as an autopeft model ("models from code"; ``registry.versions.register_adapter``).

Loading a model version runs this file and takes the object it sets: no pickled Python object
in the registry. Nothing in the package imports it (setting the model is its side effect).
"""

import mlflow.models

from autopeft.registry.serving import AdapterPyfunc

mlflow.models.set_model(AdapterPyfunc())
