"""The privacy tiers, one type for every layer (vault, store, services, UI).

Standard and Private chats live in the vault's two SQLCipher databases; Ephemeral
chats live only in memory. ``STORED_TIERS`` are the tiers with a database file.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["STORED_TIERS", "Tier"]


class Tier(StrEnum):
    """A chat's privacy tier (see docs/chats.md)."""

    STANDARD = "standard"
    PRIVATE = "private"
    EPHEMERAL = "ephemeral"


STORED_TIERS: Final[tuple[Tier, ...]] = (Tier.STANDARD, Tier.PRIVATE)
