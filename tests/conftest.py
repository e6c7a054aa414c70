"""Test-suite-wide configuration: fixtures of the real peers, loaded as plugins, and a
private runtime directory for the unlock agent's sockets."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.peers.llama_fixtures", "tests.peers.vault_fixtures"]


@pytest.fixture(autouse=True, scope="session")
def private_runtime_dir() -> Iterator[str]:
    """``$XDG_RUNTIME_DIR`` for the whole run: every unlocked window in the tests serves
    the unlock agent's socket there (and leaves its lock file), never in the user's own
    runtime directory. Short, as socket paths are limited to about 100 bytes."""
    previous = os.environ.get("XDG_RUNTIME_DIR")
    path = tempfile.mkdtemp(prefix="hc-run-", dir="/tmp" if os.name != "nt" else None)
    Path(path).chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = previous
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _unfreeze_the_collector() -> Iterator[None]:
    """An unlocked window freezes the objects alive then out of the garbage collector
    (app.gc_policy); in the test process that would keep every earlier test's cyclic
    garbage for good, so each test ends with the collector as it found it."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
    from app import gc_policy

    gc_policy.set_streaming(False)
