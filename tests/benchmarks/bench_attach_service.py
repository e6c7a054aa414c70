"""Attaching a 50 MB text file through the chat service (issue 14): the whole send (read
and checked, stored with its message, excerpts ranked for the question, answered by a
scripted provider) and its peak memory above the baseline, against the budget of twice
the file's size.

The send runs in a fresh subprocess (``tests.benchmarks.attach_service_worker``) on an
encrypted database made by the vault's own functions; peak memory is the resident size
(sampled, and the kernel's high-water mark) and Python's own allocations (tracemalloc).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from app.vault.database import create_database
from tests.benchmarks._table import Row

SIZE_MB = 50
REPO = Path(__file__).resolve().parents[2]


def write_text_file(path: Path, size: int) -> None:
    """``size`` bytes of plain English-like lines, the launch code once in the middle."""
    line = b"Chapter notes on the weather, the tides and the harvest of the region.\n"
    with path.open("wb") as handle:
        written = 0
        while written < size:
            if size // 2 <= written < size // 2 + len(line):
                handle.write(b"The launch code is ZEBRA-42.\n")
            handle.write(line)
            written = handle.tell()
        handle.truncate(size)


def run() -> list[Row]:
    size = SIZE_MB * 1024 * 1024
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        source = root / "big.txt"
        write_text_file(source, size)
        key = secrets.token_bytes(32)
        database = root / "standard.db"
        create_database(database, key)
        result = subprocess.run(
            [sys.executable, "-m", "tests.benchmarks.attach_service_worker",
             str(database), key.hex(), str(source)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )  # fmt: skip
    _, seconds, rss, traced = result.stdout.split()
    budget = 2 * size / 2**20
    return [
        Row(f"attachments: send with a {SIZE_MB} MB text file (service)", float(seconds), "s"),
        Row(
            f"attachments: peak memory above baseline attaching {SIZE_MB} MB (RSS)",
            int(rss) / 2**20,
            "MB",
            budget=budget,
        ),
        Row(
            f"attachments: peak Python allocations attaching {SIZE_MB} MB (tracemalloc)",
            int(traced) / 2**20,
            "MB",
            budget=budget,
        ),
    ]
