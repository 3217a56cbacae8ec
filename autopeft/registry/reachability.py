"""Does the tracking server answer? One bounded request, before any MLflow client call.

MLflow's client retries an unreachable server for minutes (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
``..._TIMEOUT``). Rather than change those process-wide settings around each call, autopeft
asks the server once itself, with a short timeout and no retries, and only then lets the
client talk to it. Nothing is set or changed: a library call leaves the environment as it was.
"""

from __future__ import annotations

import os

#: Seconds to wait for the connection and for the answer (an unresponsive server fails in seconds).
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 8.0
#: A cheap read of MLflow's REST API (public, stable since MLflow 1.x).
_PROBE_PATH = "/api/2.0/mlflow/experiments/search"


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def probe(uri: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S) -> None:
    """Raise ``ConnectionError`` (or ``OSError``) when the MLflow server at ``uri`` does not answer
    within the timeouts. Any HTTP answer counts (a 401 is a server that answers); URIs that are
    not http(s) (SQLite, a local folder) have nothing to reach and return at once.

    TLS follows MLflow's own settings (``MLFLOW_TRACKING_INSECURE_TLS``,
    ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``), read, not set.
    """
    if not is_http(uri):
        return
    import requests

    verify: bool | str = True
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        verify = False
    elif os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        verify = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None
    try:
        # a session of its own: no retries (requests' default adapter makes none), no proxies
        # from another session, closed at once
        with requests.Session() as session:
            session.get(uri.rstrip("/") + _PROBE_PATH, params={"max_results": 1}, verify=verify, cert=cert,
                        timeout=(connect_timeout_s, read_timeout_s), allow_redirects=False)
    except requests.exceptions.RequestException as exc:
        if isinstance(exc, requests.exceptions.ReadTimeout):
            raise ConnectionError(f"connected, but no answer within {read_timeout_s:g}s") from None
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            raise ConnectionError(f"no connection within {connect_timeout_s:g}s") from None
        raise ConnectionError(_reason(exc)) from None


def _reason(exc: Exception) -> str:
    """A short cause: the innermost error's text (e.g. "[Errno 111] Connection refused")."""
    cause: BaseException = exc
    while cause.__context__ is not None and cause.__context__ is not cause:
        cause = cause.__context__
    text = " ".join(str(cause).split()) or type(cause).__name__
    return f"{type(exc).__name__}: {text}"
