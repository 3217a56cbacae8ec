"""The Hugging Face Hub: does it answer here, and what its local cache holds.

On a machine without network (a cluster's compute node behind a firewall) and without
``HF_HUB_OFFLINE=1``, every Hub load retries for about 25 s, printing "Retrying in 8s" lines,
before it falls back to the cache or fails. One short probe per process decides instead: where
the Hub does not answer, a model comes from the cache at once, or the error says so at once.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

#: Seconds the probe waits for the Hub to answer (a dropped connection would wait forever).
PROBE_TIMEOUT_S = 5.0

#: Endpoint → why it does not answer (None: it answers), probed once per process.
_PROBED: dict[str, str | None] = {}


def offline_mode() -> bool:
    """The user asked for the cache alone (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import is_offline_mode  # deferred: imported only for a Hub name

    return bool(is_offline_mode())


def endpoint() -> str:
    """The Hub this process talks to (``HF_ENDPOINT``: a mirror, or huggingface.co)."""
    from huggingface_hub import constants  # deferred: imported only for a Hub name

    return str(constants.ENDPOINT)


def unreachable() -> str | None:
    """Why the Hub does not answer (one line), or None where it does or offline mode is on (no
    probe then). Any HTTP answer counts, an error status included: the Hub is there."""
    if offline_mode():
        return None
    url = endpoint()
    if url not in _PROBED:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
            _PROBED[url] = None
        except urllib.error.HTTPError:
            _PROBED[url] = None
        except (OSError, ValueError) as exc:  # URLError, a timeout, a refused connection; a malformed endpoint
            reason = getattr(exc, "reason", exc)
            _PROBED[url] = " ".join(str(reason).split()) or type(exc).__name__
    return _PROBED[url]


def cache_dir() -> str:
    """Where Hub models are cached (``HF_HUB_CACHE``, else under ``HF_HOME``)."""
    from huggingface_hub import constants  # deferred: imported only for a Hub name

    return str(constants.HF_HUB_CACHE)


def cached_model(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` at ``revision`` (default: main), or None where
    the cache does not hold it. Reads the cache alone, never the network."""
    from huggingface_hub import snapshot_download  # deferred: imported only for a Hub name

    try:
        folder = snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError; a repo id the library refuses is not cached either
        return None
    return Path(str(folder))
