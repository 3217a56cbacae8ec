"""Data behind a URL: ``s3://``, ``gs://``, ``hdfs://`` and ``file://`` (pyarrow's filesystems, as
Ray's storage reads them: credentials and endpoints from the environment or the URL's query, such
as ``?endpoint_override=host:port&scheme=http``), and ``http(s)://``.

A URL is fetched once per process into a local copy, which the readers read as a file (or as a
saved dataset's folder); the URL itself stays the data's name in the config and the lineage. This
is what makes ``autopeft submit --train s3://...`` work: the data goes to the cluster by reference
and each study process fetches it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from autopeft.errors import DataError

#: A URL: a scheme, then ``://`` (a Windows path ``C:\\data`` has no ``//``).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Seconds an HTTP server may take to answer before the fetch fails.
HTTP_TIMEOUT_S = 60
#: What this process fetched: URL -> local copy.
_FETCHED: dict[str, Path] = {}


def is_url(value: object) -> bool:
    """Whether a data path is a URL to fetch rather than a local path."""
    return isinstance(value, str) and bool(_URL.match(value))


def fetch(url: str, field_name: str) -> Path:
    """A local copy of the file or folder at ``url``, fetched the first time this process asks;
    DataError (one line, naming ``field_name``) where it cannot be."""
    done = _FETCHED.get(url)
    if done is not None and done.exists():
        return done
    parts = urllib.parse.urlsplit(url)
    name = PurePosixPath(urllib.parse.unquote(parts.path)).name or "data"
    # one folder per URL, the file keeping its name: its suffixes say its format
    target = Path(tempfile.gettempdir()) / "autopeft-data" / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    partial = target.with_name(f".{name}.{os.getpid()}.partial")  # two drivers may fetch one URL at once
    shown = shown_url(url)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove(partial)
        if parts.scheme in ("http", "https"):
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out)
        else:
            _copy_from_filesystem(url, partial, field_name, shown)
        _remove(target)
        partial.replace(target)
    except DataError:
        raise
    except Exception as exc:  # network, permissions, an unknown scheme: all mean "cannot fetch"
        raise DataError(f"{field_name}: cannot fetch {shown!r}: {' '.join(str(exc).split())[:200]}") from None
    _FETCHED[url] = target
    return target


def _copy_from_filesystem(url: str, destination: Path, field_name: str, shown: str) -> None:
    import pyarrow.fs as pafs  # deferred: pandas' own dependency, needed only for remote data

    filesystem, path = pafs.FileSystem.from_uri(url)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{field_name}: no such file {shown!r}")
    if info.type == pafs.FileType.Directory:  # a folder datasets' save_to_disk wrote
        destination.mkdir(parents=True)
        pafs.copy_files(path, str(destination), source_filesystem=filesystem)
        return
    with filesystem.open_input_stream(path) as source, destination.open("wb") as out:
        shutil.copyfileobj(source, out)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def shown_url(url: str) -> str:
    """``url`` as an error may show it: without ``user:password@``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))
