"""The study report's figures as PNG files: kaleido (Chrome or Chromium) where it renders, otherwise
matplotlib from the same figure data.

kaleido renders in a child process with a deadline. In-process, a browser that never answers
can block for good: kaleido's sync server waits on its render queue without a timeout, and its
thread ends when its browser fails to start or load the page, leaving nobody to answer; a stuck
non-daemon thread would also block the driver's exit. A child can be killed with the browser it
started, and the report then falls back to matplotlib.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

log = logging.getLogger(__name__)

#: Seconds the kaleido child may take for all of a report's figures (about 3-6 s on 2 CPU cores,
#: most of it the browser's start); past it the child and its browser are killed.
KALEIDO_DEADLINE_S = 180.0
#: Each figure's size in pixels.
PNG_WIDTH, PNG_HEIGHT = 1000, 500


def write_pngs(figures: dict[str, go.Figure], out_dir: Path, *,
               kaleido_deadline_s: float = KALEIDO_DEADLINE_S) -> tuple[dict[str, Path], str]:
    """Each figure as ``<out_dir>/<key>.png``; returns the paths and the renderer used."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / f"{key}.png" for key in figures}
    for path in paths.values():  # a report written again: only what this render writes counts
        path.unlink(missing_ok=True)
    failure = _png_kaleido(figures, paths, kaleido_deadline_s)
    if failure is None:
        return paths, "kaleido"
    log.info("kaleido could not render (%s); using matplotlib", failure)
    for key, fig in figures.items():
        _png_matplotlib(fig, paths[key])
    return paths, "matplotlib"


