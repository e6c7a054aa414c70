"""Devices for sync tests: a library of in-memory SQLCipher databases, an engine over a
fake server, and a canonical dump of what the device shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.executor import BlockingRunner
from app.store.library import Library, memory_connection
from app.store.models import Tier
from app.sync.engine import SyncEngine
from app.vault.kdf import FLOOR_PARAMS
from tests.unit.sync.fake_server import FakeServer, FakeTransport

ACCOUNT = "acct-test"
PASSPHRASE = "correct horse battery staple"
RECOVERY = bytes(range(100, 132))
KDF = FLOOR_PARAMS


class Clock:
    """A settable clock shared by a device's library and engine."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@dataclass
class Device:
    server: FakeServer
    name: str
    clock: Clock = field(default_factory=Clock)

    account: str = ACCOUNT

    def __post_init__(self) -> None:
        self.standard = memory_connection()
        self.private = memory_connection()
        self.transport = FakeTransport(self.server, f"device-{self.name}")
        self.runner = BlockingRunner()
        self.open(private=True)

    def open(self, *, private: bool) -> None:
        """(Re)open the library: with Private, or Standard only (a keychain unlock)."""
        self.library = Library(self.standard, self.private if private else None, clock=self.clock)
        self.engine = SyncEngine(
            self.library, self.transport, self.account, runner=self.runner, clock=self.clock
        )

    async def setup(self) -> None:
        await self.engine.setup_keys(passphrase=PASSPHRASE, recovery_secret=RECOVERY, kdf=KDF)

    def dump(self) -> dict[str, Any]:
        """What the device holds: every chat with its synced fields and message tree."""
        chats: dict[str, Any] = {}
        for tier in (Tier.STANDARD, Tier.PRIVATE):
            if tier not in self.library.tiers:
                continue
            store = self.library.store(tier)
            for summary in store.list_chats():
                chat = store.chat(summary.id)
                chats[chat.id] = {
                    "tier": tier.value,
                    "title": chat.title,
                    "title_source": chat.title_source.value,
                    "system_prompt": chat.system_prompt,
                    "memory": chat.memory,
                    "provider": chat.provider,
                    "model": chat.model,
                    "pinned": chat.pinned,
                    "active_leaf_id": chat.active_leaf_id,
                    "messages": sorted(
                        (m.id, m.parent_id, m.role, m.content, m.status.value)
                        for m in store.all_messages(chat.id)
                    ),
                }
        return chats

    def held_keys(self) -> list[bytes]:
        """Every key secret this device holds (sync keys, chat keys, the signing key)."""
        keys: list[bytes] = []
        for tier in self.library.tiers:
            if tier is Tier.EPHEMERAL:
                continue
            state = self.library.store(tier).sync_state()
            keys += [secret for _id, _tier, _epoch, secret, _state in state.sync_keys()]
            keys += [secret for _chat, _id, secret, _hlc in state.chat_keys()]
        return keys

    @staticmethod
    def database_text(conn: Any) -> str:
        """Every row of every table of a database, as text (to look for leftovers)."""
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return "\n".join(
            repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')
        )
