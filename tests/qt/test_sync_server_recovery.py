"""The unlock screen's "Recover Standard chats from my sync server": the dialog that
drives ``app.sync.recovery`` like ``hushchat vault recover --server`` does, against the
fake sync world of ``test_sync_settings`` plus a fake escrow (``EscrowDesk``: the
server's recovery calls, sealing the other device's real Standard sync key to the
recovering device's ephemeral key once the test lets the delay end).

Covered: the explanation and its explicit confirmation, sign-in, start, waiting with
progress, Stop waiting (the pending file is kept), a restart that finishes the recovery
("Finish the recovery…" on the unlock screen), a new vault with a new passphrase and
recovery code, the old vault set aside (not deleted), the Standard chats fetched and the
Private ones not, a recovery cancelled from another device, the first run finishing a
recovery, and no secret in the log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig
from app.session import Session
from app.store.models import TitleSource
from app.sync import escrow
from app.sync.account import SyncAccount
from app.sync.client import RecoveryWaitError, SyncRefusedError
from app.sync.crypto import SyncKey
from app.sync.dpop import DeviceKey
from app.sync.errors import SyncOfflineError
from app.sync.pairing import _read_keys
from app.sync.protocol import RecoveryOut, RecoveryResult
from app.sync.recovery import PENDING_FILE, start_recovery
from app.tiers import Tier
from app.ui import server_recovery
from app.ui.main_window import MainWindow
from app.ui.server_recovery import ServerRecoveryDialog
from tests.qt.conftest import QT_PASSPHRASE, close_session, make_session, unlock_new_vault
from tests.qt.test_sync_settings import (  # noqa: F401 - the fake sync world's fixtures
    SERVER_URL,
    WAIT,
    SyncWorld,
    other_device,
    sidebar_titles,
    sync_stopped_after,
    world,
)
from tests.unit.sync.devices import ACCOUNT, Device

NEW_PASSPHRASE = "orchard lantern quietly folds seven maps"
STARTED = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@dataclass
class EscrowDesk:
    """The server's recovery side, shared by every client the dialog makes."""

    key: SyncKey
    ready: bool = False
    cancelled: bool = False
    public_keys: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    counter: int = 0


class FakeRecoveryClient:
    """``SyncClient``'s recovery calls for one signed-in account."""

    def __init__(self, desk: EscrowDesk, account: SyncAccount) -> None:
        self.desk = desk
        self.account = account
        self.server_url = account.server_url

    async def start_recovery(self, device_public_key: bytes) -> RecoveryOut:
        self.desk.counter += 1
        recovery_id = f"rec-{self.desk.counter}"
        self.desk.public_keys[recovery_id] = device_public_key
        self.desk.calls.append("start")
        return RecoveryOut(
            id=recovery_id, status="pending", device_id=self.account.device_id,
            created_at=STARTED, not_before=STARTED + timedelta(hours=48),
            expires_at=STARTED + timedelta(days=7),
        )  # fmt: skip

    async def complete_recovery(self, recovery_id: str) -> RecoveryResult:
        self.desk.calls.append("complete")
        if self.desk.cancelled:
            raise SyncRefusedError("The recovery is not pending.", 409, "not-pending")
        if not self.desk.ready:
            raise RecoveryWaitError("Not yet.", "recovery-delay", 1.0)
        aad = escrow.recovery_aad(ACCOUNT, recovery_id)
        plaintext = escrow.encode_escrowed_key(self.desk.key)
        sealed = escrow.seal(self.desk.public_keys[recovery_id], plaintext, aad)
        return RecoveryResult(recovery_id=recovery_id, key_id=self.desk.key.key_id,
                              sealed_key=sealed)  # fmt: skip

    async def aclose(self) -> None:
        return None


