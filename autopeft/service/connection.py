"""Where a cluster's job service listens and how to be let in.

The service is Ray's own: the job REST API of the Ray dashboard (``http://HEAD:8265``), with
Ray's token authentication (``RAY_AUTH_MODE=token`` on the cluster). The token is read from
``--token-file``, ``RAY_AUTH_TOKEN`` or the file ``RAY_AUTH_TOKEN_PATH`` names (else Ray's own
default, ``~/.ray/auth_token``, when ``RAY_AUTH_MODE=token`` is set here too), sent as a bearer
header, and never printed or logged: errors name where it came from, not what it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft import _compat
from autopeft.errors import ClusterError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

#: Where ``ray job`` looks for the job service's address, in its order.
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"


@dataclass(frozen=True)
class Token:
    """A bearer token and where it was found (the part errors may show)."""

    value: str = field(repr=False)
    source: str

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


def resolve_address(address: str | None) -> str:
    """The job service's http(s) address: ``address``, else ``RAY_API_SERVER_ADDRESS`` or an
    http(s) ``RAY_ADDRESS``; ClusterError naming the flag otherwise."""
    if not address:
        address = next((os.environ[name] for name in ADDRESS_ENV
                        if os.environ.get(name, "").startswith(("http://", "https://"))), None)
    if not address:
        raise ClusterError("--address: expected the Ray dashboard's address, where Ray's job service listens "
                           "(http://HEAD:8265), or RAY_API_SERVER_ADDRESS set; found neither")
    if not address.startswith(("http://", "https://")):
        raise ClusterError(f"--address: expected http://HOST:PORT (the Ray dashboard, default port 8265), found "
                           f"{address!r}" + (" (a Ray Client address: jobs go to the dashboard's port)"
                                             if address.startswith("ray://") else ""))
    return address.rstrip("/")


def find_token(token_file: str | Path | None = None) -> Token | None:
    """The token to send: ``token_file``, ``RAY_AUTH_TOKEN``, or the file ``RAY_AUTH_TOKEN_PATH``
    names; None leaves it to Ray (which sends its default token when RAY_AUTH_MODE=token)."""
    if token_file is not None:
        return _read_token(Path(token_file), "--token-file")
    if os.environ.get(TOKEN_ENV, "").strip():
        return Token(os.environ[TOKEN_ENV].strip(), TOKEN_ENV)
    if os.environ.get(TOKEN_PATH_ENV):
        return _read_token(Path(os.environ[TOKEN_PATH_ENV]), TOKEN_PATH_ENV)
    return None


def _read_token(path: Path, source: str) -> Token:
    path = path.expanduser()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ClusterError(f"{source}: cannot read the token file {str(path)!r}: {exc.strerror or exc}") from None
    if not value:
        raise ClusterError(f"{source}: the token file {str(path)!r} is empty")
    return Token(value, f"{source} ({path})")


@dataclass
class Cluster:
    """A connection to a cluster's job service (checked: it answered, and let us in)."""

    address: str
    client: JobSubmissionClient
    token: Token | None = field(default=None, repr=False)

    def resource_total(self, name: str) -> float | None:
        """How much of the custom resource ``name`` the cluster's live nodes have (None: none)."""
        headers = self.token.header() if self.token else None
        try:
            total = _compat.cluster_resource_total(self.address, name, headers)
        except Exception as exc:  # noqa: BLE001 - the state API is optional: say so, do not guess
            raise ClusterError(f"--address: cannot read the cluster's resources at {self.address}: "
                               f"{' '.join(str(exc).split())[:200]}") from None
        return total or None


def connect(address: str | None = None, *, token_file: str | Path | None = None) -> Cluster:
    """Connect to the job service; ClusterError (one line) when nothing answers there or the
    token is missing or refused."""
    url = resolve_address(address)
    token = find_token(token_file)
    # deferred: Ray's job SDK imports Ray (seconds); --help and bad flags answer without it
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        with _compat.job_service_address_pinned(url):  # Ray's variables would replace it
            client = JobSubmissionClient(url, headers=token.header() if token else None)
    except AuthenticationError as exc:
        raise ClusterError(refusal(url, token, str(exc))) from None
    except (ConnectionError, OSError) as exc:
        raise ClusterError(f"--address: no Ray job service answers at {url} ({' '.join(str(exc).split())[:160]}); "
                           "is the cluster up, and is that the dashboard's port (default 8265)?") from None
    except RuntimeError as exc:  # an address that answers but is no Ray dashboard
        raise ClusterError(f"--address: {url} answered, but not as a Ray job service: "
                           f"{' '.join(str(exc).split())[:160]}") from None
    return Cluster(address=url, client=client, token=token)


def refusal(url: str, token: Token | None, message: str) -> str:
    """One line for a request the cluster refused (Ray: 401 missing, 403 wrong token)."""
    if message.startswith("Authentication required") or token is None:
        return (f"token: the Ray cluster at {url} requires a token (token authentication is on); set "
                f"{TOKEN_ENV}, {TOKEN_PATH_ENV} or --token-file")
    return f"token: the Ray cluster at {url} refused the token from {token.source}"


def call(cluster: Cluster, what: str, request: Any, *args: Any, **kwargs: Any) -> Any:
    """``request(*args, **kwargs)`` on the job service, with its errors as one line each."""
    # deferred: see connect
    from ray.exceptions import AuthenticationError

    try:
        return request(*args, **kwargs)
    except AuthenticationError as exc:
        raise ClusterError(refusal(cluster.address, cluster.token, str(exc))) from None
    except (ConnectionError, OSError) as exc:
        raise ClusterError(f"--address: the Ray job service at {cluster.address} stopped answering while it was "
                           f"asked to {what}: {' '.join(str(exc).split())[:160]}") from None
