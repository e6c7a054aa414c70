"""The front door after a keychain unlock: the library has Standard (and Ephemeral) chats
only, the agent is not served, and the passphrase opens Private later; key rotation
through the session reopens the chats under the new keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.config import Config, LoadedConfig
from app.errors import UsageError, VaultLockedError, WrongSecretError
from app.session import Session
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from tests.peers.vault_fixtures import PASSPHRASE
from tests.unit.vault.fake_store import FakeStore


@pytest.fixture
async def session(profile: Path) -> AsyncIterator[Session]:
    store = FakeStore()
    session = Session(
        LoadedConfig(Config(), None, {}), profile, secret_store=store, kdf=FLOOR_PARAMS
    )
    await session.unlock_with_passphrase(PASSPHRASE)
    for tier in (Tier.STANDARD, Tier.PRIVATE):
        chat = await session.service.create_chat(tier)
        await session.service.rename(chat.id, f"{tier} chat")
    await session.add_keychain()
    session.lock()
    yield session
    session.close()


async def _titles(session: Session) -> set[str]:
    return {chat.title for chat in await session.service.list_chats()}


async def test_a_keychain_unlock_opens_only_the_standard_tier(session: Session) -> None:
    await session.unlock_with_keychain()
    assert session.is_unlocked
    assert session.locked_tiers == (Tier.PRIVATE,)
    assert session.unlocked_with == "keychain"
    assert await _titles(session) == {"standard chat"}
    assert Tier.PRIVATE not in session.library.tiers
    with pytest.raises(UsageError, match="Private chats are not open"):
        await session.service.create_chat(Tier.PRIVATE)
    assert not await session.serve_agent()  # the agent hands out both keys: not here
    with pytest.raises(VaultLockedError, match="open only Standard"):
        await session.rotate_keys(PASSPHRASE)

    with pytest.raises(WrongSecretError):
        await session.unlock_private("not the passphrase")
    assert session.locked_tiers == (Tier.PRIVATE,)
    await session.unlock_private(PASSPHRASE)
    assert session.locked_tiers == ()
    assert await _titles(session) == {"standard chat", "private chat"}


async def test_rotation_through_the_session_reopens_the_chats(session: Session) -> None:
    await session.unlock_with_passphrase(PASSPHRASE)
    with pytest.raises(WrongSecretError):  # the passphrase kept must be the current one
        await session.rotate_keys("not the passphrase")
    rotation = await session.rotate_keys(PASSPHRASE)
    assert rotation.recovery_code is not None
    assert [slot.kind for slot in rotation.slots] == ["passphrase", "recovery", "keychain"]
    assert await _titles(session) == {"standard chat", "private chat"}
    session.lock()
    await session.unlock_with_keychain()
    assert await _titles(session) == {"standard chat"}


async def test_changing_the_passphrase_needs_the_current_one(session: Session) -> None:
    await session.unlock_with_passphrase(PASSPHRASE)
    new = "an entirely different passphrase"
    with pytest.raises(WrongSecretError, match="current passphrase"):
        await session.change_passphrase(new)
    with pytest.raises(WrongSecretError):
        await session.change_passphrase(new, current="wrong")
    await session.change_passphrase(new, current=PASSPHRASE)
    session.lock()
    await session.unlock_with_passphrase(new)
    rotation = await session.rotate_keys("third passphrase", new_passphrase=True, current=new)
    assert rotation.recovery_code is not None
    session.lock()
    await session.unlock_with_recovery_code(rotation.recovery_code.formatted())
    assert session.unlocked_with == "recovery"
    await session.change_passphrase("a fourth one after recovery")  # no current needed