@pytest.fixture
def desk(
    other_device: Device,  # noqa: F811
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> EscrowDesk:
    """The other device syncs a Standard and a Private chat; the escrow holds its
    Standard sync key; the dialog's clients talk to the desk."""
    for tier, title in ((Tier.STANDARD, "Holiday plans"), (Tier.PRIVATE, "Doctor letters")):
        other_device.library.store(tier).create_chat(title=title, title_source=TitleSource.USER)
    run_async(other_device.setup())
    run_async(other_device.engine.sync_once())
    _account, keys = run_async(other_device.engine.runner.db(_read_keys, other_device.engine))
    made = EscrowDesk(keys[Tier.STANDARD])
    monkeypatch.setattr(
        server_recovery, "_sync_client", lambda account: FakeRecoveryClient(made, account)
    )
    return made


def locked_window(
    qtbot: QtBot, config: LoadedConfig, profile: Path, settings: QSettings
) -> tuple[Session, MainWindow]:
    session = make_session(config, profile)
    window = MainWindow(session, settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: session.vault is not None, timeout=WAIT)
    return session, window


def old_vault(config: LoadedConfig, profile: Path, run_async: Callable[..., Any]) -> bytes:
    """A vault whose passphrase and recovery code are lost; its slot file's bytes."""
    session = unlock_new_vault(make_session(config, profile), run_async)
    close_session(session)
    return (profile / "vault.json").read_bytes()


def sign_in(qtbot: QtBot, dialog: ServerRecoveryDialog) -> None:
    dialog.understand_check.setChecked(True)
    dialog.continue_button.click()
    assert dialog.step == "sign_in"
    if not dialog.server_edit.isReadOnly():
        dialog.server_edit.setText(SERVER_URL)
    dialog.sign_in_button.click()
    qtbot.waitUntil(lambda: dialog.step == "waiting", timeout=WAIT)


def closed(qtbot: QtBot, session: Session, window: MainWindow, run: Callable[..., Any]) -> None:
    window.close()
    if session.is_unlocked:
        run(session.sync.stop())
    close_session(session)


def test_recovery_from_the_server_resumed_after_a_restart(
    qtbot: QtBot,
    world: SyncWorld,  # noqa: F811
    desk: EscrowDesk,
    run_async: Callable[..., Any],
    qt_config: LoadedConfig,
    tmp_path: Path,
    window_settings: QSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    profile = tmp_path / "lost"
    old_slots = old_vault(qt_config, profile, run_async)
    session, window = locked_window(qtbot, qt_config, profile, window_settings)
    try:
        unlock = window.unlock_page
        assert unlock.server_recovery_button.isHidden()  # on the forgot-passphrase path
        assert unlock.finish_recovery_button.isHidden()
        unlock.toggle_recovery_mode()
        assert not unlock.server_recovery_button.isHidden()
        unlock.server_recovery_button.click()
        dialog = unlock.server_recovery
        assert isinstance(dialog, ServerRecoveryDialog) and dialog.step == "explain"
        text = dialog.explain_page.findChildren(type(dialog.message_label))
        said = " ".join(label.text() for label in text)
        assert "Private chats, and anything that was never synced, are lost" in said
        assert "not deleted" in said
        assert not dialog.continue_button.isEnabled()  # the explicit confirmation first

        sign_in(qtbot, dialog)
        assert desk.calls[0] == "start"
        assert (profile / PENDING_FILE).exists()
        said = dialog.waiting_text.text()
        assert "can be cancelled" in said and "approved" in said
        can_complete = (STARTED + timedelta(hours=48)).astimezone().strftime("%Y-%m-%d %H:%M")
        assert f"It can complete after {can_complete}" in said
        qtbot.waitUntil(lambda: "recovery delay is running" in dialog.wait_status.text(),
                        timeout=WAIT)  # fmt: skip
        assert "left" in dialog.left_label.text()
        dialog.stop_button.click()  # closing Hushchat while the delay runs
        assert not dialog.isVisible()
        assert (profile / PENDING_FILE).exists()
        assert (profile / "vault.json").read_bytes() == old_slots  # nothing moved yet
    finally:
        closed(qtbot, session, window, run_async)

    # The next start: the unlock screen offers to finish it.
    session, window = locked_window(qtbot, qt_config, profile, window_settings)
    try:
        unlock = window.unlock_page
        qtbot.waitUntil(lambda: not unlock.finish_recovery_button.isHidden(), timeout=WAIT)
        unlock.finish_recovery_button.click()
        dialog = unlock.server_recovery
        assert isinstance(dialog, ServerRecoveryDialog)
        assert not dialog.resume_label.isHidden() and SERVER_URL in dialog.resume_label.text()
        desk.ready = True  # approved from another device, say
        sign_in(qtbot, dialog)
        assert desk.calls.count("start") == 1  # resumed, not started again
        qtbot.waitUntil(lambda: dialog.step == "passphrase", timeout=WAIT)
        assert "vault-before-recovery-" in dialog.aside_label.text()
        fields = dialog.passphrase_fields
        fields.passphrase_edit.setText(NEW_PASSPHRASE)
        fields.confirm_edit.setText(NEW_PASSPHRASE)
        qtbot.waitUntil(dialog.create_button.isEnabled, timeout=WAIT)
        dialog.create_button.click()
        qtbot.waitUntil(lambda: dialog.step == "done", timeout=30_000)
        assert window.current_page == "main"
        code = dialog.recovery.code_view.toPlainText()
        assert code.strip()
        assert "Private chats stay unreadable" in dialog.done_text.text()
        assert not dialog.finish_button.isEnabled()
        dialog.recovery.stored_check.setChecked(True)
        dialog.finish_button.click()
        assert not dialog.isVisible()

        # The old vault is kept aside; the new one opens with the new passphrase.
        (aside,) = profile.glob("vault-before-recovery-*")
        assert (aside / "vault.json").read_bytes() == old_slots
        assert (aside / "standard.db").exists() and (aside / "private.db").exists()
        assert (profile / "vault.json").read_bytes() != old_slots
        assert not (profile / PENDING_FILE).exists()
        qtbot.waitUntil(lambda: "Holiday plans" in sidebar_titles(window), timeout=WAIT)
        assert "Doctor letters" not in sidebar_titles(window)
        run_async(session.verify_passphrase(NEW_PASSPHRASE))
        for secret in (NEW_PASSPHRASE, code.split()[0], QT_PASSPHRASE):
            assert secret not in caplog.text
    finally:
        closed(qtbot, session, window, run_async)


def test_a_recovery_cancelled_from_another_device_is_said_and_forgotten(
    qtbot: QtBot,
    world: SyncWorld,  # noqa: F811
    desk: EscrowDesk,
    run_async: Callable[..., Any],
    qt_config: LoadedConfig,
    tmp_path: Path,
    window_settings: QSettings,
) -> None:
    profile = tmp_path / "lost"
    old_slots = old_vault(qt_config, profile, run_async)
    session, window = locked_window(qtbot, qt_config, profile, window_settings)
    try:
        unlock = window.unlock_page
        unlock.toggle_recovery_mode()
        dialog = unlock.recover_from_server()
        assert isinstance(dialog, ServerRecoveryDialog)
        sign_in(qtbot, dialog)
        desk.cancelled = True
        qtbot.waitUntil(lambda: "cannot complete" in dialog.message_label.text(), timeout=WAIT)
        assert "start a new recovery" in dialog.message_label.text()
        assert not (profile / PENDING_FILE).exists()
        assert (profile / "vault.json").read_bytes() == old_slots
        dialog.stop_button.click()
        assert unlock.finish_recovery_button.isHidden()
        assert window.current_page == "unlock"
    finally:
        closed(qtbot, session, window, run_async)


def test_the_first_run_finishes_a_recovery_started_in_the_profile(
    qtbot: QtBot,
    world: SyncWorld,  # noqa: F811
    desk: EscrowDesk,
    run_async: Callable[..., Any],
    qt_config: LoadedConfig,
    tmp_path: Path,
    window_settings: QSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install = server_recovery.install_recovered_key
    failures = [SyncOfflineError("The sync server cannot be reached.")]

    async def flaky_install(*args: Any) -> Any:
        if failures:
            raise failures.pop()
        return await install(*args)

    monkeypatch.setattr(server_recovery, "install_recovered_key", flaky_install)
    profile = tmp_path / "empty"
    device_key = DeviceKey.generate()
    account = world.account("New laptop")
    run_async(
        start_recovery(
            FakeRecoveryClient(desk, account), profile, device_key_pem=device_key.to_pem()
        )
    )  # `hushchat vault recover --server URL --no-wait` did this
    desk.ready = True
    session = make_session(qt_config, profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    try:
        first_run = window.first_run
        assert first_run is not None
        assert not first_run.finish_recovery_button.isHidden()
        dialog = first_run.finish_recovery()
        assert isinstance(dialog, ServerRecoveryDialog)
        sign_in(qtbot, dialog)
        qtbot.waitUntil(lambda: dialog.step == "passphrase", timeout=WAIT)
        assert dialog.aside_label.text() == ""  # no old vault to set aside
        dialog.passphrase_fields.passphrase_edit.setText(NEW_PASSPHRASE)
        dialog.passphrase_fields.confirm_edit.setText(NEW_PASSPHRASE)
        qtbot.waitUntil(dialog.create_button.isEnabled, timeout=WAIT)
        dialog.create_button.click()
        # The fetch failed once: the vault is made, and Try again installs and fetches.
        qtbot.waitUntil(lambda: "Try again" in dialog.message_label.text(), timeout=30_000)
        assert "cannot be reached" in dialog.message_label.text()
        assert session.vault_exists and dialog.step == "passphrase"
        assert dialog.create_button.text() == "T&ry again"
        dialog.create_button.click()
        qtbot.waitUntil(lambda: dialog.step == "done", timeout=30_000)
        assert window.current_page == "main"
        assert not list(profile.glob("vault-before-recovery-*"))
        qtbot.waitUntil(lambda: "Holiday plans" in sidebar_titles(window), timeout=WAIT)
        dialog.recovery.stored_check.setChecked(True)
        dialog.finish_button.click()
    finally:
        closed(qtbot, session, window, run_async)


def test_the_unlock_screen_names_the_pending_file_as_the_recovery_module_does() -> None:
    from app.ui.unlock import PENDING_RECOVERY_FILE

    assert PENDING_RECOVERY_FILE == PENDING_FILE
