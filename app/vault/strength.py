"""Passphrase strength check (zxcvbn): a new passphrase scoring below 3 of 4 is refused
unless the person says to use it anyway (``--allow-weak-passphrase`` on the command
line, "Use anyway" in the window), after seeing why it is weak."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from app.vault.errors import WeakPassphraseError

__all__ = ["PassphraseStrength", "assess_passphrase", "require_strong_passphrase"]

_ACCEPTABLE_SCORE: Final = 3
_MAX_CHECKED_CHARS: Final = 100  # zxcvbn slows down sharply on very long inputs


@dataclass(frozen=True)
class PassphraseStrength:
    """zxcvbn's verdict: score 0-4, a crack-time estimate and advice."""

    score: int
    crack_time: str
    warning: str
    suggestions: tuple[str, ...]

    @property
    def is_weak(self) -> bool:
        """Whether the passphrase is refused unless allowed (score below 3 of 4)."""
        return self.score < _ACCEPTABLE_SCORE

    def message(self) -> str:
        """One paragraph for the user; never contains the passphrase."""
        parts = [f"Weak passphrase (strength {self.score}/4, guessed in {self.crack_time})."]
        if self.warning:
            parts.append(self.warning)
        parts.extend(self.suggestions)
        return " ".join(parts)


def assess_passphrase(passphrase: str, user_inputs: list[str] | None = None) -> PassphraseStrength:
    """Estimate how hard the passphrase is to guess, for a warning before it is used."""
    from zxcvbn import zxcvbn  # its dictionaries take a while to load: only when needed

    result = zxcvbn(passphrase[:_MAX_CHECKED_CHARS], user_inputs=user_inputs or ["hushchat"])
    feedback = result.get("feedback", {})
    crack = result.get("crack_times_display", {})
    return PassphraseStrength(
        score=int(result["score"]),
        crack_time=str(crack.get("offline_slow_hashing_1e4_per_second", "unknown time")),
        warning=str(feedback.get("warning") or ""),
        suggestions=tuple(str(item) for item in feedback.get("suggestions", [])),
    )


def require_strong_passphrase(
    passphrase: str, *, allow_weak: bool, override: str
) -> PassphraseStrength:
    """Assess a new passphrase; raise :class:`WeakPassphraseError` when it is weak and not
    allowed. ``override`` tells the person how to use it anyway (the flag or the button);
    the message says why it is weak and never contains the passphrase."""
    strength = assess_passphrase(passphrase)
    if strength.is_weak and not allow_weak:
        raise WeakPassphraseError(
            f"{strength.message()} Choose a stronger passphrase (a few unrelated words), or "
            f"{override}."
        )
    return strength
