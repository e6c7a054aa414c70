"""Small values kept in the Standard database's ``vault_meta`` table: provider API keys
(``api_key: vault``; the SQL half of :mod:`app.api_keys`) and flags such as "the
recovery code was not confirmed stored yet".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final

from app.vault.errors import DatabaseDamagedError

__all__ = ["VaultKeyStore", "VaultMeta"]

log = logging.getLogger(__name__)


class VaultMeta:
    """Named rows of the Standard database's ``vault_meta`` table (which every vault
    database has had since format 1): small values kept encrypted with the Standard
    tier's key, copied by a rekey or rotation with the rest.

    ``connect`` gives a connection to ``standard.db`` for one operation as a context
    manager (``Vault.connection``: closed after it, and the vault does not lock while it
    is in use); it raises a :class:`VaultError` while the vault or its Standard tier is
    locked. Each call has its own connection, so it is safe on any worker thread.
    """

    def __init__(self, connect: Callable[[], AbstractContextManager[Any]]) -> None:
        self._connect = connect

    def _run(self, sql: str, *args: str) -> list[Any]:
        import sqlcipher3

        with self._connect() as connection:
            try:
                return list(connection.execute(sql, args).fetchall())
            except sqlcipher3.Error as error:
                log.warning("vault_meta in the Standard database failed", exc_info=True)
                raise DatabaseDamagedError(
                    "The Standard database could not be read or written; check the disk "
                    "and run 'hushchat vault verify'."
                ) from error

    def put(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name``, replacing any previous one."""
        self._run("INSERT OR REPLACE INTO vault_meta (name, value) VALUES (?, ?)", name, value)

    def get(self, name: str) -> str | None:
        """The value kept under ``name``, or None."""
        rows = self._run("SELECT value FROM vault_meta WHERE name = ?", name)
        return str(rows[0][0]) if rows else None

    def delete(self, name: str) -> None:
        """Forget ``name``; none kept is fine."""
        self._run("DELETE FROM vault_meta WHERE name = ?", name)


class VaultKeyStore:
    """Provider keys in the Standard database (:class:`VaultMeta`), one row per provider
    named ``provider-key/<provider_name>``."""

    _PREFIX: Final = "provider-key/"

    def __init__(self, connect: Callable[[], AbstractContextManager[Any]]) -> None:
        self._meta = VaultMeta(connect)

    def store(self, provider_name: str, key: str) -> None:
        """Keep ``key`` for ``provider_name``, replacing any previous one."""
        self._meta.put(self._PREFIX + provider_name, key)

    def load(self, provider_name: str) -> str | None:
        """The key kept for ``provider_name``, or None."""
        return self._meta.get(self._PREFIX + provider_name)

    def delete(self, provider_name: str) -> None:
        """Forget the key of ``provider_name``; none kept is fine."""
        self._meta.delete(self._PREFIX + provider_name)
