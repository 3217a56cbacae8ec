"""autopeft.service.connection: where the job service is, which token is sent, and that every
failure is one line naming the flag, never the token. A few tests talk HTTP to a port where
nothing listens, or to a tiny local server that answers as a token-protected dashboard would;
none starts Ray."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autopeft.errors import ClusterError
from autopeft.service.connection import Cluster, Token, call, connect, find_token, refusal, resolve_address

SECRET = "s3cr3t-token-value-0123456789"
ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No address or token from the machine the tests run on."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


# --------------------------------------------------------------------------- the address


def test_no_address_names_the_flag_and_the_variable():
    with pytest.raises(ClusterError) as caught:
        resolve_address(None)
    message = str(caught.value)
    assert message.startswith("--address: ") and "RAY_API_SERVER_ADDRESS" in message and "8265" in message


def test_the_address_given_beats_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://env-head:8265")
    assert resolve_address("http://given:8265") == "http://given:8265"


def test_the_address_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://head:8265/")
    monkeypatch.setenv("RAY_ADDRESS", "http://other:8265")
    assert resolve_address(None) == "http://head:8265"  # ray job's order; the trailing slash stripped
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS")
    assert resolve_address("") == "http://other:8265"


def test_a_ray_address_that_is_no_job_service_is_ignored(monkeypatch: pytest.MonkeyPatch):
    """RAY_ADDRESS often names the GCS (what ray.init reads): not the dashboard."""
    for value in ("127.0.0.1:6379", "auto", "ray://head:10001"):
        monkeypatch.setenv("RAY_ADDRESS", value)
        with pytest.raises(ClusterError, match=r"^--address: .*found neither"):
            resolve_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "https://head.example.com")
    assert resolve_address(None) == "https://head.example.com"


@pytest.mark.parametrize("given,expected", [("http://head:8265/", "http://head:8265"),
                                            ("https://head.example.com/ray/", "https://head.example.com/ray"),
                                            ("http://10.0.0.5:8265", "http://10.0.0.5:8265")])
def test_the_address_is_kept_without_its_trailing_slash(given: str, expected: str):
    assert resolve_address(given) == expected


def test_a_ray_client_address_is_refused_with_a_hint():
    with pytest.raises(ClusterError) as caught:
        resolve_address("ray://head:10001")
    message = str(caught.value)
    assert message.startswith("--address: expected http://HOST:PORT") and "'ray://head:10001'" in message
    assert "Ray Client address" in message and "dashboard" in message


@pytest.mark.parametrize("given", ["head:8265", "127.0.0.1:6379", "auto"])
def test_an_address_without_a_scheme_is_refused(given: str):
    with pytest.raises(ClusterError, match=r"^--address: expected http://HOST:PORT") as caught:
        resolve_address(given)
    assert repr(given) in str(caught.value) and "Ray Client" not in str(caught.value)


# --------------------------------------------------------------------------- the token


def test_no_token_anywhere_leaves_it_to_ray():
    assert find_token() is None


def test_the_token_file_beats_the_variable_which_beats_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "flag").write_text("from-the-flag\n")
    (tmp_path / "path").write_text("  from-the-path  \n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "path"))
    assert find_token() == Token("from-the-path", f"RAY_AUTH_TOKEN_PATH ({tmp_path / 'path'})")
    monkeypatch.setenv("RAY_AUTH_TOKEN", " from-the-variable\n")
    assert find_token() == Token("from-the-variable", "RAY_AUTH_TOKEN")
    assert find_token(tmp_path / "flag") == Token("from-the-flag", f"--token-file ({tmp_path / 'flag'})")
    assert find_token(str(tmp_path / "flag")).value == "from-the-flag"


def test_a_blank_variable_falls_through_to_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "path").write_text("from-the-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "   ")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "path"))
    assert find_token().value == "from-the-path"


def test_a_token_file_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "token").write_text(SECRET)
    assert find_token("~/token").value == SECRET


@pytest.mark.parametrize("source", ["--token-file", "RAY_AUTH_TOKEN_PATH"])
def test_an_empty_or_missing_token_file_names_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str):
    empty, missing = tmp_path / "empty", tmp_path / "missing"
    empty.write_text("\n  \n")

    def find(path: Path) -> Token | None:
        if source == "--token-file":
            return find_token(path)
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
        return find_token()

    with pytest.raises(ClusterError, match=rf"^{source}: the token file '.*empty' is empty$"):
        find(empty)
    with pytest.raises(ClusterError) as caught:
        find(missing)
    assert str(caught.value).startswith(f"{source}: cannot read the token file ")
    assert str(missing) in str(caught.value) and "\n" not in str(caught.value)


def test_the_token_is_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "token").write_text(SECRET)
    token = find_token(tmp_path / "token")
    assert token.header() == {"Authorization": f"Bearer {SECRET}"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", SECRET)
    for shown in (token, find_token()):
        assert SECRET not in repr(shown) and SECRET not in str(shown)
    cluster = Cluster(address="http://head:8265", client=object(), token=token)  # type: ignore[arg-type]
    assert SECRET not in repr(cluster)
    # Ray's own texts for a 401 and a 403, with the token echoed back as a server might
    for text in ("Authentication required: Unauthorized", f"Authentication failed: Forbidden {SECRET}",
                 f"Authentication failed: bad token {SECRET}"):
        line = refusal("http://head:8265", token, text)
        assert SECRET not in line and "\n" not in line and line.startswith("token: ")


def test_refusal_says_what_to_do():
    token = Token(SECRET, "RAY_AUTH_TOKEN")
    missing = refusal("http://head:8265", None, "Authentication failed: Forbidden")
    assert missing.startswith("token: the Ray cluster at http://head:8265 requires a token")
    assert all(name in missing for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "--token-file"))
    assert refusal("http://head:8265", token, "Authentication required: Unauthorized") == missing
    assert refusal("http://head:8265", token, "Authentication failed: Forbidden") == \
        "token: the Ray cluster at http://head:8265 refused the token from RAY_AUTH_TOKEN"


# --------------------------------------------------------------------------- talking to the service


def test_connect_where_nothing_listens_names_the_flag_within_seconds():
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(ClusterError) as caught:
        connect(url)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith(f"--address: no Ray job service answers at {url}") and "\n" not in message
    assert "8265" in message
    assert elapsed < 15, f"took {elapsed:.1f}s"


def test_connect_checks_the_address_before_the_token(tmp_path: Path):
    with pytest.raises(ClusterError, match=r"^--address: "):
        connect(None, token_file=tmp_path / "missing")
    with pytest.raises(ClusterError, match=r"^--token-file: "):
        connect(f"http://127.0.0.1:{closed_port()}", token_file=tmp_path / "missing")


class _Dashboard(BaseHTTPRequestHandler):
    """Answers every GET with the server's ``status`` and ``body``; keeps the headers it got."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.server.seen.append(dict(self.headers))  # type: ignore[attr-defined]
        status, body = self.server.answer  # type: ignore[attr-defined]
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dashboard() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    server.seen, server.answer = [], (200, "")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_connect_sends_the_token_and_keeps_it_out_of_the_refusal(dashboard: ThreadingHTTPServer, tmp_path: Path):
    dashboard.answer = (403, f"Forbidden: {SECRET} is not the cluster's token")  # type: ignore[attr-defined]
    (tmp_path / "token").write_text(SECRET + "\n")
    with pytest.raises(ClusterError) as caught:
        connect(_url(dashboard) + "/", token_file=tmp_path / "token")
    message = str(caught.value)
    assert message == f"token: the Ray cluster at {_url(dashboard)} refused the token from --token-file ({tmp_path / 'token'})"
    assert SECRET not in message
    assert dashboard.seen[-1]["Authorization"] == f"Bearer {SECRET}"  # type: ignore[attr-defined]


