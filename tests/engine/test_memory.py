"""engine.memory: what a reused worker does between trials."""

from __future__ import annotations

import sys

import pytest

from autopeft.engine import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim is Linux-only")
def test_linux_workers_hand_freed_heap_memory_back():
    assert memory._malloc_trim() is not None


def test_release_memory_collects_cycles():
    import gc
    import weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    watch = weakref.ref(a)
    gc.disable()
    try:
        del a, b
        memory.release_memory()
        assert watch() is None
    finally:
        gc.enable()
