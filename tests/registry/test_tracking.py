from __future__ import annotations

from autopeft.registry.tracking import REDACTED, flatten, outcome, redact


def test_outcome_rule():
    assert outcome({"final": True, "accuracy": 0.9}, error=False) == "COMPLETE"
    assert outcome({"final": False, "accuracy": 0.9}, error=False) == "PRUNED"
    assert outcome(None, error=False) == "PRUNED"
    assert outcome({"final": True}, error=True) == "FAIL"


def test_credentials_never_reach_logged_params():
    config = {
        "tracking": {"uri": "https://alice:tok-123@mlflow.example:5000", "optuna_storage": "postgresql://opt:pw-456@db:5432/optuna"},
        "model": {"name_or_path": "org/model", "hf_token": "hf_abcdef"},
        "data": {"hub": {"name": "glue"}},
        "s3": {"aws_secret_access_key": "AKIA-secret"},
    }
    params = flatten(config)
    text = " ".join(f"{k}={v}" for k, v in params.items())
    for secret in ("tok-123", "pw-456", "hf_abcdef", "AKIA-secret", "alice"):
        assert secret not in text
    assert params["tracking.uri"] == f"https://{REDACTED}@mlflow.example:5000"
    assert params["tracking.optuna_storage"] == f"postgresql://{REDACTED}@db:5432/optuna"
    assert params["model.hf_token"] == REDACTED
    assert params["model.name_or_path"] == "org/model"  # ordinary values are untouched


def test_redact_keeps_plain_urls():
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
