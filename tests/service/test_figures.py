"""A study's figures and links from MLflow: what ``jobs`` and ``submit`` show (a real SQLite
store here; the tracking-server path is in tests/integration/test_service.py)."""

from __future__ import annotations

import time

from autopeft.service.figures import experiment_url, study_figures
from tests.service.test_connection import closed_port


def test_the_experiment_link_needs_a_tracking_server_that_answers():
    assert experiment_url("sqlite:///mlflow.db", "exp") is None  # no UI address to link to
    assert experiment_url("http://127.0.0.1:5000", None) is None  # named on the cluster: not known yet
    started = time.monotonic()
    assert experiment_url(f"http://127.0.0.1:{closed_port()}", "exp") is None
    assert time.monotonic() - started < 15  # a submit never waits long for a link


def test_a_study_without_a_run_has_no_figures(tracking_uri: str):
    assert study_figures(tracking_uri, "never-started") is None
    assert study_figures(tracking_uri, "never-started", experiment="no-such-experiment") is None

