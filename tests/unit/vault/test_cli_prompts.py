"""``hushchat vault`` in-process: terminal prompts, secrets from the environment and stdin,
confirmations, and how failures end (exit code, one line, or a traceback with --debug).

The subprocess tests (tests/e2e/vault) cover scripted use; these cover what needs a
terminal, which a subprocess does not have.
"""

from __future__ import annotations

import getpass
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import ExitCode
from app.vault import RecoveryCode, Vault, VaultNotFoundError, WrongSecretError
from app.vault.cli import (
    NEW_PASSPHRASE_ENV,
    PASSPHRASE_ENV,
    RECOVERY_CODE_ENV,
    main,
)
from tests.peers.vault_fixtures import TemplateVault, snapshot

FLOOR = ["--kdf-memory-mib", "64", "--kdf-iterations", "3", "--kdf-parallelism", "4"]
NEW = "a different, longer passphrase for the vault"


class Terminal(io.StringIO):
    """Standard input that is a terminal (answers for ``input()`` go in ``text``)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (PASSPHRASE_ENV, NEW_PASSPHRASE_ENV, RECOVERY_CODE_ENV, "HUSHCHAT_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def stdin(monkeypatch: pytest.MonkeyPatch, text: str = "", *, terminal: bool = False) -> None:
    monkeypatch.setattr("sys.stdin", Terminal(text) if terminal else io.StringIO(text))


def typed(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    """Make ``getpass`` return ``answers`` in turn; returns the prompts it was shown."""
    prompts: list[str] = []
    queue: Iterator[str] = iter(answers)

    def fake(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        return next(queue)

    monkeypatch.setattr(getpass, "getpass", fake)
    return prompts


def vault(profile: Path, *args: str) -> int:
    return main(["--profile", str(profile), "vault", *args])


def opens_with(profile: Path, passphrase: str) -> bool:
    opened = Vault.open(profile)
    try:
        opened.unlock_with_passphrase(passphrase)
    except WrongSecretError:
        return False
    finally:
        opened.close()
    return True


def test_init_on_a_terminal_asks_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, terminal=True)
    prompts = typed(monkeypatch, NEW, NEW)
    assert vault(tmp_path / "p", "init", *FLOOR) == 0
    assert prompts == ["New passphrase: ", "Repeat the new passphrase: "]
    out = capsys.readouterr().out
    RecoveryCode.parse("\n".join(out.strip().splitlines()[-4:]))  # the code printed, parseable
    assert opens_with(tmp_path / "p", NEW)


def test_init_refuses_two_different_entries_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, terminal=True)
    typed(monkeypatch, NEW, NEW + "!")
    assert vault(tmp_path / "p", "init", *FLOOR) == ExitCode.USAGE
    assert "The two passphrases differ; nothing was changed." in capsys.readouterr().err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_init_needs_all_three_kdf_options_or_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vault(tmp_path / "p", "init", "--kdf-memory-mib", "64") == ExitCode.USAGE
    assert "Give all of --kdf-memory-mib" in capsys.readouterr().err


def test_passwd_takes_both_passphrases_from_the_environment(
    profile: Path, template_vault: TemplateVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, template_vault.passphrase)
    monkeypatch.setenv(NEW_PASSPHRASE_ENV, NEW)
    stdin(monkeypatch)
    assert vault(profile, "passwd") == 0
    assert opens_with(profile, NEW)
    assert not opens_with(profile, template_vault.passphrase)


def test_an_empty_new_passphrase_changes_nothing(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(profile)
    stdin(monkeypatch, template_vault.passphrase + "\n\n")
    assert vault(profile, "passwd", "--passphrase-stdin") == ExitCode.USAGE
    assert "The new passphrase is empty" in capsys.readouterr().err
    assert snapshot(profile) == before


def test_stdin_that_runs_out_names_the_missing_secret(
    profile: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, "")
    assert vault(profile, "verify", "--passphrase-stdin") == ExitCode.USAGE
    assert "expected the passphrase on the next line of stdin" in capsys.readouterr().err


def test_the_current_passphrase_is_asked_on_a_terminal(
    profile: Path, template_vault: TemplateVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin(monkeypatch, terminal=True)
    prompts = typed(monkeypatch, template_vault.passphrase)
    assert vault(profile, "verify") == 0
    assert prompts == ["Vault passphrase: "]


def test_verify_with_the_recovery_code_from_the_environment(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(RECOVERY_CODE_ENV, template_vault.recovery_code.formatted())
    assert vault(profile, "verify", "--unlock-with", "recovery-code") == 0
    assert capsys.readouterr().out.startswith("ok:")


def test_recover_with_a_new_recovery_code_retires_the_old_one(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old_code = " ".join(template_vault.recovery_code.formatted().split())  # one line
    stdin(monkeypatch, f"{old_code}\n{NEW}\n")
    assert vault(profile, "recover", "--passphrase-stdin", "--new-recovery-code") == 0
    out = capsys.readouterr().out
    assert "New recovery code" in out
    new_code = RecoveryCode.parse("\n".join(out.strip().splitlines()[-4:]))
    assert opens_with(profile, NEW)
    opened = Vault.open(profile)
    try:
        with pytest.raises(WrongSecretError):
            opened.unlock_with_recovery_code(template_vault.recovery_code)
        opened.unlock_with_recovery_code(new_code)
    finally:
        opened.close()


def test_touch_id_elsewhere_than_macos_is_a_vault_error(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(profile)
    assert vault(profile, "verify", "--unlock-with", "touch-id") == ExitCode.VAULT
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert snapshot(profile) == before


@pytest.mark.parametrize(("answer", "removed"), [("n\n", False), ("\n", False), ("yes\n", True)])
def test_remove_slot_asks_on_a_terminal(
    profile: Path,
    template_vault: TemplateVault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    removed: bool,
) -> None:
    recovery = next(s for s in Vault.status(profile).slots if s.kind == "recovery")
    stdin(monkeypatch, answer, terminal=True)
    typed(monkeypatch, template_vault.passphrase)
    assert vault(profile, "remove-slot", recovery.id) == 0
    out = capsys.readouterr().out
    assert ("Nothing removed." in out) is not removed
    remaining = {s.id for s in Vault.status(profile).slots}
    assert (recovery.id not in remaining) is removed


def test_remove_slot_without_a_terminal_needs_yes(
    profile: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    slot = Vault.status(profile).slots[0]
    stdin(monkeypatch)
    assert vault(profile, "remove-slot", slot.id) == ExitCode.USAGE
    assert "add --yes in scripts" in capsys.readouterr().err


def test_debug_shows_the_error_itself(tmp_path: Path) -> None:
    with pytest.raises(VaultNotFoundError):
        main(["--profile", str(tmp_path / "none"), "--debug", "vault", "status"])


def test_ctrl_c_at_a_prompt_exits_130(
    profile: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(prompt: str = "", stream: object = None) -> str:
        raise KeyboardInterrupt

    stdin(monkeypatch, terminal=True)
    monkeypatch.setattr(getpass, "getpass", interrupted)
    assert vault(profile, "verify") == 130
    assert capsys.readouterr().err.strip() == "hushchat: interrupted"
