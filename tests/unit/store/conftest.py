"""Fixtures of the store tests: a ticking clock and a library over in-memory databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.store.library import Library, memory_connection
from tests.unit.store.support import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def library(clock: Clock) -> Iterator[Library]:
    lib = Library(memory_connection(), memory_connection(), clock=clock)
    yield lib
    lib.close()
