"""Review in the MLflow UI, in a real browser: the finished study through `autopeft ui`.

Headless Chromium renders MLflow's single-page UI (``--dump-dom`` after its scripts ran) the way
a reviewer's browser does. `.ci/run` installs Chromium where apt-get works; elsewhere these
tests skip with that reason. ``AUTOPEFT_UI_SCREENSHOTS=DIR`` also saves a screenshot per page.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import MODEL, STUDY

CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs it where apt-get works)")]


@dataclass
class UI:
    base: str
    #: What `autopeft ui` printed before the server started (the links to the newest study).
    printed: str
    profile: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ui(finished_study, tmp_path_factory) -> Iterator[UI]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "ui", "--tracking-uri", finished_study.uri,
                             "--port", str(port)], cwd=finished_study.folder, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        printed = proc.stdout.readline() + proc.stdout.readline()  # printed before the server starts
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base, timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"autopeft ui did not serve {base}: {printed}") from None
                time.sleep(1)
        yield UI(base=base, printed=printed, profile=tmp_path_factory.mktemp("chromium"))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the UI and the MLflow server it started, by their group
        proc.wait(timeout=30)


def render(ui: UI, url: str, name: str) -> str:
    """The page's DOM once MLflow's scripts have run; a screenshot too where one is asked for."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100",
               f"--user-data-dir={ui.profile}", "--virtual-time-budget=20000"]
    shots = os.environ.get("AUTOPEFT_UI_SCREENSHOTS")
    if shots:
        subprocess.run([*command, f"--screenshot={Path(shots) / f'{name}.png'}", url], capture_output=True,
                       timeout=180, check=False)
    done = subprocess.run([*command, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=True)
    return done.stdout


def text(page: str) -> str:
    """What the page shows in words: its DOM without the markup, whitespace folded."""
    body = page.split("<body", 1)[-1]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_the_experiment_opens_on_the_study_and_its_nested_runs(finished_study, ui):
    client, result = finished_study.client, finished_study.result
    experiment_id = client.get_run(result.parent_run_id).info.experiment_id
    link = f"{ui.base}/#/experiments/{experiment_id}?workflowType=machine_learning"
    assert link in ui.printed  # `autopeft ui` prints the way in
    page = render(ui, link, "experiment")
    words = text(page)
    assert "Detect Issues" not in words and "Runs" in words  # the training runs, not the GenAI overview
    assert f">{STUDY}<" in page  # the study run, its trials nested under it (collapsed)
    runs = client.search_runs([experiment_id], max_results=1000)
    assert f"{len(runs)} matching runs" in words
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert len(nested) == len(result.trials) + 1 == len(runs) - 1  # every trial, and the final training
    assert "each study is a parent run whose nested runs are its trials" in words  # the experiment's description


def test_the_winner_and_the_study_say_what_happened(finished_study, ui):
    client, result = finished_study.client, finished_study.result
    experiment_id = client.get_run(result.parent_run_id).info.experiment_id
    winner = render(ui, f"{ui.base}/#/experiments/{experiment_id}/runs/{result.best.run_id}"
                        f"?workflowType=machine_learning", "winner")
    winner = text(winner)
    assert "autopeft.selected" in winner and "Selected (knee:" in winner
    assert f"registered as models:/{MODEL}/{result.model_version}" in winner
    study = render(ui, f"{ui.base}/#/experiments/{experiment_id}/runs/{result.parent_run_id}"
                       f"?workflowType=machine_learning", "study")
    study = text(study)
    assert f"Winner: trial {result.best.trial_id}" in study and "Searched lora, ia3 on minilm" in study


def test_the_version_leads_to_the_run_that_trained_its_adapter_which_reproduces_its_metric(finished_study, ui,
                                                                                          tmp_path):
    import pandas as pd
    from mlflow.artifacts import download_artifacts

    from autopeft.engine.predictor import AdapterPredictor

    client, result, prepared = finished_study.client, finished_study.result, finished_study.prepared
    version = client.get_model_version(MODEL, result.model_version)
    source = client.get_run(version.run_id)
    # with a final training the adapter registered is the nested final-training run's
    assert source.data.tags["autopeft.run_kind"] == "final_training"
    assert source.data.tags["mlflow.parentRunId"] == result.parent_run_id
    page = render(ui, f"{ui.base}/#/models/{MODEL}/versions/{result.model_version}?workflowType=machine_learning",
                  "version")
    assert f"runs/{version.run_id}" in page and f"{STUDY}-final-training" in text(page)  # the Source Run link
    assert f"study {STUDY}" in text(page) and "validation accuracy" in text(page)  # its description
    # the adapter stored with the version reproduces the validation accuracy logged on the study run
    folder = Path(download_artifacts(artifact_uri=client.get_model_version_download_uri(MODEL, version.version),
                                     dst_path=str(tmp_path)))
    predictor = AdapterPredictor.load(folder / "artifacts" / "adapter")
    validation = prepared.raw.frames["validation"]
    predicted = predictor.predict_frame(pd.DataFrame({"sentence": validation["sentence"].astype(str)}))
    accuracy = float((predicted["label"].astype(str).to_numpy() == validation["label"].astype(str).to_numpy()).mean())
    logged = client.get_run(result.parent_run_id).data.metrics["accuracy"]
    assert accuracy == pytest.approx(logged, abs=1e-9)
