"""Garbage collection that does not stall the window while an answer streams.

CPython's full (generation 2) collection walks every tracked object: with a 10,000-message
chat and a 5,000-chat sidebar loaded that is 70-100 ms on the main thread, several times a
minute under the allocation rate of a 2,000 tokens/s stream (measured by
``tests/benchmarks/bench_chat_ui.py``: the one stall over budget was always one). Two
measures, both standard (``gc.freeze`` is what CPython documents for long-lived start-up
objects):

* :func:`freeze_long_lived` a second after an unlock: a full collection, then everything
  alive (modules, classes, the window's widgets, the session) moves to the permanent
  generation and is not walked by later collections. Reference counting still frees those
  objects; only a reference cycle among them would wait for ``gc.unfreeze``, and start-up
  objects live as long as the app.
* :func:`set_streaming`: while an answer streams, full collections are put off (generation
  0 and 1 still run, so short-lived cycles are still freed); when it ends, the usual
  thresholds come back and the next full collection happens when CPython decides.
"""

from __future__ import annotations

import gc
import logging
from typing import Final

__all__ = ["freeze_long_lived", "set_streaming", "streaming_deferred"]

log = logging.getLogger(__name__)

# Generation-2 threshold while streaming: full collections wait for the end of the answer.
_DEFERRED_FULL_THRESHOLD: Final = 1_000_000

_saved_thresholds: tuple[int, int, int] | None = None


def freeze_long_lived() -> None:
    """Move every object alive now out of the collector's reach (see the module text).

    A full collection first: garbage in reference cycles (a failed unlock's traceback
    holds the frames that held the typed passphrase) must be freed, not frozen for good."""
    gc.collect()
    gc.freeze()
    log.debug("garbage collector: %d long-lived objects frozen", gc.get_freeze_count())


def set_streaming(streaming: bool) -> None:
    """Put full collections off while an answer streams; restore them after."""
    global _saved_thresholds
    if streaming and _saved_thresholds is None:
        young, middle, full = gc.get_threshold()
        _saved_thresholds = (young, middle, full)
        gc.set_threshold(young, middle, _DEFERRED_FULL_THRESHOLD)
    elif not streaming and _saved_thresholds is not None:
        gc.set_threshold(*_saved_thresholds)
        _saved_thresholds = None


def streaming_deferred() -> bool:
    """Whether full collections are put off now (for tests)."""
    return _saved_thresholds is not None
