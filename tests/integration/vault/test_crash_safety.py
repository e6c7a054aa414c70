"""Kill -9 at random points during a passphrase change, a rekey and a key rotation.

Each run copies a profile with data in both databases, starts a worker that unlocks
and then changes the passphrase (or rekeys, or rotates every key), and SIGKILLs it at a
random moment within the operation's measured duration. Afterwards exactly one of the
old and new secrets works, and every row is still there. For the rotation, half of the
kills are aimed at the few milliseconds between its commit and its end, and an old copy
of ``vault.json`` with the old passphrase must open nothing current once it committed.

``CAMPAIGN`` collects each campaign's figures; they are printed at the end of the run.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.vault import DatabaseDamagedError, Vault, WrongSecretError
from app.vault.database import key_opens
from app.vault.slots import TIERS, SlotFile, unwrap_database_key
from tests.peers.vault_fixtures import TemplateVault

RUNS = 20
ROTATION_RUNS = 24
ROWS = 1500
OLD = "correct horse battery staple"
NEW = "a brand new passphrase for the crash test"
REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


@pytest.fixture(scope="module")
def seeded(template_vault: TemplateVault, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("crash") / "seeded"
    shutil.copytree(template_vault.path, target)
    with Vault.open(target) as vault:
        vault.unlock_with_passphrase(OLD)
        for tier in TIERS:
            connection = vault.connect(tier)
            connection.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)")
            connection.executemany(
                "INSERT INTO messages (body) VALUES (?)",
                [(f"{tier} message {i} " + "x" * 200,) for i in range(ROWS)],
            )
    return target


def _start(mode: str, profile: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.vault.crash_worker",
            mode,
            str(profile),
            OLD,
            NEW,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "READY", process.stderr.read() if process.stderr else line
    return process


def _finish(process: subprocess.Popen[str]) -> None:
    process.wait(timeout=30)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _duration(mode: str, seeded: Path, tmp_path: Path) -> float:
    profile = tmp_path / "reference"
    shutil.copytree(seeded, profile)
    process = _start(mode, profile)
    start = time.perf_counter()
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "DONE"
    elapsed = time.perf_counter() - start
    _finish(process)
    return elapsed


def _kill_at_random(
    mode: str, seeded: Path, profile: Path, window: float, rng: random.Random
) -> None:
    shutil.copytree(seeded, profile)
    process = _start(mode, profile)
    time.sleep(rng.uniform(0, window))
    os.kill(process.pid, signal.SIGKILL)
    _finish(process)


def _works(profile: Path, passphrase: str) -> bool:
    with Vault.open(profile) as vault:
        try:
            vault.unlock_with_passphrase(passphrase)
        except WrongSecretError:
            return False
        return True


def _assert_all_rows(profile: Path, passphrase: str) -> None:
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(passphrase)
        for tier in TIERS:
            count = vault.connect(tier).execute("SELECT count(*) FROM messages").fetchone()[0]
            assert count == ROWS, tier
        vault.verify_databases()
        assert not any(p.name.endswith(".rekey") for p in profile.iterdir())


@pytest.mark.slow
def test_kill_during_passphrase_change(seeded: Path, tmp_path: Path) -> None:
    window = _duration("passwd", seeded, tmp_path) * 1.2
    rng = random.Random(20261124)
    outcomes = []
    for run in range(RUNS):
        profile = tmp_path / f"run{run}"
        _kill_at_random("passwd", seeded, profile, window, rng)
        old_works, new_works = _works(profile, OLD), _works(profile, NEW)
        assert old_works != new_works, f"run {run}: old={old_works} new={new_works}"
        outcomes.append(new_works)
        _assert_all_rows(profile, NEW if new_works else OLD)
        shutil.rmtree(profile)
    assert len(outcomes) == RUNS


@pytest.mark.slow
def test_kill_during_rekey(seeded: Path, tmp_path: Path) -> None:
    window = _duration("rekey", seeded, tmp_path) * 1.2
    rng = random.Random(4242)
    pending_seen = 0
    for run in range(RUNS):
        profile = tmp_path / f"run{run}"
        _kill_at_random("rekey", seeded, profile, window, rng)
        before = SlotFile.from_bytes((profile / "vault.json").read_bytes())
        pending_seen += bool(before.pending_rekey)
        with Vault.open(profile) as vault:
            vault.unlock_with_passphrase(OLD)
            assert vault._vault_key is not None
            vault_key = bytes(vault._vault_key)
        for tier in TIERS:
            path = profile / f"{tier}.db"
            old_key = unwrap_database_key(before.databases[tier], vault_key, before.vault_id)
            candidates = [key_opens(path, old_key)]
            if tier in before.pending_rekey:
                new_key = unwrap_database_key(
                    before.pending_rekey[tier], vault_key, before.vault_id
                )
                candidates.append(key_opens(path, new_key))
            assert candidates.count(True) == 1, f"run {run} {tier}: {candidates}"
        _assert_all_rows(profile, OLD)
        after = SlotFile.from_bytes((profile / "vault.json").read_bytes())
        assert not after.pending_rekey
        shutil.rmtree(profile)
    assert pending_seen > 0, "no run was killed inside the rekey; widen the window"


def _old_copy_opens_nothing(profile: Path, old_json: bytes, tmp_path: Path) -> None:
    attacker = tmp_path / "attacker"
    shutil.copytree(profile, attacker, ignore=shutil.ignore_patterns("vault.lock"))
    (attacker / "vault.json").write_bytes(old_json)
    with Vault.open(attacker) as vault:
        vault.unlock_with_passphrase(OLD)  # the old file still opens for the old secret...
        for tier in TIERS:
            with pytest.raises(DatabaseDamagedError):  # ...and its keys open no database
                vault.connect(tier)
    shutil.rmtree(attacker)


def _rotation_timing(seeded: Path, tmp_path: Path) -> tuple[float, float]:
    """Seconds from READY to COMMITTED and from COMMITTED to DONE of one rotation."""
    profile = tmp_path / "reference"
    shutil.copytree(seeded, profile)
    process = _start("rotate", profile)
    start = time.perf_counter()
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "COMMITTED"
    committed = time.perf_counter()
    assert process.stdout.readline().strip() == "DONE"
    done = time.perf_counter()
    _finish(process)
    shutil.rmtree(profile)
    return committed - start, done - committed


@pytest.mark.slow
def test_kill_during_key_rotation(seeded: Path, tmp_path: Path) -> None:
    before_commit, after_commit = _rotation_timing(seeded, tmp_path)
    old_json = (seeded / "vault.json").read_bytes()
    rng = random.Random(20261130)
    phases = {"before the commit": 0, "after the commit": 0, "after the end": 0}
    for run in range(ROTATION_RUNS):
        profile = tmp_path / f"run{run}"
        shutil.copytree(seeded, profile)
        process = _start("rotate", profile)
        assert process.stdout is not None
        if run % 2 == 0:  # anywhere in the whole operation
            time.sleep(rng.uniform(0, (before_commit + after_commit) * 1.2))
        else:  # aimed at the swap after the commit
            assert process.stdout.readline().strip() == "COMMITTED"
            time.sleep(rng.uniform(0, after_commit * 1.3))
        os.kill(process.pid, signal.SIGKILL)
        _finish(process)

        crashed = SlotFile.from_bytes((profile / "vault.json").read_bytes())
        if crashed.previous_keys:
            phases["after the commit"] += 1
        elif crashed.databases[TIERS[0]].generation == 1:
            phases["before the commit"] += 1
        else:
            phases["after the end"] += 1
        old_works, new_works = _works(profile, OLD), _works(profile, NEW)
        assert old_works != new_works, f"run {run}: old={old_works} new={new_works}"
        working = NEW if new_works else OLD
        _assert_all_rows(profile, working)
        after = SlotFile.from_bytes((profile / "vault.json").read_bytes())
        assert after.is_settled, f"run {run}"
        assert [after.databases[tier].generation for tier in TIERS] == (
            [2, 2] if new_works else [1, 1]
        )
        if new_works:
            _old_copy_opens_nothing(profile, old_json, tmp_path)
        shutil.rmtree(profile)
    CAMPAIGN["key rotation"] = {"runs": ROTATION_RUNS, **phases, "rows lost": 0}
    assert phases["before the commit"] > 0, phases
    assert phases["after the commit"] > 0, phases


CAMPAIGN: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_campaign() -> Iterator[None]:
    yield
    for name, figures in CAMPAIGN.items():
        print(f"\ncrash campaign, {name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
