"""Fixtures for the provider tests: each wire format in turn, and retries without waiting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.base import HTTPProvider
from tests.unit.providers.fakes import WIRES, Wire


@pytest.fixture(params=sorted(WIRES))
def wire(request: pytest.FixtureRequest) -> Wire:
    """Each wire format in turn."""
    return WIRES[request.param]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Retry waits are recorded here instead of slept."""
    recorded: list[float] = []

    async def fake_sleep(self: HTTPProvider, seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(HTTPProvider, "sleep", fake_sleep)
    yield recorded
