"""The console every command and the live progress print through: users' text printed as text.

Names, paths and values that come from users' files reach the terminal in errors, notes and
tables (a column name, a label, a reason given to ``promote``). A control character in them (an
ESC that opens an ANSI sequence, a bidirectional override) would be read by the terminal as a
command: recolour it, retitle the window, reorder what a line shows. Here such characters are
printed as their escapes (``\\x1b``), while rich's own control sequences (a live display's cursor
moves) pass as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.segment import Segment

#: C0 and C1 control characters but newline and tab, DEL, and the bidirectional embeddings,
#: overrides and isolates (the 'Trojan Source' characters).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with each character a terminal would obey, rather than show, written as its escape."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TerminalConsole(Console):
    """A rich ``Console`` that prints text as text (:func:`printable`); markup is off by default,
    as a user's '[/x]' is a name, not a closing tag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        super().__init__(*args, **kwargs)

    def render(self, renderable: Any, options: Any = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not _UNPRINTABLE.search(segment.text):
                yield segment
            else:
                yield Segment(printable(segment.text), segment.style)
