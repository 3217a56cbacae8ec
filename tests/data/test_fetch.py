"""autopeft.data.fetch: data behind a URL, served by a real HTTP server on 127.0.0.1 and read
through pyarrow's local filesystem (``file://``); S3 goes through moto in tests/integration/test_s3.py."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from autopeft.auto.infer import Request, infer, names_for
from autopeft.config import DataConfig, resolve_mapping
from autopeft.data import fetch, is_url, load
from autopeft.errors import DataError
from autopeft.tasks import get_task

CLS = get_task("sequence_classification")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder) of an HTTP server on 127.0.0.1 serving ``folder``."""
    folder = tmp_path / "site"
    (folder / "reviews").mkdir(parents=True)
    pd.DataFrame({"sentence": [f"a review, number {i}" for i in range(40)], "label": ["pos", "neg"] * 20}).to_csv(
        folder / "reviews" / "train.csv", index=False)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_is_data_not_a_path() -> None:
    assert is_url("s3://bucket/train.csv") and is_url("https://host/x.csv") and is_url("file:///tmp/x.csv")
    assert not is_url("data/train.csv") and not is_url("C:\\data\\train.csv") and not is_url("hub:glue")


def test_data_behind_an_http_url_loads_and_keeps_its_url_as_its_name(served: tuple[str, Path]) -> None:
    """`autopeft submit` passes data behind a URL by reference, and the search on the cluster
    refused it as 'no such file' (Path had even collapsed 'https://' to 'https:/')."""
    base, _ = served
    url = f"{base}/reviews/train.csv"
    raw = load(DataConfig(train=url, text_columns=["sentence"]), CLS, seed=0)
    assert raw.sizes == {"train": 36, "validation": 4} and raw.source["train"] == url
    # zero-config: the URL is the config's data.train, the experiment named after its path
    inference = infer(Request(model="minilm", train=url))
    chosen = {c.field: c.value for c in inference.choices}
    assert chosen["data.train"] == url and chosen["tracking.experiment"] == "autopeft-reviews"
    assert names_for("s3://bucket/reviews/train.csv?endpoint_override=h:9000&scheme=http") == (
        "autopeft-reviews", "reviews-adapter")
    assert load(resolve_mapping(inference.raw_config()).config.data, CLS, seed=0).sizes["train"] == 36


def test_a_url_that_cannot_be_fetched_is_one_line(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    with pytest.raises(DataError, match=r"^data\.train: cannot fetch 'http://127\.0\.0\.1:\d+/nope\.csv': HTTP Error "
                                        r"404: File not found$"):
        load(DataConfig(train=f"{base}/nope.csv", text_columns=["sentence"]), CLS, seed=0)
    with pytest.raises(DataError, match=r"^--test: no such file 'file://.*missing\.csv'$"):
        infer(Request(model="minilm", train=f"{base}/reviews/train.csv", test=f"file://{tmp_path}/missing.csv"))
    # credentials in a URL are not shown
    with pytest.raises(DataError) as excinfo:
        fetch(f"http://user:secret@127.0.0.1:{base.rsplit(':', 1)[1]}/nope.csv", "data.train")
    assert "secret" not in str(excinfo.value)


def test_a_file_url_reads_through_pyarrow(served: tuple[str, Path]) -> None:
    _, folder = served
    url = f"file://{folder}/reviews/train.csv"
    assert fetch(url, "data.train").read_bytes() == (folder / "reviews" / "train.csv").read_bytes()
    assert load(DataConfig(train=url, text_columns=["sentence"]), CLS, seed=0).sizes["train"] == 36


def test_a_saved_dataset_folder_behind_a_url_is_fetched_whole(tmp_path: Path) -> None:
    from tests.data.test_read_files import save_dataset_dict

    folder = save_dataset_dict(tmp_path / "reviews", {"train": 12})
    url = f"file://{folder}/train"
    local = fetch(url, "data.train")
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in (folder / "train").iterdir())
    raw = load(DataConfig(train=url, text_columns=["sentence"]), CLS, seed=0)
    assert raw.label_names == ["negative", "positive"] and raw.source["train"] == url


def test_a_saved_dataset_dict_behind_a_url_gives_its_splits_as_urls(tmp_path: Path) -> None:
    from tests.data.test_read_files import save_dataset_dict

    folder = save_dataset_dict(tmp_path / "reviews", {"train": 20, "test": 6})
    url = f"file://{folder}"
    inference = infer(Request(model="minilm", train=url))
    chosen = {c.field: c.value for c in inference.choices}
    assert (chosen["data.train"], chosen["data.test"]) == (f"{url}/train", f"{url}/test")
    config = resolve_mapping(inference.raw_config()).config
    assert load(config.data, CLS, seed=0).sizes == {"train": 18, "validation": 2, "test": 6}


def test_an_error_in_data_behind_a_url_names_the_url(served: tuple[str, Path]) -> None:
    base, folder = served
    (folder / "broken.jsonl").write_text('{"sentence": "fine", "label": "pos"}\n{"sentence": \n')
    with pytest.raises(DataError, match=rf"^data\.train: line 2 of '{base}/broken\.jsonl' is not valid JSON"):
        load(DataConfig(train=f"{base}/broken.jsonl", text_columns=["sentence"]), CLS, seed=0)
