"""The Hub probe and cache lookup (autopeft/hub.py): a real HTTP server and a real cache folder."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from autopeft import hub
from tests.cli.test_bad_input import closed_port
from tests.conftest import cache_model


class _NotFound(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802 (the handler's naming)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_hub_that_answers_is_reachable_even_with_an_error_status(hub_at):
    server = HTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hub_at(f"http://127.0.0.1:{server.server_port}")
        assert hub.unreachable() is None
    finally:
        server.shutdown()


def test_a_hub_that_does_not_answer_is_unreachable_with_the_reason(hub_at):
    hub_at(f"http://127.0.0.1:{closed_port()}")
    assert "refused" in hub.unreachable().lower()


def test_offline_mode_probes_nothing(hub_at, monkeypatch):
    from huggingface_hub import constants

    hub_at(f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.unreachable() is None
    assert hub._PROBED == {}


def test_the_cache_gives_a_model_at_its_revision_only(hub_at, tmp_path, tiny_bert):
    hub_at(f"http://127.0.0.1:{closed_port()}", tmp_path / "cache")
    tiny_bert.save_pretrained(tmp_path / "model")
    snapshot = cache_model(tmp_path / "cache", "org/tiny-bert", tmp_path / "model")
    assert hub.cached_model("org/tiny-bert") == snapshot
    assert hub.cached_model("org/tiny-bert", "main") == snapshot
    assert hub.cached_model("org/tiny-bert", "v2") is None
    assert hub.cached_model("org/other") is None
