"""What the unlock agent holds and hands out: the vault id and the raw database keys.

Only the two SQLCipher keys travel, never the vault key: whoever holds them can read
and write the chats but cannot change key slots or rekey. Each key carries the
generation the slot file recorded for it, so a client can tell that a ``vault rekey``
made the agent's copy stale. Stdlib only (it is on the CLI's start-up path).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from app.tiers import STORED_TIERS, Tier

__all__ = ["KEY_BYTES", "VAULT_ID_BYTES", "AgentKeys"]

KEY_BYTES: Final = 32
VAULT_ID_BYTES: Final = 16


@dataclass(frozen=True)
class AgentKeys:
    """The vault id, and per stored tier its raw 32-byte key and key generation.

    The keys are ``bytearray`` so that :meth:`wipe` can overwrite them; ``repr`` never
    shows them. Build one with :meth:`Vault.agent_keys` or from the agent's answer.
    """

    vault_id: bytes
    database_keys: Mapping[Tier, bytearray] = field(repr=False)
    generations: Mapping[Tier, int]

    def __post_init__(self) -> None:
        if len(self.vault_id) != VAULT_ID_BYTES:
            raise ValueError("a vault id has 16 bytes")
        if set(self.database_keys) != set(STORED_TIERS) or set(self.generations) != set(
            STORED_TIERS
        ):
            raise ValueError("agent keys need exactly the stored tiers")
        for tier in STORED_TIERS:
            if len(self.database_keys[tier]) != KEY_BYTES:
                raise ValueError("a database key has 32 bytes")
            generation = self.generations[tier]
            if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
                raise ValueError("a key generation is a whole number from 1")

    def key(self, tier: Tier) -> bytes:
        """The raw SQLCipher key of ``tier`` (a copy)."""
        return bytes(self.database_keys[tier])

    @property
    def is_wiped(self) -> bool:
        """Whether :meth:`wipe` overwrote the keys."""
        return all(not any(key) for key in self.database_keys.values())

    def wipe(self) -> None:
        """Overwrite the key buffers with zeros (best effort: see docs/security.md)."""
        for key in self.database_keys.values():
            key[:] = bytes(len(key))

    def copy(self) -> AgentKeys:
        """An independent copy (its own buffers), e.g. to hand to a server."""
        return AgentKeys(
            self.vault_id,
            {tier: bytearray(key) for tier, key in self.database_keys.items()},
            dict(self.generations),
        )