def test_connect_without_a_token_to_a_cluster_that_wants_one(dashboard: ThreadingHTTPServer):
    dashboard.answer = (401, "Unauthorized")  # type: ignore[attr-defined]
    with pytest.raises(ClusterError) as caught:
        connect(_url(dashboard))
    assert str(caught.value).startswith(f"token: the Ray cluster at {_url(dashboard)} requires a token")
    assert "Authorization" not in dashboard.seen[-1]  # type: ignore[attr-defined]


def test_connect_to_something_that_is_no_dashboard(dashboard: ThreadingHTTPServer):
    dashboard.answer = (404, "<html>not found</html>")  # type: ignore[attr-defined]
    with pytest.raises(ClusterError) as caught:
        connect(_url(dashboard))
    message = str(caught.value)
    assert message.startswith(f"--address: {_url(dashboard)} answered, but not as a Ray job service") and "\n" not in message


def test_connect_to_a_dashboard(dashboard: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch):
    dashboard.answer = (200, json.dumps({"ray_version": "2.60.0", "version": "4"}))  # type: ignore[attr-defined]
    monkeypatch.setenv("RAY_AUTH_TOKEN", SECRET)
    cluster = connect(_url(dashboard) + "/")
    assert cluster.address == _url(dashboard) and cluster.token == Token(SECRET, "RAY_AUTH_TOKEN")
    assert dashboard.seen[-1]["Authorization"] == f"Bearer {SECRET}"  # type: ignore[attr-defined]
    assert SECRET not in repr(cluster)


def test_the_address_given_is_the_one_reached_whatever_rays_variables_say(dashboard: ThreadingHTTPServer,
                                                                         monkeypatch: pytest.MonkeyPatch):
    """On a cluster's node RAY_ADDRESS names the local GCS; Ray's client would take it (or
    RAY_API_SERVER_ADDRESS) over the address it is given."""
    dashboard.answer = (200, json.dumps({"ray_version": "2.60.0", "version": "4"}))  # type: ignore[attr-defined]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{closed_port()}")
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", f"http://127.0.0.1:{closed_port()}")
    cluster = connect(_url(dashboard))
    assert cluster.address == _url(dashboard) and dashboard.seen  # type: ignore[attr-defined]
    assert cluster.client.get_address() == _url(dashboard)
    assert os.environ["RAY_API_SERVER_ADDRESS"] != _url(dashboard)  # as it was


def test_call_turns_the_services_failures_into_one_line():
    from ray.exceptions import AuthenticationError

    token = Token(SECRET, "RAY_AUTH_TOKEN")
    cluster = Cluster(address="http://head:8265", client=object(), token=token)  # type: ignore[arg-type]
    assert call(cluster, "list jobs", lambda a, b=0: a + b, 1, b=2) == 3

    def refused() -> None:
        raise AuthenticationError(f"Authentication failed: Forbidden {SECRET}")

    def gone() -> None:
        raise ConnectionError("Failed to connect to Ray at address: http://head:8265.\nretry later")

    with pytest.raises(ClusterError) as caught:
        call(cluster, "list jobs", refused)
    assert str(caught.value) == "token: the Ray cluster at http://head:8265 refused the token from RAY_AUTH_TOKEN"
    with pytest.raises(ClusterError) as caught:
        call(cluster, "list jobs", gone)
    message = str(caught.value)
    assert message.startswith("--address: the Ray job service at http://head:8265 stopped answering while it was "
                              "asked to list jobs: Failed to connect") and "\n" not in message
    with pytest.raises(KeyError):  # anything else is not the service's: it goes on as it is
        call(cluster, "list jobs", {}.__getitem__, "x")
