"""Attachment storage figures (issue 14): storing a 50 MB file in an encrypted chat
database (chunked, hashed, one transaction with its message) and the peak memory that
takes above the baseline, against the budget of twice the file's size; then saving it
back out to a file.

The store runs in a fresh subprocess (``tests.unit.store.attachment_worker``, the same
worker the kill -9 test uses) so that its baseline is not the benchmark runner's; the
database is created and opened by the vault's own functions, with every pragma the app
uses.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.store.chats import ChatStore
from app.store.models import Tier
from app.vault.database import create_database, open_database
from tests.benchmarks._table import Row

SIZE_MB = 50
REPO = Path(__file__).resolve().parents[2]


def run() -> list[Row]:
    size = SIZE_MB * 1024 * 1024
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        source = root / "big.bin"
        with source.open("wb") as handle:
            for _ in range(SIZE_MB):
                handle.write(os.urandom(1024 * 1024))
        key = secrets.token_bytes(32)
        database = root / "standard.db"
        create_database(database, key)
        result = subprocess.run(
            [sys.executable, "-m", "tests.unit.store.attachment_worker", "measure",
             str(database), key.hex(), str(source)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )  # fmt: skip
        _, committed = result.stdout.splitlines()
        _, seconds, peak = committed.split()
        conn = open_database(database, key)
        try:
            store = ChatStore(conn, Tier.STANDARD)
            (chat,) = store.list_chats()
            (attachment,) = store.chat_attachments(chat.id)
            started = time.perf_counter()
            store.save_attachment(attachment.id, root / "saved.bin")
            saved = time.perf_counter() - started
        finally:
            conn.close()
    return [
        Row(f"attachments: store a {SIZE_MB} MB file (SQLCipher)", float(seconds), "s"),
        Row("attachments: store throughput", SIZE_MB / float(seconds), "MB/s"),
        Row(
            f"attachments: peak memory above baseline storing {SIZE_MB} MB",
            int(peak) / 2**20,
            "MB",
            budget=2 * size / 2**20,
        ),
        Row(f"attachments: save a {SIZE_MB} MB attachment to a file", saved, "s"),
    ]
