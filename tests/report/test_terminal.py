"""The console commands print through (autopeft/report/terminal.py): users' text as text."""

from __future__ import annotations

import io

from rich.table import Table
from rich.text import Text

from autopeft.report.terminal import TerminalConsole, printable


def test_control_characters_from_users_are_shown_not_obeyed():
    """A column named 'te\\x1b[31mxt' turned the terminal red through an error message; a bidi
    override reordered what a line shows."""
    assert printable("te\x1b[31mxt\x07") == "te\\x1b[31mxt\\x07"
    assert printable("a\u202eb\tc\nd") == "a\\u202eb\tc\nd"  # tab and newline are layout, not commands
    assert printable("caf\u00e9 \u65e5\u672c [/x]") == "caf\u00e9 \u65e5\u672c [/x]"


def test_the_console_escapes_users_text_and_keeps_its_own_styles():
    buffer = io.StringIO()
    console = TerminalConsole(file=buffer, force_terminal=True, color_system="standard", width=200)
    console.print(Text.assemble(("error", "bold red"), ": column 'te\x1b[31mxt' [/x]"))
    table = Table()
    table.add_column("reason")
    table.add_row("canary\x1b]0;pwned\x07")
    console.print(table)
    printed = buffer.getvalue()
    assert "column 'te\\x1b[31mxt' [/x]" in printed
    # a table lays its cells out first (the escape may be cut at the cell's edge): never obeyed
    assert "canary\\x1b]0;" in printed
    assert "\x1b[31mxt" not in printed and "\x1b]0;" not in printed
    assert "\x1b[1;31merror" in printed  # the console's own style is still a colour
