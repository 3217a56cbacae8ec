"""The benchmark's tests share the package tests' process set-up and fixtures (tests/conftest.py):
MLflow's process-wide URIs restored around each test, the GLUE data and the packaged MiniLM."""

from tests.conftest import glue_dir, isolated_mlflow_globals, minilm_path  # noqa: F401
