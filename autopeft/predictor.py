"""``autopeft.predictor``: where :class:`AdapterPredictor` lived before the layered layout.

Model versions registered by autopeft up to 8d8b0c6 carry the pyfunc code that release logged
("models from code"), and that code imports ``autopeft.predictor`` when MLflow loads the model.
This alias keeps those versions loadable (``tests/registry/test_legacy_store.py``); new code
imports :mod:`autopeft.engine.predictor`.
"""

from autopeft.engine.predictor import AdapterPredictor

__all__ = ["AdapterPredictor"]
