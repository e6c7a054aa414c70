"""``hushchat vault …`` as a subprocess: exit codes, one-line errors, files untouched."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.vault import Vault
from app.vault.slots import canonical_json
from tests.peers.keychain import secret_service

HUSHCHAT = Path(sys.executable).with_name("hushchat")
PASSPHRASE = "correct horse battery staple"
FLOOR = ["--kdf-memory-mib", "64", "--kdf-iterations", "3", "--kdf-parallelism", "4"]


def hushchat(
    profile: Path | None, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_")}
    full_env.update(env or {})
    argv = [str(HUSHCHAT)]
    if profile is not None:
        argv += ["--profile", str(profile)]
    return subprocess.run(
        [*argv, "vault", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def snapshot(profile: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(profile.iterdir()) if p.is_file()}


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert text in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    profile = tmp_path_factory.mktemp("e2e") / "profile"
    result = hushchat(profile, "init", "--passphrase-stdin", *FLOOR, stdin=PASSPHRASE + "\n")
    assert result.returncode == 0, result.stderr
    code_lines = re.findall(r"^\d{6}-\d{6}-\d{6}-\d{6}$", result.stdout, re.MULTILINE)
    assert len(code_lines) == 4
    return profile, "\n".join(code_lines)


@pytest.fixture
def profile(initialised: tuple[Path, str], tmp_path: Path) -> Path:
    target = tmp_path / "profile"
    shutil.copytree(initialised[0], target)
    return target


@pytest.fixture
def recovery_code(initialised: tuple[Path, str]) -> str:
    return initialised[1]


def test_init_status_slots(profile: Path) -> None:
    status = hushchat(profile, "status")
    assert status.returncode == 0, status.stderr
    assert "key slots: 2" in status.stdout
    assert "Argon2id 64 MiB / t=3 / p=4" in status.stdout
    slots = hushchat(None, "slots", env={"HUSHCHAT_PROFILE": str(profile)})
    assert slots.returncode == 0
    assert [line.split("\t")[1] for line in slots.stdout.splitlines()] == [
        "passphrase",
        "recovery",
    ]


def test_init_refuses_existing_vault(profile: Path) -> None:
    before = snapshot(profile)
    result = hushchat(profile, "init", "--passphrase-stdin", *FLOOR, stdin="another one\n")
    assert_one_line_error(result, 4, "refusing to overwrite")
    assert snapshot(profile) == before


def test_init_refuses_kdf_below_floor(tmp_path: Path) -> None:
    args = ["--kdf-memory-mib", "32", "--kdf-iterations", "3", "--kdf-parallelism", "4"]
    result = hushchat(tmp_path / "p", "init", "--passphrase-stdin", *args, stdin="pass phrase\n")
    assert_one_line_error(result, 4, "below the floor")


def test_weak_passphrase_is_refused_unless_allowed(tmp_path: Path) -> None:
    result = hushchat(tmp_path / "p", "init", "--passphrase-stdin", *FLOOR, stdin="qwerty123\n")
    assert_one_line_error(result, 4, "Weak passphrase")
    assert "--allow-weak-passphrase" in result.stderr
    assert not (tmp_path / "p" / "vault.json").exists()
    allowed = hushchat(tmp_path / "p", "init", "--passphrase-stdin", "--allow-weak-passphrase",
                       *FLOOR, stdin="qwerty123\n")  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: Weak passphrase" in allowed.stderr
    assert "qwerty123" not in allowed.stdout + allowed.stderr


def test_verify_right_passphrase(profile: Path) -> None:
    assert (
        hushchat(profile, "verify", "--passphrase-stdin", stdin=PASSPHRASE + "\n").returncode == 0
    )
    result = hushchat(profile, "verify", env={"HUSHCHAT_PASSPHRASE": PASSPHRASE})
    assert result.returncode == 0, result.stderr
    assert PASSPHRASE not in result.stdout + result.stderr


def test_wrong_passphrase_exit_4_and_nothing_changes(profile: Path) -> None:
    before = snapshot(profile)
    result = hushchat(profile, "verify", "--passphrase-stdin", stdin="wrong passphrase\n")
    assert_one_line_error(result, 4, "passphrase does not open this vault")
    assert "wrong passphrase" not in result.stderr
    assert snapshot(profile) == before


def test_wrong_recovery_code_exit_4_and_nothing_changes(profile: Path) -> None:
    before = snapshot(profile)
    wrong = "\n".join(["000000-000001-000002-000003"] * 4)
    digits = list(wrong.replace("\n", "-").split("-"))
    # a well-formed code (all groups check) that is not this vault's
    fixed = "-".join(f"{int(g) // 11 * 11 + i % 11:06d}" for i, g in enumerate(digits))
    result = hushchat(profile, "verify", "--unlock-with", "recovery-code", "--passphrase-stdin",
                      stdin=fixed + "\n")  # fmt: skip
    assert_one_line_error(result, 4, "recovery code does not open this vault")
    typo = hushchat(profile, "verify", "--unlock-with", "recovery-code",
                    env={"HUSHCHAT_RECOVERY_CODE": "123456" * 16})  # fmt: skip
    assert_one_line_error(typo, 4, "Group 1 of the recovery code")
    assert snapshot(profile) == before


@pytest.mark.skipif(any(Path("/dev").glob("hidraw*")), reason="a real HID device is attached")
def test_missing_security_key_exit_4_and_nothing_changes(profile: Path) -> None:
    before = snapshot(profile)
    result = hushchat(profile, "verify", "--unlock-with", "security-key")
    assert_one_line_error(result, 4, "No FIDO2 security key was found")
    add = hushchat(profile, "add-key", env={"HUSHCHAT_PASSPHRASE": PASSPHRASE})
    assert_one_line_error(add, 4, "No FIDO2 security key was found")
    assert snapshot(profile) == before


def test_no_terminal_and_no_secret_leaves_the_vault_locked(profile: Path) -> None:
    result = hushchat(profile, "verify")
    assert_one_line_error(result, 4, "--passphrase-stdin")  # locked: exit 4, how to unlock
    assert "REDACTED" not in result.stderr


def test_passwd_then_recover(profile: Path, recovery_code: str) -> None:
    new = "an entirely new passphrase here"
    changed = hushchat(profile, "passwd", "--passphrase-stdin", stdin=f"{PASSPHRASE}\n{new}\n")
    assert changed.returncode == 0, changed.stderr
    old_fails = hushchat(profile, "verify", env={"HUSHCHAT_PASSPHRASE": PASSPHRASE})
    assert old_fails.returncode == 4
    assert hushchat(profile, "verify", env={"HUSHCHAT_PASSPHRASE": new}).returncode == 0

    third = "recovered passphrase after forgetting"
    recovered = hushchat(
        profile,
        "recover",
        "--passphrase-stdin",
        "--new-recovery-code",
        stdin=recovery_code.replace("\n", " ") + "\n" + third + "\n",
    )
    assert recovered.returncode == 0, recovered.stderr
    assert "New recovery code" in recovered.stdout
    assert hushchat(profile, "verify", env={"HUSHCHAT_PASSPHRASE": third}).returncode == 0
    stale = hushchat(profile, "verify", "--unlock-with", "recovery-code",
                     env={"HUSHCHAT_RECOVERY_CODE": recovery_code})  # fmt: skip
    assert stale.returncode == 4


def test_remove_slot_confirmation_and_last_slot(profile: Path) -> None:
    slot_ids = [line.split("\t")[0] for line in hushchat(profile, "slots").stdout.splitlines()]
    env = {"HUSHCHAT_PASSPHRASE": PASSPHRASE}
    unconfirmed = hushchat(profile, "remove-slot", slot_ids[1], env=env)
    assert_one_line_error(unconfirmed, 2, "--yes")
    unknown = hushchat(profile, "remove-slot", "deadbeef", "--yes", env=env)
    assert_one_line_error(unknown, 4, "No key slot has the id")
    assert hushchat(profile, "remove-slot", slot_ids[1], "--yes", env=env).returncode == 0
    last = hushchat(profile, "remove-slot", slot_ids[0], "--yes", env=env)
    assert_one_line_error(last, 4, "only key slot")


def test_rekey(profile: Path) -> None:
    before = snapshot(profile)
    result = hushchat(profile, "rekey", env={"HUSHCHAT_PASSPHRASE": PASSPHRASE})
    assert result.returncode == 0, result.stderr
    after = snapshot(profile)
    assert after["standard.db"] != before["standard.db"]
    assert "key generation 2" in hushchat(profile, "status").stdout
    assert hushchat(profile, "verify", env={"HUSHCHAT_PASSPHRASE": PASSPHRASE}).returncode == 0


def test_rekey_locks_out_old_copies_of_the_slot_file(
    profile: Path, recovery_code: str, tmp_path: Path
) -> None:
    old_json = (profile / "vault.json").read_bytes()
    result = hushchat(profile, "rekey", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
    assert result.returncode == 0, result.stderr
    assert "New recovery code" in result.stdout
    new_code = "\n".join(re.findall(r"^\d{6}-\d{6}-\d{6}-\d{6}$", result.stdout, re.MULTILINE))
    copy = tmp_path / "copy"
    shutil.copytree(profile, copy)
    (copy / "vault.json").write_bytes(old_json)
    for env in ({"HUSHCHAT_PASSPHRASE": PASSPHRASE}, {"HUSHCHAT_RECOVERY_CODE": recovery_code}):
        method = "passphrase" if "HUSHCHAT_PASSPHRASE" in env else "recovery-code"
        stale = hushchat(copy, "verify", "--unlock-with", method, env=env)
        assert stale.returncode == 4, stale.stderr
        # SQLCipher itself logs the failed page decryption on stderr before Hushchat's line.
        assert "does not match its key" in stale.stderr.strip().splitlines()[-1]
        assert "Traceback" not in stale.stderr
    old_code = hushchat(profile, "verify", "--unlock-with", "recovery-code",
                        env={"HUSHCHAT_RECOVERY_CODE": recovery_code})  # fmt: skip
    assert_one_line_error(old_code, 4, "recovery code does not open this vault")
    fresh = hushchat(profile, "verify", "--unlock-with", "recovery-code",
                     env={"HUSHCHAT_RECOVERY_CODE": new_code})  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr


def test_truncated_slot_file_is_reported(profile: Path) -> None:
    path = profile / "vault.json"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    before = snapshot(profile)
    for args in (["status"], ["verify", "--passphrase-stdin"]):
        result = hushchat(profile, *args, stdin=PASSPHRASE + "\n")
        assert_one_line_error(result, 4, "vault.json is damaged")
    assert snapshot(profile) == before


def _rewrite(path: Path, edit: Any) -> None:
    document = json.loads(path.read_bytes())
    edit(document)
    document.pop("checksum")
    document["checksum"] = "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
    path.write_text(json.dumps(document, indent=2))


def test_edited_slot_file_is_reported(profile: Path) -> None:
    path = profile / "vault.json"
    text = path.read_text().replace('"Passphrase"', '"Passphrase!"')
    path.write_text(text)
    before = snapshot(profile)
    result = hushchat(profile, "verify", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
    assert_one_line_error(result, 4, "checksum does not match")
    assert snapshot(profile) == before


def test_slot_file_edited_with_fixed_checksum_is_caught_by_the_mac(profile: Path) -> None:
    _rewrite(profile / "vault.json", lambda d: d.update(created="2000-01-01T00:00:00+00:00"))
    before = snapshot(profile)
    result = hushchat(profile, "verify", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
    assert_one_line_error(result, 4, "modified outside Hushchat")
    assert snapshot(profile) == before


def test_kdf_below_floor_in_slot_file_is_reported(profile: Path) -> None:
    def weaken(document: dict[str, Any]) -> None:
        document["slots"][0]["params"]["memory_kib"] = 8

    _rewrite(profile / "vault.json", weaken)
    before = snapshot(profile)
    result = hushchat(profile, "verify", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
    assert_one_line_error(result, 4, "below the floor")
    assert snapshot(profile) == before


def test_flipped_database_byte_is_reported(profile: Path) -> None:
    with Vault.open(profile) as vault:
        vault.unlock_with_passphrase(PASSPHRASE)
        connection = vault.connect("private")
        connection.execute("CREATE TABLE t (x TEXT)")
        connection.executemany("INSERT INTO t VALUES (?)", [("y" * 300,) for _ in range(100)])
    path = profile / "private.db"
    data = bytearray(path.read_bytes())
    data[len(data) - 2000] ^= 0x10
    path.write_bytes(bytes(data))
    before = snapshot(profile)
    result = hushchat(profile, "verify", "--passphrase-stdin", stdin=PASSPHRASE + "\n")
    assert_one_line_error(result, 4, "private.db is damaged")
    assert snapshot(profile) == before


def test_profile_in_use(profile: Path) -> None:
    with Vault.open(profile):
        result = hushchat(profile, "verify", env={"HUSHCHAT_PASSPHRASE": PASSPHRASE})
        assert_one_line_error(result, 4, "open in another Hushchat process")
        assert "in use by another process: yes" in hushchat(profile, "status").stdout


def test_no_vault(tmp_path: Path) -> None:
    result = hushchat(tmp_path, "status")
    assert_one_line_error(result, 4, "hushchat vault init")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.keychain
def test_add_keychain_and_unlock_with_it(profile: Path, tmp_path: Path) -> None:
    with secret_service(tmp_path / "secret-service") as env:
        env = {**env, "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring"}
        added = hushchat(profile, "add-keychain", env={**env, "HUSHCHAT_PASSPHRASE": PASSPHRASE})
        assert added.returncode == 0, added.stderr
        unlocked = hushchat(profile, "verify", "--unlock-with", "keychain", env=env)
        assert unlocked.returncode == 0, unlocked.stderr
    # A machine without that keychain: the entry is not there.
    null_backend = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    elsewhere = hushchat(profile, "verify", "--unlock-with", "keychain", env=null_backend)
    assert elsewhere.returncode == 4
