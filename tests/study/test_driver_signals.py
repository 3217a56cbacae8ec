"""A SIGTERM to the driver (``autopeft cancel``, ``ray job stop``, a pod's shutdown) becomes
:class:`~autopeft.errors.StudyCancelled`, which ends the study as Ctrl-C does; the integration
test of the job service (tests/integration/test_service.py) cancels a real study this way."""

from __future__ import annotations

import os
import signal
import time

import pytest

from autopeft.errors import StudyCancelled
from autopeft.study.driver import Sigterm, cancel_on_sigterm


def test_a_sigterm_inside_the_block_raises_study_cancelled_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StudyCancelled) as raised:
        with cancel_on_sigterm() as sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this returns
    assert raised.value.signal_name == "SIGTERM" and raised.value.at.endswith("+00:00")
    assert sigterm.received is raised.value
    assert isinstance(raised.value, KeyboardInterrupt)  # so every Ctrl-C path closes the study's runs
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_plain_interrupt_is_the_cancellation_only_after_a_sigterm():
    plain = KeyboardInterrupt()
    assert Sigterm().restore(plain) is plain  # Ctrl-C stays Ctrl-C
    cancelled = StudyCancelled("SIGTERM", "2026-12-01T12:00:00+00:00")
    assert Sigterm(received=cancelled).restore(plain) is cancelled  # what Ray's core made of it
    failure = RuntimeError("boom")
    assert Sigterm(received=cancelled).restore(failure) is failure  # a crash stays a crash
