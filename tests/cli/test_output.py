"""What every command shares (``autopeft.cli._output``)."""

from __future__ import annotations

import signal
import subprocess
import sys

#: A command's body under ``ctrl_c_stops``: says when it waits, exits 7 on KeyboardInterrupt, and
#: prints the SIGINT handler it leaves behind.
BODY = """
import signal, sys, time
from autopeft.cli._output import ctrl_c_stops
try:
    with ctrl_c_stops():
        print("waiting", flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    print("after:", signal.getsignal(signal.SIGINT) is signal.SIG_IGN, flush=True)
    sys.exit(7)
"""


def test_ctrl_c_stops_a_watch_started_with_sigint_ignored() -> None:
    # a command started in the background of a non-interactive shell inherits SIGINT ignored
    proc = subprocess.Popen([sys.executable, "-c", BODY], stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "waiting\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 7
        assert proc.stdout.read() == "after: True\n"  # what the process inherited is back after the block
    finally:
        proc.kill()
