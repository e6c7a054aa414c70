"""The first chat fast (issue 12): from first launch to the first answer in three screens,
and the recovery code that can be stored later with a reminder until it is.

Three screens: the passphrase, the recovery code ("Remind me later"), the chat. The local
server found while the recovery code is shown becomes the first provider, so the provider
page is skipped. The reminder shows a *new* code (the first is never kept anywhere) and
ends once that code is confirmed stored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.config import load_config
from app.provider_setup import LocalServer
from app.session import Session
from app.ui.main_window import MainWindow
from app.ui.recovery_reminder import RecoveryReminderBanner
from app.vault import RecoveryCode
from app.vault.errors import WrongSecretError
from tests.peers.llama_server import LlamaServer
from tests.qt.conftest import QT_PASSPHRASE, close_session, make_session
from tests.qt.drivers import WAIT, messages, send

PASSPHRASE = "violet harbor lantern quietly"


@pytest.mark.llama_server
def test_first_launch_to_a_streamed_answer_in_three_screens(
    qtbot: QtBot,
    tmp_path: Path,
    qt_profile: Path,
    llama_server: LlamaServer,
    window_settings: QSettings,
) -> None:
    config_path = tmp_path / "config.yml"
    config_path.write_text("ui:\n  auto_lock_minutes: 0\n", encoding="utf-8")
    session = make_session(load_config(config_path, {}), qt_profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    first_run = window.first_run
    assert first_run is not None
    first_run.local_servers = [
        LocalServer("llama.cpp server", "llama-cpp", "openai", f"{llama_server.base_url}/v1")
    ]
    screens = [first_run.currentWidget()]

    # Screen 1: the passphrase.
    first_run.passphrase_fields.passphrase_edit.setText(PASSPHRASE)
    first_run.passphrase_fields.confirm_edit.setText(PASSPHRASE)
    first_run.create_button.click()
    qtbot.waitUntil(lambda: first_run.currentWidget() is first_run.recovery_page, timeout=WAIT)
    screens.append(first_run.currentWidget())

    # Screen 2: the recovery code; the server found meanwhile is named as what comes next.
    qtbot.waitUntil(lambda: "tiny-llama" in first_run.next_hint.text(), timeout=WAIT)
    assert first_run.next_hint.isVisibleTo(first_run)
    assert not first_run.continue_button.isEnabled()  # not stored: only "later" goes on
    with qtbot.waitSignal(window.unlocked, timeout=WAIT):
        first_run.later_button.click()

    # Screen 3: the chat, with the found server as the default provider.
    assert window.current_page == "main"
    assert window.first_run is None
    assert len(set(map(id, screens))) == 2  # the provider page was never shown
    saved = load_config(config_path, {})
    assert saved.config.default_llm == "llama-cpp"
    assert saved.config.llm("llama-cpp").model_name == "tiny-llama"
    area = window.chat_area
    assert area is not None
    area.new_chat("standard")
    qtbot.waitUntil(lambda: area.chat_view.chat is not None, timeout=WAIT)
    area.chat_view.max_tokens = 16  # short answers: the tiny model on one thread is slow
    answer = send(qtbot, area, "Tell me about zebrafish please")
    assert answer.content.strip() and answer.error is None, answer
    assert [m.role for m in messages(area)] == ["user", "assistant"]

    # The reminder is there, since the code was not stored.
    banner = window.recovery_reminder
    assert banner is not None
    qtbot.waitUntil(banner.isVisible, timeout=WAIT)
    window.close()
    close_session(session)


def test_the_reminder_shows_a_new_code_and_ends_when_it_is_stored(
    qtbot: QtBot, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    session = unlocked_session
    banner = RecoveryReminderBanner()
    qtbot.addWidget(banner)
    banner.check(session)
    qtbot.wait(200)
    assert banner.isHidden()  # nothing put off
    assert not run_async(session.recovery_code_unconfirmed())

    run_async(session.postpone_recovery_code())
    banner.check(session)
    qtbot.waitUntil(lambda: not banner.isHidden(), timeout=WAIT)

    banner.show_button.click()
    qtbot.waitUntil(lambda: banner.dialog is not None, timeout=WAIT)
    dialog = banner.dialog
    assert dialog is not None
    code = RecoveryCode.parse(dialog.recovery.code_view.toPlainText())
    assert not dialog.ok_button.isEnabled()  # only once "I have stored it" is ticked
    dialog.reject()
    assert run_async(session.recovery_code_unconfirmed())  # closing is not storing

    banner.show_button.click()
    qtbot.waitUntil(lambda: banner.dialog is not None, timeout=WAIT)
    dialog = banner.dialog
    assert dialog is not None
    newer = RecoveryCode.parse(dialog.recovery.code_view.toPlainText())
    assert newer.formatted() != code.formatted()
    dialog.recovery.stored_check.setChecked(True)
    with qtbot.waitSignal(banner.stored, timeout=WAIT):
        dialog.ok_button.click()
    assert banner.isHidden()
    assert not run_async(session.recovery_code_unconfirmed())

    # Each new code replaced the one before: only the last one opens the vault.
    session.lock()
    with pytest.raises(WrongSecretError):
        run_async(session.unlock_with_recovery_code(code.formatted()), timeout=WAIT)
    run_async(session.unlock_with_recovery_code(newer.formatted()), timeout=WAIT)
    run_async(session.verify_passphrase(QT_PASSPHRASE), timeout=WAIT)
