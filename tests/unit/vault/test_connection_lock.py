"""A short operation on a worker thread (an API key or a flag in ``vault_meta``) and a lock
from the window's thread: the lock waits for the operation instead of closing its
connection under a running query (SQLite then crashes the process: seen in CI as a
segmentation fault when a window closed right after an unlock)."""

from __future__ import annotations

import threading

import pytest

from app.tiers import Tier
from app.vault.errors import VaultLockedError
from app.vault.vault import Vault


def test_lock_waits_for_an_operation_in_progress(unlocked: Vault) -> None:
    inside, go_on = threading.Event(), threading.Event()
    counted: list[int] = []

    def operation() -> None:
        with unlocked.connection(Tier.STANDARD) as connection:
            inside.set()
            go_on.wait(10)
            counted.append(connection.execute("SELECT count(*) FROM vault_meta").fetchone()[0])

    worker = threading.Thread(target=operation)
    worker.start()
    assert inside.wait(10)
    locker = threading.Thread(target=unlocked.lock)
    locker.start()
    locker.join(0.3)
    assert locker.is_alive(), "the lock closed a connection in use"
    go_on.set()
    worker.join(10)
    locker.join(10)
    assert counted and counted[0] >= 0
    assert unlocked.is_locked
    with pytest.raises(VaultLockedError), unlocked.connection(Tier.STANDARD):
        pass
