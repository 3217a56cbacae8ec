"""Registry lifecycle on a real MLflow SQLite store: alias moves, history, rollback, errors, fast-fail.

Versions here are registered without artifacts (the lifecycle only reads their tags), so the
tests run in seconds; tests/integration/test_lifecycle.py covers real adapters end to end.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from autopeft.config import PromotionConfig
from autopeft.errors import GateRefused, RegistryError, TrackingError, TrackingUnreachable, UserInputError
from autopeft.registry.promotion import promote
from autopeft.registry.versions import (
    AliasEvent,
    Registry,
    complete_lineage,
    git_commit,
    history_from_tags,
    holders,
    keeps_lineage_file,
    parse_model_ref,
)
from autopeft.schema import VersionTags


def production(registry: Registry, model_name: str) -> str | None:
    found = registry.by_alias(model_name, "production")
    return None if found is None else str(found.version)


def test_promote_refuse_force_rollback_are_recorded(registry, model_name):
    promote(registry, model_name, version="1")
    assert production(registry, model_name) == "1"

    with pytest.raises(GateRefused, match=r"0\.7000 is worse than production version 1 test accuracy 0\.8000"):
        promote(registry, model_name, version="2")
    assert production(registry, model_name) == "1"  # refused: unchanged, and nothing recorded
    assert [e.version for e in registry.history(model_name, "production")] == ["1"]

    with pytest.raises(UserInputError, match="--force needs --reason"):
        promote(registry, model_name, version="2", force=True)
    result = promote(registry, model_name, version="2", force=True, reason="hotfix for ticket 42")
    assert result.forced and production(registry, model_name) == "2"
    tags = registry.version(model_name, "2").tags
    assert tags["autopeft.production.forced"] == "true"
    assert tags["autopeft.production.reason"] == "hotfix for ticket 42"
    assert tags["autopeft.production.previous"] == "1"
    assert json.loads(tags["autopeft.production.gates"])[0]["passed"] is False

    event = registry.rollback(model_name, reason="bad canary")
    assert (event.action, event.version, event.previous) == ("rollback", "1", "2")
    assert production(registry, model_name) == "1"
    assert registry.version(model_name, "1").tags["autopeft.production.rolled_back_from"] == "2"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback(model_name)

    history = registry.history(model_name, "production")
    assert [(e.action, e.version, e.previous) for e in history] == [
        ("promote", "1", None), ("force", "2", "1"), ("rollback", "1", "2")]
    # nothing was deleted
    assert [str(v.version) for v in registry.versions(model_name)] == ["1", "2", "3"]


def test_better_version_passes_and_equal_holder_is_a_no_op(registry, model_name):
    promote(registry, model_name, version="1")
    result = promote(registry, model_name, version="3")
    assert not result.forced and [g.passed for g in result.gates] == [True]
    assert production(registry, model_name) == "3"
    assert promote(registry, model_name, version="3").event is None  # already there: nothing recorded


def test_threshold_gate_refuses_a_first_promotion(registry, model_name):
    with pytest.raises(GateRefused, match=r"0\.8000 misses the threshold 0\.8500"):
        promote(registry, model_name, version="1", config=PromotionConfig(min_metric=0.85))
    assert production(registry, model_name) is None


def test_different_test_sets_need_test_data(registry, model_name):
    registry.client.set_model_version_tag(model_name, "3", "autopeft.test_fingerprint", "other")
    promote(registry, model_name, version="1")
    with pytest.raises(RegistryError, match="different test sets.*--test-data"):
        promote(registry, model_name, version="3")
    assert production(registry, model_name) == "1"


def test_promote_from_alias_defaults_to_candidate(registry, model_name):
    registry.client.set_registered_model_alias(model_name, "candidate", "3")
    assert promote(registry, model_name).version == "3"
    with pytest.raises(UserInputError, match="either --version or --from"):
        promote(registry, model_name, version="1", from_alias="candidate")


def test_unknown_names_are_registry_errors(registry, model_name):
    with pytest.raises(RegistryError, match="no registered model named 'nope'"):
        promote(registry, "nope", version="1")
    with pytest.raises(RegistryError, match="has no version '9'"):
        promote(registry, model_name, version="9")
    with pytest.raises(RegistryError, match="no version with alias 'stable'"):
        promote(registry, model_name, from_alias="stable")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(model_name)


def test_missing_sqlite_file_is_not_silently_created(tmp_path):
    with pytest.raises(TrackingUnreachable, match=r"^tracking uri: no MLflow database at '.*typo\.db'$"):
        Registry.open(f"sqlite:///{tmp_path / 'typo.db'}")
    assert not (tmp_path / "typo.db").exists()


def test_rollback_follows_the_stack_not_the_last_event():
    ev = lambda seq, action, version: AliasEvent(seq=seq, alias="production", action=action,  # noqa: E731
                                                 version=version, previous=None)
    events = [ev(1, "promote", "1"), ev(2, "promote", "2"), ev(3, "promote", "3"), ev(4, "rollback", "2")]
    assert holders(events, "2") == ["1", "2"]  # a second rollback goes to 1, not back to 3
    assert holders(events, "5") == ["1", "2", "5"]  # moved outside autopeft: rollback returns to 2
    tags = {e.tag_key: e.to_json() for e in events} | {"autopeft.history.production.99999": "not json"}
    assert [e.seq for e in history_from_tags(tags, "production")] == [1, 2, 3, 4]


@pytest.mark.parametrize("text,expected", [
    ("m@production", ("m", None, "production")),
    ("models:/m@candidate", ("m", None, "candidate")),
    ("team/m/3", ("team/m", "3", None)),
])
def test_model_refs(text, expected):
    assert parse_model_ref(text) == expected


def test_bad_model_ref():
    with pytest.raises(RegistryError, match="NAME@ALIAS or NAME/VERSION"):
        parse_model_ref("just-a-name")


def test_complete_lineage_splits_the_base_model_reference_and_keeps_what_is_given(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["q"]}))
    ref = {"name_or_path": "minilm", "location": "/opt/models/minilm", "config_sha256": "abc123", "revision": "v1"}
    given = VersionTags(study="s", base_model=ref, registered_by="ci")
    record = complete_lineage(tmp_path, given, space={"adapters": {"lora": {}}})
    assert (record.base_model_name, record.base_model_path, record.base_model_revision,
            record.base_model_config_sha256) == ("minilm", "/opt/models/minilm", "v1", "abc123")
    assert record.adapter_config == {"peft_type": "LORA", "r": 8, "target_modules": ["q"]}
    assert record.space_hash is not None and len(record.space_hash) == 16
    assert record.registered_at and record.registered_by == "ci"  # given wins over derived
    assert record.study == "s" and record.base_model == ref and given.adapter_config is None  # given unchanged


def test_which_versions_keep_their_lineage_in_a_file():
    assert keeps_lineage_file({"autopeft.study": "s", "autopeft.test_metric": "0.5"})  # this release: the summary
    assert not keeps_lineage_file({"autopeft.study": "s", "autopeft.mode": "max"})  # older: every key a tag
    assert not keeps_lineage_file({"owner": "me"})  # not registered by autopeft


def test_git_commit_of_a_checkout_and_outside_one(tmp_path):
    here = git_commit(Path(__file__).parent)
    if here:  # the project may be tested from an sdist without .git
        assert len(here["autopeft.git_commit"]) == 40 and here["autopeft.git_dirty"] in {"true", "false"}
    assert git_commit(tmp_path) == {}


def test_unresponsive_server_fails_fast():
    """A port that accepts connections and never answers (the hang case) fails within 15 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # hold the connection open, say nothing
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(TrackingError, match="cannot reach MLflow"):
            Registry.open(f"http://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert time.monotonic() - started < 15


def test_refused_connection_fails_at_once():
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TrackingError, match="cannot reach MLflow"):
        Registry.open(f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 15


def test_load_of_a_missing_version_is_a_registry_error_and_leaves_no_download(registry_store, tmp_path, monkeypatch):
    import tempfile

    import autopeft

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RegistryError, match="ref: cannot load 'models:/nope@candidate'"):
        autopeft.load("models:/nope@candidate", tracking_uri=registry_store)
    assert not list(tmp_path.glob("autopeft-load-*"))
