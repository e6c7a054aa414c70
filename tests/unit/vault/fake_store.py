"""An in-memory ``SecretStore`` for the vault tests (the OS keychain's stand-in)."""

from __future__ import annotations

from app.vault import NoSecretAvailableError, UnlockMethodUnavailableError


class FakeStore:
    """Keeps secrets in a dict; ``unavailable`` makes it fail like a keychain that is not
    there (no Secret Service)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], bytes] = {}
        self.unavailable = False

    def _check(self) -> None:
        if self.unavailable:
            raise UnlockMethodUnavailableError("The OS keychain is not available (test).")

    def store(self, service: str, account: str, secret: bytes) -> None:
        self._check()
        self.items[(service, account)] = secret

    def load(self, service: str, account: str) -> bytes:
        self._check()
        try:
            return self.items[(service, account)]
        except KeyError:
            raise NoSecretAvailableError("This device's keychain has no entry.") from None

    def delete(self, service: str, account: str) -> None:
        self._check()
        self.items.pop((service, account), None)
