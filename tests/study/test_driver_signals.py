"""A SIGTERM to the driver (``autopeft cancel``, ``ray job stop``, a pod's shutdown) becomes
:class:`~autopeft.errors.StudyCancelled`, which ends the study as Ctrl-C does; the integration
test of the job service (tests/integration/test_service.py) cancels a real study this way, and
tests/integration/test_interrupt.py presses Ctrl-C on a real one. Either signal is recorded, and
Tune's next loop step raises it again should a library have swallowed the first raise."""

from __future__ import annotations

import os
import signal
import time

import pytest

from autopeft.errors import StudyCancelled
from autopeft.study.driver import StopOnSignal, StudySignals, study_signals


def test_a_sigterm_inside_the_block_raises_study_cancelled_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StudyCancelled) as raised:
        with study_signals() as sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this returns
    assert raised.value.signal_name == "SIGTERM" and raised.value.at.endswith("+00:00")
    assert sigterm.received is raised.value
    assert isinstance(raised.value, KeyboardInterrupt)  # so every Ctrl-C path closes the study's runs
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_plain_interrupt_is_the_cancellation_only_after_a_sigterm():
    plain = KeyboardInterrupt()
    assert StudySignals().restore(plain) is plain  # Ctrl-C stays Ctrl-C
    cancelled = StudyCancelled("SIGTERM", "2026-12-01T12:00:00+00:00")
    assert StudySignals(received=cancelled).restore(plain) is cancelled  # what Ray's core made of it
    failure = RuntimeError("boom")
    assert StudySignals(received=cancelled).restore(failure) is failure  # a crash stays a crash


def test_a_ctrl_c_lost_inside_a_library_is_raised_again_at_tunes_next_step():
    before = signal.getsignal(signal.SIGINT)
    step = StopOnSignal()
    with study_signals() as signals:
        step.on_step_begin(iteration=0, trials=[])  # nothing received: the loop goes on
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises before this returns
        except KeyboardInterrupt:
            pass  # what a library that catches too much would do
        assert isinstance(signals.received, KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            step.on_step_begin(iteration=1, trials=[])
    assert signal.getsignal(signal.SIGINT) is before
    step.on_step_begin(iteration=2, trials=[])  # outside a study: nothing to raise


def test_a_lost_sigterm_is_raised_again_as_the_cancellation():
    with study_signals() as signals:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except StudyCancelled:
            pass
        with pytest.raises(StudyCancelled) as raised:
            StopOnSignal().on_step_begin(iteration=1, trials=[])
    assert raised.value is signals.received


def test_the_stop_callback_pickles_with_a_resumable_study():
    import pickle

    assert isinstance(pickle.loads(pickle.dumps(StopOnSignal())), StopOnSignal)
