"""Message records carry an answer's sources (its excerpt labels), readable both ways
between versions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.store.models import Tier
from app.sync.crypto import RecordTamperedError
from app.sync.records import message_values
from tests.unit.sync.devices import PASSPHRASE, Device
from tests.unit.sync.fake_server import FakeServer

OLD_BODY = {
    "id": "m1", "chat_id": "c1", "parent_id": None, "role": "assistant", "content": "Hi",
    "status": "complete", "created_at": 1.0, "reasoning": "", "error": None,
    "provider": "local", "model": "m", "prompt_tokens": None, "completion_tokens": None,
    "first_token_at": None, "finished_at": None, "duration_ms": None,
}  # fmt: skip


def test_a_record_from_an_older_device_has_no_sources() -> None:
    assert message_values(OLD_BODY)["sources"] == "[]"


def test_malformed_sources_are_refused() -> None:
    with pytest.raises(RecordTamperedError, match="sources"):
        message_values({**OLD_BODY, "sources": ["report.pdf, p. 3"]})


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Device, Device]]:
    server = FakeServer()
    a, b = Device(server, "a"), Device(server, "b")
    await a.setup()
    await a.engine.sync_once()
    await b.engine.join_with_passphrase(PASSPHRASE)
    yield a, b
    for device in (a, b):
        device.runner.shutdown()


async def test_sources_reach_the_other_device(pair: tuple[Device, Device]) -> None:
    a, b = pair
    store = a.library.store(Tier.STANDARD)
    chat = store.create_chat()
    question = store.add_message(chat.id, "user", "what is the code?", parent_id=None)
    store.add_message(
        chat.id, "assistant", "ZEBRA-42", parent_id=question.id,
        sources=("report.pdf, p. 7", "report.pdf, p. 2"),
    )  # fmt: skip
    for _ in range(2):
        for device in (a, b):
            await device.engine.sync_once()
    thread = b.library.store(Tier.STANDARD).full_thread(chat.id)
    assert thread[-1].sources == ("report.pdf, p. 7", "report.pdf, p. 2")
