"""Vault figures: KDF calibration, passphrase unlock at the calibrated parameters, DB open.

* calibration - the Argon2id parameters ``calibrate()`` picks on this machine, its run
  time, and the ratio of memory x passes to the floor (64 MiB x 3);
* passphrase unlock - median wall time of ``unlock_with_passphrase`` at those parameters
  (the Argon2id derivation, HKDF, AES-GCM unwrap, slot-file MAC and database-key unwraps),
  budget ≤ 1 s (shared DESIGN §8);
* floor unlock - the same at the floor parameters, for comparison;
* database open - median time of ``connect("standard")`` (key, pragmas, WAL, first page).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from app.vault import FLOOR_PARAMS, KdfParams, Vault, calibrate
from tests.benchmarks._table import Row

PASSPHRASE = "benchmark passphrase with enough words"
UNLOCK_RUNS = 5
OPEN_RUNS = 50
UNLOCK_BUDGET_SECONDS = 1.0


def _median_unlock(profile: Path) -> float:
    timings = []
    with Vault.open(profile) as vault:
        for _ in range(UNLOCK_RUNS):
            start = time.perf_counter()
            vault.unlock_with_passphrase(PASSPHRASE)
            timings.append(time.perf_counter() - start)
            vault.lock()
    return statistics.median(timings)


def _create(base: Path, name: str, params: KdfParams) -> Path:
    profile = base / name
    vault, _code = Vault.create(profile, PASSPHRASE, kdf=params)
    vault.close()
    return profile


def run() -> list[Row]:
    """Measure and return the vault's figures."""
    start = time.perf_counter()
    params = calibrate()
    calibration_seconds = time.perf_counter() - start
    floor_units = FLOOR_PARAMS.memory_kib * FLOOR_PARAMS.iterations
    rows = [
        Row(
            "vault: KDF calibration, cost vs floor",
            params.memory_kib * params.iterations / floor_units,
            "x floor",
            note=f"picked Argon2id {params.describe()} in {calibration_seconds:.1f} s",
        )
    ]
    with tempfile.TemporaryDirectory(prefix="hushchat-bench-vault-") as directory:
        base = Path(directory)
        calibrated = _create(base, "calibrated", params)
        rows.append(
            Row(
                "vault: passphrase unlock, calibrated KDF",
                _median_unlock(calibrated),
                "s",
                budget=UNLOCK_BUDGET_SECONDS,
                note=f"median of {UNLOCK_RUNS}, Argon2id {params.describe()}",
            )
        )
        floor = _create(base, "floor", FLOOR_PARAMS)
        rows.append(
            Row(
                "vault: passphrase unlock, floor KDF",
                _median_unlock(floor),
                "s",
                note=f"median of {UNLOCK_RUNS}, Argon2id {FLOOR_PARAMS.describe()}",
            )
        )
        with Vault.open(floor) as vault:
            vault.unlock_with_passphrase(PASSPHRASE)
            timings = []
            for _ in range(OPEN_RUNS):
                begin = time.perf_counter()
                connection = vault.connect("standard")
                timings.append(time.perf_counter() - begin)
                connection.close()
        rows.append(
            Row(
                "vault: database open (key + pragmas)",
                statistics.median(timings) * 1000,
                "ms",
                note=f"median of {OPEN_RUNS} connect('standard') calls",
            )
        )
    return rows
