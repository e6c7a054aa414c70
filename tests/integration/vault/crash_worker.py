"""Subprocess for the crash-safety tests: unlock, say READY, then change, rekey or rotate.

Run as ``python -m tests.integration.vault.crash_worker MODE PROFILE OLD NEW``; the
parent kills it with SIGKILL at a random moment after READY. In ``rotate`` mode it also
says COMMITTED the moment the new slot file is on disk (just before the re-encrypted
copies are swapped in), so the parent can aim kills at the short time after the commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.vault import Vault
from app.vault.kdf import FLOOR_PARAMS


def main() -> None:
    mode, profile, old, new = sys.argv[1:5]
    vault = Vault.open(Path(profile))
    vault.unlock_with_passphrase(old)
    if mode == "rotate":
        finish = Vault._finish_rotation

        def announce_commit(self: Vault, *, temps_verified: bool) -> None:
            print("COMMITTED", flush=True)
            finish(self, temps_verified=temps_verified)

        Vault._finish_rotation = announce_commit  # type: ignore[method-assign]
    print("READY", flush=True)
    if mode == "passwd":
        vault.change_passphrase(new)
    elif mode == "rotate":
        rotation = vault.rotate_keys(passphrase=new, kdf=FLOOR_PARAMS)
        assert rotation.unfinished is None
    else:
        vault.rekey()
    print("DONE", flush=True)
    vault.close()


if __name__ == "__main__":
    main()
