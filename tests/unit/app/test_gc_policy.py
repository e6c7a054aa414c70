"""The window's garbage-collection policy: no full collection while an answer streams,
long-lived objects frozen out of later collections, garbage freed before freezing."""

from __future__ import annotations

import gc
import weakref

from app import gc_policy


def test_full_collections_wait_while_streaming_and_come_back_after() -> None:
    before = gc.get_threshold()
    gc_policy.set_streaming(True)
    try:
        young, middle, full = gc.get_threshold()
        assert (young, middle) == before[:2]  # young cycles are still collected
        assert full > 100_000
        gc_policy.set_streaming(True)  # said twice: still restored to the first values
        assert gc_policy.streaming_deferred()
    finally:
        gc_policy.set_streaming(False)
    assert gc.get_threshold() == before
    assert not gc_policy.streaming_deferred()
    gc_policy.set_streaming(False)  # said twice: nothing changes
    assert gc.get_threshold() == before


class _Holder:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_freezing_frees_cyclic_garbage_first_and_freezes_what_lives() -> None:
    lives = _Holder()
    garbage = _Holder()
    gone = weakref.ref(garbage)
    del garbage
    try:
        gc_policy.freeze_long_lived()
        assert gone() is None  # collected, not frozen for good (it could hold a secret)
        assert gc.get_freeze_count() > 0
        frozen = weakref.ref(lives)
        del lives
        gc.collect()
        assert frozen() is not None  # frozen: later collections do not walk it
    finally:
        gc.unfreeze()
    gc.collect()
    assert frozen() is None
