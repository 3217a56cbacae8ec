"""A real Ray head for integration tests: ``ray start --head --block`` on 127.0.0.1, every port
free and its own, in a temp dir of its own, with the dashboard (Ray's job service) on loopback.

It is stopped by what identifies it and nothing broader: its process group first, then any
process left whose command line names its temp dir or whose environment names its GCS address
(job drivers run in sessions of their own). ``ray stop`` would stop every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.integration.mlflow_server import free_port


@dataclass
class RayHead:
    gcs_address: str
    dashboard: str  # http://127.0.0.1:PORT, the job service
    temp_dir: Path
    env: dict[str, str]  # what a client process needs (PATH with this venv, auth mode, HF offline)


def _ready(url: str, headers: dict[str, str]) -> bool:
    request = urllib.request.Request(f"{url}/api/version", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _resources_listed(url: str, headers: dict[str, str], resources: dict[str, float]) -> bool:
    from autopeft import _compat

    try:
        return all(_compat.cluster_resource_total(url, name, headers) >= amount for name, amount in resources.items())
    except Exception:  # noqa: BLE001 - not ready yet, whatever the reason; the deadline decides
        return False


@contextmanager
def ray_head(log: Path, *, resources: dict[str, float] | None = None, num_cpus: int = 2,
             token: str | None = None, timeout_s: float = 120) -> Iterator[RayHead]:
    """A head with ``resources`` (e.g. the study limit) and, with ``token``, token authentication."""
    # short: Ray's Unix sockets live under it and their paths are limited to 107 characters
    temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    port, dashboard_port = free_port(), free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token" if token else "disabled"}
    env.pop("RAY_ADDRESS", None)  # the head of this test, not one RAY_ADDRESS names
    if token:
        env["RAY_AUTH_TOKEN"] = token
    else:
        env.pop("RAY_AUTH_TOKEN", None)
    cmd = [str(Path(bin_dir) / "ray"), "start", "--head", "--block", "--disable-usage-stats",
           f"--port={port}", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={dashboard_port}",
           f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
           f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
           f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
           f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}"]
    if resources:
        cmd.append(f"--resources={json.dumps(resources)}")
    gcs = f"127.0.0.1:{port}"
    url = f"http://127.0.0.1:{dashboard_port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        # ready: the job service answers, and the state API lists the head with its resources
        # (a study limit that a submit cannot read yet is no limit: under load the first answers
        # of a new head's state API came later than its job service's)
        while not (_ready(url, headers) and _resources_listed(url, headers, resources or {})):
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray dashboard at {url} did not answer within {timeout_s:.0f}s:\n"
                                   f"{log.read_text()[-3000:]}")
            time.sleep(1)
        yield RayHead(gcs_address=gcs, dashboard=url, temp_dir=temp_dir, env=env)
    finally:
        _stop(proc, gcs, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _ours(process: psutil.Process, gcs: str, temp_dir: Path) -> bool:
    try:
        if any(str(temp_dir) in part or gcs in part for part in process.cmdline()):
            return True
        return process.environ().get("RAY_ADDRESS", "") == gcs
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _stop(proc: subprocess.Popen, gcs: str, temp_dir: Path) -> None:
    # SIGINT, as Ctrl-C in its terminal: an idle `ray start --block` stops its processes and exits in
    # about 2 s (on SIGTERM it stayed up past 30 s). After Ray jobs have run it stayed up past 20 s
    # even on SIGINT; nothing here needs it to stop gracefully (its temp dir goes below, the
    # processes that left its group are found by what names the head), so it gets 5 s.
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    me = os.getpid()
    left = [p for p in psutil.process_iter() if p.pid != me and _ours(p, gcs, temp_dir)]
    for process in left:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(left, timeout=10)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