def _png_kaleido(figures: dict[str, go.Figure], paths: dict[str, Path], deadline_s: float) -> str | None:
    """Renders in a child process (``python -m autopeft.report.png``); ``None`` when every PNG
    was written, else why not (one line)."""
    with tempfile.TemporaryDirectory(prefix="autopeft-png-") as folder:
        job, output = Path(folder) / "figures.json", Path(folder) / "output.txt"
        job.write_text(json.dumps([{"figure": json.loads(fig.to_json()), "path": str(paths[key])}
                                   for key, fig in figures.items()]), encoding="utf-8")
        # its own session: on the deadline the child and the browser it started go together; its
        # output to a file, not a pipe, which a browser left behind would hold open
        with output.open("w") as sink:
            child = subprocess.Popen([sys.executable, "-m", __name__, str(job)], stdout=sink,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = child.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _kill_group(child.pid)  # a browser the child left behind, or the child itself on the deadline
            child.wait()
        printed = output.read_text(errors="replace")
    if code is None:
        return f"no answer within {deadline_s:.0f}s"
    if code != 0:  # the exception's line: the last the child printed
        lines = [line.strip() for line in printed.splitlines() if line.strip()]
        return (lines[-1] if lines else f"exit {code}")[:300]
    missing = [str(path) for path in paths.values() if not path.is_file()]
    return f"not written: {missing[0]}" if missing else None


def _kill_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # none of it is left
        pass


def _render_job(job: Path) -> None:
    """The child's work: every figure of ``job`` (written by ``_png_kaleido``) with kaleido."""
    import plotly.io as pio

    entries = json.loads(job.read_text(encoding="utf-8"))
    pio.write_images([entry["figure"] for entry in entries], [entry["path"] for entry in entries],
                     width=PNG_WIDTH, height=PNG_HEIGHT)


def decode_typed(obj: Any) -> Any:
    """Plotly (>= 6) writes numeric arrays as ``{"dtype", "bdata"[, "shape"]}`` (base64): back to lists."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            import base64

            import numpy as np

            array = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            if "shape" in obj:
                array = array.reshape(tuple(int(n) for n in str(obj["shape"]).split(",")))
            return array.tolist()
        return {k: decode_typed(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [decode_typed(v) for v in obj]
    return obj


_MPL_MARKERS = {"circle": "o", "circle-open": "o", "x": "x", "star": "*", "diamond-open": "D",
                "square": "s", "square-x": "s", "square-x-open": "s"}
_MPL_LINE_MARKERS = {"x"}  # drawn by their edge: a colour, no face


def _plain(text: str) -> str:
    """Plotly's text markup (``<br>``, ``<sup>``) as plain text for matplotlib."""
    return re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", "\n", text))


def _png_matplotlib(fig: go.Figure, path: Path) -> None:
    """The plotly figure's traces drawn with matplotlib (scatter, lines, bars, boxes, heat maps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = decode_typed(json.loads(fig.to_json()))
    layout = spec.get("layout", {})
    figure, ax = plt.subplots(figsize=(10, 5), dpi=100)
    categories: dict[str, int] = {}

    def xs(values: Any) -> list[Any]:
        out = []
        for v in list(values if values is not None else []):
            if isinstance(v, str):
                out.append(categories.setdefault(v, len(categories)))
            else:
                out.append(v)
        return out

    for trace in spec.get("data", []):
        kind = trace.get("type", "scatter")
        name = trace.get("name") if trace.get("showlegend", True) is not False else None
        marker = trace.get("marker", {}) or {}
        color = marker.get("color") if isinstance(marker.get("color"), str) else None
        if kind == "scatter":
            x, y = xs(trace.get("x")), list(trace.get("y") if trace.get("y") is not None else [])
            mode = trace.get("mode", "markers")
            line = trace.get("line", {}) or {}
            color = color or line.get("color")
            if "lines" in mode:
                style = ":" if line.get("dash") in ("dot", "dash") else "-"
                width = float(line.get("width") or 1.5)
                step = "post" if line.get("shape") == "hv" else None
                if step:
                    ax.step(x, y, where="post", linestyle=style, color=color, linewidth=width,
                            label=name if "markers" not in mode else None)
                else:
                    ax.plot(x, y, linestyle=style, color=color, linewidth=width,
                            label=name if "markers" not in mode else None)
            if "markers" in mode:
                symbol = str(marker.get("symbol", "circle"))
                shape = _MPL_MARKERS.get(symbol, "o")
                size = (marker.get("size") or 8) ** 2 / 1.5
                if shape in _MPL_LINE_MARKERS:
                    ax.scatter(x, y, marker=shape, s=size, color=color or "black", label=name)
                else:
                    edge = (marker.get("line") or {}).get("color") or color or "black"
                    ax.scatter(x, y, marker=shape, s=size, facecolors="none" if symbol.endswith("-open") else color,
                               edgecolors=(color or "black") if symbol.endswith("-open") else edge, label=name)
        elif kind == "bar":
            if trace.get("orientation") == "h":
                ax.barh(list(trace["y"]), list(trace["x"]), color=color, label=name)
            else:
                ax.bar(xs(trace["x"]), list(trace["y"]), color=color, label=name)
        elif kind == "box":
            y = [v for v in trace.get("y", []) if v is not None]
            if y:
                pos = xs([trace.get("name")])[0]
                ax.boxplot([y], positions=[pos], widths=0.5)
                ax.scatter([pos] * len(y), y, color=color, s=20, label=name)
        elif kind == "heatmap":
            image = ax.imshow(trace["z"], aspect="auto", cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks(range(len(trace["x"])), trace["x"])
            ax.set_yticks(range(len(trace["y"])), trace["y"])
            figure.colorbar(image, ax=ax, label="share")
    if categories:
        ax.set_xticks(list(categories.values()), list(categories))
    for annotation in layout.get("annotations", []) or []:
        if annotation.get("text") and annotation.get("xref") == "paper":
            ax.text(annotation.get("x", 0.5), annotation.get("y", 0.5), _plain(annotation["text"]), ha="center",
                    va="center", transform=ax.transAxes)
    title = layout.get("title", {})
    ax.set_title(_plain((title.get("text") if isinstance(title, dict) else str(title or "")) or ""), fontsize=10)
    for axis, setter in (("xaxis", ax.set_xlabel), ("yaxis", ax.set_ylabel)):
        label = (layout.get(axis, {}) or {}).get("title", {})
        setter(label.get("text", "") if isinstance(label, dict) else str(label or ""))
    if (layout.get("xaxis", {}) or {}).get("type") == "log":
        ax.set_xscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


if __name__ == "__main__":
    try:
        _render_job(Path(sys.argv[1]))
    except Exception as exc:  # noqa: BLE001 - the parent reads the last line: why, on one line
        print(f"{type(exc).__name__}: {' '.join(str(exc).split())}", flush=True)
        sys.exit(1)
