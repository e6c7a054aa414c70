"""``hushchat vault`` in-process: weak passphrases refused unless allowed, key rotation
(``rekey``, ``passwd --rotate``, ``remove-slot --rotate``) and its hints, the warning
before the last passphrase goes, and what a keychain unlock verifies."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import ExitCode
from app.vault import DatabaseDamagedError, RecoveryCode, Vault, WrongSecretError
from tests.peers.keychain import MemoryKeyring, replaced_keyring
from tests.peers.vault_fixtures import TemplateVault, snapshot
from tests.unit.vault.test_cli_prompts import (
    FLOOR,
    NEW,
    no_secrets_in_environment,
    opens_with,
    stdin,
    typed,
    vault,
)

__all__ = ["no_secrets_in_environment"]  # the autouse fixture, used by name

WEAK = "qwerty123"


def _printed_code(out: str) -> RecoveryCode:
    lines = [line for line in out.splitlines() if line.count("-") == 3 and line[:6].isdigit()]
    return RecoveryCode.parse("\n".join(lines[-4:]))


def _old_json_opens_nothing(profile: Path, old_json: bytes, passphrase: str, tmp: Path) -> None:
    attacker = tmp / "attacker"
    shutil.copytree(profile, attacker, ignore=shutil.ignore_patterns("vault.lock"))
    (attacker / "vault.json").write_bytes(old_json)
    with Vault.open(attacker) as opened:
        opened.unlock_with_passphrase(passphrase)
        with pytest.raises(DatabaseDamagedError):
            opened.connect("standard")
    shutil.rmtree(attacker)


# ----------------------------------------------------------------- weak passphrases


def test_init_refuses_a_weak_passphrase_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, WEAK + "\n")
    assert vault(tmp_path / "p", "init", "--passphrase-stdin", *FLOOR) == ExitCode.VAULT
    err = capsys.readouterr().err
    assert "Weak passphrase (strength 0/4" in err
    assert "--allow-weak-passphrase" in err
    assert WEAK not in err
    assert not (tmp_path / "p" / "vault.json").exists()

    stdin(monkeypatch, WEAK + "\n")
    args = ("init", "--passphrase-stdin", "--allow-weak-passphrase", *FLOOR)
    assert vault(tmp_path / "p", *args) == 0
    assert "warning: Weak passphrase" in capsys.readouterr().err
    assert opens_with(tmp_path / "p", WEAK)


def test_passwd_and_recover_refuse_a_weak_passphrase(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(profile)
    stdin(monkeypatch, f"{template_vault.passphrase}\n{WEAK}\n")
    assert vault(profile, "passwd", "--passphrase-stdin") == ExitCode.VAULT
    assert "--allow-weak-passphrase" in capsys.readouterr().err
    code = " ".join(template_vault.recovery_code.formatted().split())
    stdin(monkeypatch, f"{code}\n{WEAK}\n")
    assert vault(profile, "recover", "--passphrase-stdin") == ExitCode.VAULT
    assert "Weak passphrase" in capsys.readouterr().err
    assert snapshot(profile)["vault.json"] == before["vault.json"]

    stdin(monkeypatch, f"{code}\n{WEAK}\n")
    assert vault(profile, "recover", "--passphrase-stdin", "--allow-weak-passphrase") == 0
    assert opens_with(profile, WEAK)


# ----------------------------------------------------------------- rotation


def test_rekey_rotates_every_key_and_prints_the_new_code(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    old_json = (profile / "vault.json").read_bytes()
    stdin(monkeypatch, template_vault.passphrase + "\n")
    assert vault(profile, "rekey", "--passphrase-stdin") == 0
    out = capsys.readouterr().out
    assert "Keys rotated" in out
    new_code = _printed_code(out)
    assert [db.generation for db in Vault.status(profile).databases] == [2, 2]
    assert opens_with(profile, template_vault.passphrase)  # kept: typed to unlock
    _old_json_opens_nothing(profile, old_json, template_vault.passphrase, tmp_path)
    with Vault.open(profile) as opened:
        with pytest.raises(WrongSecretError):
            opened.unlock_with_recovery_code(template_vault.recovery_code)
        opened.unlock_with_recovery_code(new_code)


def test_rekey_after_the_recovery_code_asks_for_the_passphrase_to_keep(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = " ".join(template_vault.recovery_code.formatted().split())
    stdin(monkeypatch, f"{code}\nnot the passphrase\n")
    args = ("rekey", "--unlock-with", "recovery-code", "--passphrase-stdin")
    before = snapshot(profile)
    assert vault(profile, *args) == ExitCode.VAULT
    assert "passphrase does not open" in capsys.readouterr().err
    assert snapshot(profile)["vault.json"] == before["vault.json"]
    stdin(monkeypatch, f"{code}\n{template_vault.passphrase}\n")
    assert vault(profile, *args) == 0
    assert opens_with(profile, template_vault.passphrase)


def test_passwd_hints_at_rotation_and_rotate_does_it(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    old_json = (profile / "vault.json").read_bytes()
    stdin(monkeypatch, f"{template_vault.passphrase}\n{NEW}\n")
    assert vault(profile, "passwd", "--passphrase-stdin") == 0
    captured = capsys.readouterr()
    assert "Passphrase changed." in captured.out
    assert "hint: an old copy of vault.json" in captured.err
    assert "passwd --rotate" in captured.err
    # Without rotation the old file and the old passphrase still open the data...
    attacker = tmp_path / "before"
    shutil.copytree(profile, attacker, ignore=shutil.ignore_patterns("vault.lock"))
    (attacker / "vault.json").write_bytes(old_json)
    assert opens_with(attacker, template_vault.passphrase)
    with Vault.open(attacker) as opened:
        opened.unlock_with_passphrase(template_vault.passphrase)
        opened.connect("private")

    # ...and with it they do not.
    third = "a third passphrase for the rotation"
    stdin(monkeypatch, f"{NEW}\n{third}\n")
    assert vault(profile, "passwd", "--passphrase-stdin", "--rotate") == 0
    out = capsys.readouterr().out
    assert "Keys rotated" in out
    _printed_code(out)
    assert opens_with(profile, third)
    assert not opens_with(profile, NEW)
    _old_json_opens_nothing(profile, old_json, template_vault.passphrase, tmp_path)


def test_remove_slot_rotate_drops_the_slot_and_hints_otherwise(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recovery = next(s for s in Vault.status(profile).slots if s.kind == "recovery")
    monkeypatch.setenv("HUSHCHAT_PASSPHRASE", template_vault.passphrase)
    assert vault(profile, "remove-slot", recovery.id, "--yes", "--rotate") == 0
    out = capsys.readouterr().out
    assert f"Dropped key slot {recovery.id}" in out
    assert "New recovery code" not in out  # the recovery slot was the one removed
    assert [s.kind for s in Vault.status(profile).slots] == ["passphrase"]
    assert [db.generation for db in Vault.status(profile).databases] == [2, 2]


def test_removing_the_last_passphrase_warns(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    passphrase = next(s for s in Vault.status(profile).slots if s.kind == "passphrase")
    stdin(monkeypatch, "n\n", terminal=True)
    assert vault(profile, "remove-slot", passphrase.id) == 0
    captured = capsys.readouterr()
    assert "only passphrase" in captured.err
    assert "only the recovery code will unlock" in captured.err
    assert "Nothing removed." in captured.out

    monkeypatch.setenv("HUSHCHAT_PASSPHRASE", template_vault.passphrase)
    stdin(monkeypatch)
    assert vault(profile, "remove-slot", passphrase.id, "--yes") == 0
    captured = capsys.readouterr()
    assert f"Removed key slot {passphrase.id}." in captured.out
    assert "only the recovery code will unlock" in captured.err
    assert "hint: an old copy of vault.json" in captured.err


def test_removing_another_slot_does_not_warn(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recovery = next(s for s in Vault.status(profile).slots if s.kind == "recovery")
    stdin(monkeypatch, "y\n", terminal=True)
    typed(monkeypatch, template_vault.passphrase)
    assert vault(profile, "remove-slot", recovery.id) == 0
    assert "warning" not in capsys.readouterr().err


# ----------------------------------------------------------------- keychain: Standard only


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    with replaced_keyring() as backend:
        yield backend


def test_a_keychain_unlock_verifies_and_opens_standard_only(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    memory_keyring: MemoryKeyring,
) -> None:
    monkeypatch.setenv("HUSHCHAT_PASSPHRASE", template_vault.passphrase)
    assert vault(profile, "add-keychain") == 0
    assert "keychain" in capsys.readouterr().out
    monkeypatch.delenv("HUSHCHAT_PASSPHRASE")
    assert vault(profile, "verify", "--unlock-with", "keychain") == 0
    assert "opens the Standard tier" in capsys.readouterr().out
    assert vault(profile, "status") == 0
    assert "opens Standard chats only" in capsys.readouterr().out
    assert vault(profile, "rekey", "--unlock-with", "keychain") == ExitCode.VAULT
    assert "open only Standard chats" in capsys.readouterr().err
