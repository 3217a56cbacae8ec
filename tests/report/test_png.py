"""The report's PNGs: kaleido in a child process with a deadline, matplotlib when it cannot render."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from autopeft.report.png import write_pngs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _figures():
    import plotly.graph_objects as go

    return {"curves": go.Figure(go.Scatter(x=[1, 2, 3], y=[0.5, 0.6, 0.7], mode="lines", name="trial 1")),
            "family": go.Figure(go.Bar(x=["lora", "ia3"], y=[0.8, 0.7]))}


def _assert_pngs(paths: dict[str, Path], keys) -> None:
    assert set(paths) == set(keys)
    for path in paths.values():
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path


def _descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def test_a_renderer_past_its_deadline_is_killed_with_its_browser_and_matplotlib_draws(tmp_path):
    before = _descendants()
    paths, renderer = write_pngs(_figures(), tmp_path / "figures", kaleido_deadline_s=0.05)
    assert renderer == "matplotlib"
    _assert_pngs(paths, _figures())
    assert _descendants() <= before  # nothing of the render is left running


def test_a_renderer_that_fails_falls_back_to_matplotlib(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-browser"))  # where kaleido looks first
    with caplog.at_level("INFO", logger="autopeft.report.png"):
        paths, renderer = write_pngs(_figures(), tmp_path / "figures")
    assert renderer == "matplotlib"
    _assert_pngs(paths, _figures())
    assert "kaleido could not render" in caplog.text


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("google-chrome")),
                    reason="no Chrome or Chromium for kaleido")
def test_kaleido_renders_every_figure_in_a_child_and_leaves_no_browser(tmp_path):
    before = _descendants()
    paths, renderer = write_pngs(_figures(), tmp_path / "figures")
    assert renderer == "kaleido"
    _assert_pngs(paths, _figures())
    assert _descendants() <= before
