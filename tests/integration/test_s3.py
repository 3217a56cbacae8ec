"""Training data, the MLflow artifact store and Ray's checkpoints on an S3-compatible store, all on loopback.

moto's server stands in for S3 so no cloud account is needed; MLflow runs as a real server that
proxies artifacts to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autopeft.config import resolve
from autopeft.study import prepare, run_search

from ..conftest import new_mlflow_store, write_config
from .mlflow_server import _service, free_port

pytestmark = pytest.mark.integration
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def test_search_with_s3_artifacts_and_checkpoints(tmp_path: Path, sst2_slice, minilm_path, monkeypatch, no_shared_ray,
                                                   mlflow_db_template):
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)  # for the driver and the Ray workers it starts (hence its own Ray)
    s3_port, mlflow_port = free_port(), free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    with _service([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                  f"{s3_url}/", tmp_path / "moto.log", timeout_s=60):
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
        s3.create_bucket(Bucket="autopeft")
        # the training data too lies in the bucket, named by its URL (as a submitted study passes it)
        s3.upload_file(str(sst2_slice["train"]), "autopeft", "data/sst2/train.csv")
        train_url = f"s3://autopeft/data/sst2/train.csv?endpoint_override=127.0.0.1:{s3_port}&scheme=http"
        server = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
                  "--backend-store-uri", new_mlflow_store(mlflow_db_template, tmp_path / "server.db"),
                  "--artifacts-destination", "s3://autopeft/mlflow", "--workers", "1"]
        with _service(server, f"http://127.0.0.1:{mlflow_port}/health", tmp_path / "mlflow.log", timeout_s=120,
                      env={**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_url}):
            path = write_config(
                tmp_path, train=train_url, study_name="s3",
                data__max_train_examples=160, data__max_eval_examples=64,
                space={"adapters": {"lora": {"r": 4}}, "batch_size": 16},
                budget={"trials": 1, "max_steps": 10, "eval_interval": 5, "cpus_per_trial": 2},
                tracking={"uri": f"http://127.0.0.1:{mlflow_port}", "experiment": "s3", "registered_model": "s3-model",
                          "optuna_storage": f"sqlite:///{tmp_path / 'optuna.db'}"},
                backend={"storage_path": f"s3://autopeft/ray?endpoint_override=127.0.0.1:{s3_port}&scheme=http"})
            prepared = prepare(resolve(path))
            assert prepared.raw.source["train"] == prepared.config.data.train == train_url
            result = run_search(prepared)
            assert result.model_version == "1"

            keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="autopeft")
                    for o in page.get("Contents", [])]
            # the registered adapter went through the tracking server into the S3 bucket
            assert any(k.startswith("mlflow/") and k.endswith("adapter/adapter_model.safetensors") for k in keys), keys
            # and Ray kept the study's experiment state and trial checkpoints there
            assert any(k.startswith("ray/s3/") and "checkpoint_" in k for k in keys), keys
            assert not (tmp_path / "out" / "ray").exists()

            import mlflow

            mlflow.set_tracking_uri(f"http://127.0.0.1:{mlflow_port}")
            try:
                local = mlflow.artifacts.download_artifacts("models:/s3-model@candidate", dst_path=str(tmp_path / "dl"))
            finally:
                mlflow.set_tracking_uri(None)
            assert (Path(local) / "artifacts" / "adapter" / "adapter_model.safetensors").is_file()
