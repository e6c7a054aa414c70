"""Provider API keys kept in the Standard database (``api_key: vault``).

The SQL half of :mod:`app.api_keys`: one row of the ``vault_meta`` table per provider.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from app.vault.errors import DatabaseDamagedError

__all__ = ["VaultKeyStore"]

log = logging.getLogger(__name__)


class VaultKeyStore:
    """Provider keys in the Standard database, encrypted with the Standard tier's key.

    ``connect`` opens a new connection to ``standard.db`` (``Vault.connect``); it raises
    a :class:`VaultError` while the vault or its Standard tier is locked. Each call opens
    and closes its own connection, so it is safe on any worker thread. Keys live in the
    ``vault_meta`` table every vault database has had since format 1, one row per
    provider: no schema change, and a rekey or rotation copies them with the rest.
    """

    _PREFIX: Final = "provider-key/"

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect

    def _run(self, sql: str, *args: str) -> list[Any]:
        import sqlcipher3

        connection = self._connect()
        try:
            return list(connection.execute(sql, args).fetchall())
        except sqlcipher3.Error as error:
            log.warning("provider keys in the Standard database failed", exc_info=True)
            raise DatabaseDamagedError(
                "The Standard database could not be read or written; check the disk and "
                "run 'hushchat vault verify'."
            ) from error
        finally:
            connection.close()

    def store(self, provider_name: str, key: str) -> None:
        """Keep ``key`` for ``provider_name``, replacing any previous one."""
        self._run(
            "INSERT OR REPLACE INTO vault_meta (name, value) VALUES (?, ?)",
            self._PREFIX + provider_name,
            key,
        )

    def load(self, provider_name: str) -> str | None:
        """The key kept for ``provider_name``, or None."""
        rows = self._run(
            "SELECT value FROM vault_meta WHERE name = ?", self._PREFIX + provider_name
        )
        return str(rows[0][0]) if rows else None

    def delete(self, provider_name: str) -> None:
        """Forget the key of ``provider_name``; none kept is fine."""
        self._run("DELETE FROM vault_meta WHERE name = ?", self._PREFIX + provider_name)
