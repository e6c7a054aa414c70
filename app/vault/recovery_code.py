"""The recovery code: 256 random bits written as 16 groups of 6 digits.

Each group carries 16 bits of the code as ``value * 11 + (index mod 11)``, so every
group is checkable on its own: any single mistyped digit, any swap of two neighbouring
digits, and a group typed in the wrong place (except 11 places away) make the group
fail, and the user is told which group to re-read. Digits read aloud well and survive
handwriting; the whole code is additionally authenticated by the AES-GCM key slot.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

from app.vault.errors import RecoveryCodeTypoError

__all__ = ["GROUPS", "RecoveryCode"]

GROUPS: Final = 16
_DIGITS: Final = 6
_CHECK: Final = 11


@dataclass(frozen=True, repr=False)
class RecoveryCode:
    """A 256-bit recovery secret; ``str()`` gives the grouped form shown to the user once."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != 2 * GROUPS:
            raise ValueError("a recovery code holds exactly 32 bytes")

    def __repr__(self) -> str:
        return "RecoveryCode(<hidden>)"

    def __str__(self) -> str:
        return self.formatted()

    @classmethod
    def generate(cls) -> RecoveryCode:
        """Return a fresh random code."""
        return cls(secrets.token_bytes(2 * GROUPS))

    def groups(self) -> list[str]:
        """Return the 16 six-digit groups."""
        result = []
        for index in range(GROUPS):
            value = int.from_bytes(self.secret[2 * index : 2 * index + 2], "big")
            result.append(f"{value * _CHECK + index % _CHECK:0{_DIGITS}d}")
        return result

    def formatted(self) -> str:
        """Return the code as four lines of four groups, for printing or reading aloud."""
        groups = self.groups()
        return "\n".join("-".join(groups[row : row + 4]) for row in range(0, GROUPS, 4))

    @classmethod
    def parse(cls, text: str) -> RecoveryCode:
        """Parse a typed code; spaces, dashes and line breaks between groups are ignored.

        Raises :class:`RecoveryCodeTypoError` naming the first group that fails its check.
        """
        digits = re.sub(r"[\s\-_.]", "", text)
        if not digits.isdigit() or not digits.isascii():
            raise RecoveryCodeTypoError(
                "The recovery code may only contain digits (and dashes or spaces between "
                "groups); check it and try again."
            )
        if len(digits) != GROUPS * _DIGITS:
            raise RecoveryCodeTypoError(
                f"The recovery code has {GROUPS} groups of {_DIGITS} digits "
                f"({GROUPS * _DIGITS} digits); {len(digits)} were entered. "
                "Check for a missing or doubled group."
            )
        secret = bytearray()
        for index in range(GROUPS):
            group = int(digits[index * _DIGITS : (index + 1) * _DIGITS])
            value, check = divmod(group, _CHECK)
            if check != index % _CHECK or value > 0xFFFF:
                raise RecoveryCodeTypoError(
                    f"Group {index + 1} of the recovery code does not check out; "
                    "re-read that group and type it again."
                )
            secret += value.to_bytes(2, "big")
        return cls(bytes(secret))
