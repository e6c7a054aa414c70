"""Subprocess for the crash-safety tests: unlock, say READY, then change or rekey.

Run as ``python -m tests.integration.vault.crash_worker MODE PROFILE OLD NEW``; the
parent kills it with SIGKILL at a random moment after READY.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.vault import Vault


def main() -> None:
    mode, profile, old, new = sys.argv[1:5]
    vault = Vault.open(Path(profile))
    vault.unlock_with_passphrase(old)
    print("READY", flush=True)
    if mode == "passwd":
        vault.change_passphrase(new)
    else:
        vault.rekey()
    print("DONE", flush=True)
    vault.close()


if __name__ == "__main__":
    main()
