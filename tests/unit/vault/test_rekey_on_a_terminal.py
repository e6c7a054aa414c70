"""``hushchat vault rekey`` on a terminal: each security key is offered to keep (and
touched), and dropping slots is confirmed first; in a script it needs ``--yes``.

The security key is the in-memory fake of test_vault_refusals; SecurityKey.discover is
pointed at it, as a plugged-in key would be found.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import ExitCode
from app.vault import NoSecretAvailableError, Vault
from app.vault.security_key import SecurityKey
from tests.peers.vault_fixtures import TemplateVault, snapshot
from tests.unit.vault.test_cli_prompts import no_secrets_in_environment, stdin, typed, vault
from tests.unit.vault.test_vault_refusals import FakeKey, key

__all__ = ["no_secrets_in_environment"]  # the autouse fixture, used by name


@pytest.fixture
def fake_key(
    profile: Path, template_vault: TemplateVault, monkeypatch: pytest.MonkeyPatch
) -> FakeKey:
    """A security key enrolled in the profile's vault and 'plugged in'."""
    fake = FakeKey(pin_used=False)
    with Vault.open(profile) as opened:
        opened.unlock_with_passphrase(template_vault.passphrase)
        opened.add_security_key(key(fake))
    monkeypatch.setattr(SecurityKey, "discover", classmethod(lambda cls, prompts: fake))
    return fake


def unlocks_with(profile: Path, fake: FakeKey) -> bool:
    with Vault.open(profile) as opened:
        try:
            opened.unlock_with_security_key(key(fake))
        except NoSecretAvailableError:
            return False
        return True


def kinds(profile: Path) -> list[str]:
    return sorted(slot.kind for slot in Vault.status(profile).slots)


def test_a_kept_security_key_is_touched_and_still_unlocks(
    profile: Path,
    template_vault: TemplateVault,
    fake_key: FakeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stdin(monkeypatch, "y\n", terminal=True)
    typed(monkeypatch, template_vault.passphrase)
    assert vault(profile, "rekey") == 0
    captured = capsys.readouterr()
    assert "Security key slot" in captured.err and "will be kept" in captured.err
    assert "drops these key slots" not in captured.err
    assert kinds(profile) == ["passphrase", "recovery", "security-key"]
    assert unlocks_with(profile, fake_key)


def test_declining_the_drop_changes_nothing(
    profile: Path,
    template_vault: TemplateVault,
    fake_key: FakeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(profile)
    stdin(monkeypatch, "n\nn\n", terminal=True)  # do not keep the key; do not drop it either
    typed(monkeypatch, template_vault.passphrase)
    assert vault(profile, "rekey") == 0
    captured = capsys.readouterr()
    assert "drops these key slots" in captured.err and "security-key" in captured.err
    assert "Nothing changed." in captured.out
    assert snapshot(profile) == before
    assert unlocks_with(profile, fake_key)


def test_confirming_the_drop_rotates_without_the_key(
    profile: Path,
    template_vault: TemplateVault,
    fake_key: FakeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stdin(monkeypatch, "\ny\n", terminal=True)  # Enter (= no) to keeping, yes to dropping
    typed(monkeypatch, template_vault.passphrase)
    assert vault(profile, "rekey") == 0
    assert "Dropped key slot" in capsys.readouterr().out
    assert kinds(profile) == ["passphrase", "recovery"]
    assert not unlocks_with(profile, fake_key)


def test_a_script_must_say_yes_to_dropping_slots(
    profile: Path,
    template_vault: TemplateVault,
    fake_key: FakeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(profile)
    stdin(monkeypatch, template_vault.passphrase + "\n")
    assert vault(profile, "rekey", "--passphrase-stdin") == ExitCode.USAGE
    assert "add --yes to drop them. Nothing was changed." in capsys.readouterr().err
    assert snapshot(profile) == before
    stdin(monkeypatch, template_vault.passphrase + "\n")
    assert vault(profile, "rekey", "--passphrase-stdin", "--yes") == 0
    assert kinds(profile) == ["passphrase", "recovery"]
