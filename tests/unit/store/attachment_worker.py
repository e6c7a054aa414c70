"""A subprocess that stores one large attachment, for the kill -9 test and the memory figure.

``python -m tests.unit.store.attachment_worker MODE DATABASE KEY_HEX SOURCE`` opens the
encrypted chat database, creates a chat (committed), then in ONE transaction adds a message
and attaches SOURCE to it. It prints ``MIDWAY`` once ``STALL_AFTER`` chunks have been read
(MODE ``stall`` then waits there to be killed) and ``COMMITTED`` when the transaction is
done; MODE ``measure`` prints ``COMMITTED <seconds> <peak bytes above baseline>``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import psutil  # type: ignore[import-untyped]

from app.store.chats import ChatStore
from app.store.models import Tier
from app.vault.database import open_database

STALL_AFTER = 10
MAX_SIZE = 200 * 1024 * 1024


class PeakMemory:
    """Peak resident memory above the resident memory at entry: sampled every millisecond,
    and on Linux also the kernel's high-water mark (VmHWM), reset at entry."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._exact = False
        self.baseline = 0
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        self._exact = _reset_high_water_mark()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if self._exact:
            self.peak = max(self.peak, _high_water_mark())

    @property
    def above_baseline(self) -> int:
        return self.peak - self.baseline

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._process.memory_info().rss)


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _high_water_mark() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


class Announcing:
    """A file that says MIDWAY on stdout after ``STALL_AFTER`` reads (and, when
    ``stall``, then sleeps until it is killed)."""

    def __init__(self, handle: BinaryIO, *, stall: bool) -> None:
        self._handle = handle
        self._stall = stall
        self._reads = 0
        self.name = handle.name

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._reads == STALL_AFTER + 1:
            print("MIDWAY", flush=True)
            if self._stall:
                time.sleep(600)
        return self._handle.read(size)

    def seekable(self) -> bool:
        return False  # one pass: every chunk is read while the transaction is open


def main(mode: str, database: str, key_hex: str, source: str) -> None:
    conn = open_database(Path(database), bytes.fromhex(key_hex))
    store = ChatStore(conn, Tier.STANDARD)
    chat = store.create_chat(title="kill test")
    print("READY", flush=True)
    with Path(source).open("rb") as handle:
        if mode == "measure":
            started = time.perf_counter()
            with PeakMemory() as memory, store.transaction():
                message = store.add_message(chat.id, "user", "see attached", parent_id=None)
                store.add_attachment(message.id, handle, max_size=MAX_SIZE)
            elapsed = time.perf_counter() - started
            print(f"COMMITTED {elapsed:.3f} {memory.above_baseline}", flush=True)
        else:
            wrapped = Announcing(handle, stall=mode == "stall")
            with store.transaction():
                message = store.add_message(chat.id, "user", "see attached", parent_id=None)
                store.add_attachment(message.id, wrapped, max_size=MAX_SIZE)  # type: ignore[arg-type]
            print("COMMITTED", flush=True)
    conn.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
