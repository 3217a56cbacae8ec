"""Real MLflow services on loopback for integration tests: a tracking server and a model server.

Both bind 127.0.0.1 on a free port, are waited for with a bounded timeout, and are stopped
(their whole process group) when the context exits, even when the test failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (servers fork workers), then SIGKILL what is left. A tracking
    server took 5.4 s to stop gracefully after a test; nothing writes by then, so it gets 2 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=2)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen, url: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


@contextmanager
def _service(cmd: list[str], ready_url: str, log: Path, timeout_s: float, env: dict[str, str] | None = None
             ) -> Iterator[subprocess.Popen]:
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    try:
        _wait_ready(proc, ready_url, timeout_s, log)
        yield proc
    finally:
        _stop(proc)


@contextmanager
def tracking_server(root: Path, timeout_s: float = 90, template: Path | None = None) -> Iterator[str]:
    """``mlflow server`` with a SQLite backend (a copy of the empty store ``template`` if given:
    the server then creates no tables) and proxied local artifact storage; yields its URI."""
    root.mkdir(parents=True, exist_ok=True)
    if template is not None:
        shutil.copyfile(template, root / "server.db")
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    with _service(cmd, f"http://127.0.0.1:{port}/health", root / "server.log", timeout_s):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def model_server(model_uri: str, tracking_uri: str, log: Path, timeout_s: float = 180) -> Iterator[str]:
    """``mlflow models serve`` (local env) for ``model_uri``; yields the base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    # the scoring server execs `uvicorn` by name: the test's interpreter's scripts come first,
    # as they would in an activated virtual environment
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri, "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PATH": path}
    with _service(cmd, f"http://127.0.0.1:{port}/ping", log, timeout_s, env):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def mlflow_server_uri(tmp_path_factory, mlflow_db_template) -> Iterator[str]:
    """A real tracking server for the module, stopped after its last test."""
    with tracking_server(tmp_path_factory.mktemp("mlflow-server"), template=mlflow_db_template) as uri:
        yield uri
