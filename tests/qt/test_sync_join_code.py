"""Joining with a pairing code in the window: the first run's "Link from another
computer with a pairing code" and the keys step's "Use a pairing code instead of the
passphrase", against the fake sync world of ``test_sync_settings`` (the other computer
is a set-up ``Device`` on the same server offering the code with ``start_link``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig
from app.store.models import TitleSource
from app.sync.pairing import LinkOffer, LinkResult, PairingCode, start_link
from app.sync.pairing_words import WORDS
from app.tiers import Tier
from app.ui.main_window import MainWindow
from app.ui.sync_settings import SyncPageWidget
from tests.qt.conftest import close_session, make_session
from tests.qt.test_sync_settings import (  # noqa: F401 - the fake sync world's fixtures
    WAIT,
    SyncWorld,
    indicator,
    open_sync_page,
    other_device,
    sidebar_titles,
    sign_in_with_browser,
    sync_stopped_after,
    world,
)
from tests.unit.sync.devices import Device

NEW_PASSPHRASE = "violet submarine quietly juggles lanterns"


def offer_code(run_async: Callable[..., Any], device: Device, **kwargs: Any) -> LinkOffer:
    offer: LinkOffer = run_async(start_link(device.engine, step_timeout=5, **kwargs))
    return offer


def with_chats(device: Device, run_async: Callable[..., Any]) -> None:
    for tier, title in ((Tier.STANDARD, "Holiday plans"), (Tier.PRIVATE, "Doctor letters")):
        device.library.store(tier).create_chat(title=title, title_source=TitleSource.USER)
    run_async(device.setup())
    run_async(device.engine.sync_once())


def keys_step(qtbot: QtBot, page: SyncPageWidget) -> None:
    sign_in_with_browser(qtbot, page)
    qtbot.waitUntil(lambda: page.step == "keys" and page.keys_button.isEnabled(), timeout=WAIT)
    assert page.joining


def test_first_run_links_from_another_computer_with_a_pairing_code(
    qtbot: QtBot,
    world: SyncWorld,  # noqa: F811
    other_device: Device,  # noqa: F811
    run_async: Callable[..., Any],
    qt_config: LoadedConfig,
    tmp_path: Path,
    window_settings: QSettings,
) -> None:
    with_chats(other_device, run_async)
    session = make_session(qt_config, tmp_path / "new-computer")
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    try:
        first_run = window.first_run
        assert first_run is not None
        first_run.from_server_check.setChecked(True)
        first_run.with_code_radio.setChecked(True)
        assert "type the code your other computer shows" in first_run.from_server_hint.text()
        fields = first_run.passphrase_fields
        fields.passphrase_edit.setText(NEW_PASSPHRASE)  # not the account's passphrase
        fields.confirm_edit.setText(NEW_PASSPHRASE)
        qtbot.waitUntil(first_run.create_button.isEnabled, timeout=WAIT)
        first_run.create_button.click()
        qtbot.waitUntil(lambda: first_run.currentWidget() is first_run.recovery_page, timeout=WAIT)
        first_run.recovery.stored_check.setChecked(True)
        first_run.continue_button.click()

        page = first_run.sync_page
        assert page is not None
        keys_step(qtbot, page)
        assert page.with_pairing_code  # as chosen under the tick
        assert page.keys_passphrase_edit.isHidden() and not page.pairing_code_edit.isHidden()
        assert page.keys_button.text() == "&Link"

        offer = offer_code(run_async, other_device)
        waiting = asyncio.ensure_future(offer.wait())
        qtbot.keyClicks(page.pairing_code_edit, str(offer.code).upper().replace("-", " "))
        page.keys_button.click()
        qtbot.waitUntil(lambda: page.step == "account", timeout=30_000)
        assert page.message_label.text().startswith("Linked: joined")
        qtbot.waitUntil(waiting.done, timeout=WAIT)
        assert isinstance(waiting.result(), LinkResult)
        assert session.sync.running
        assert page.pairing_code_edit.text() == ""

        first_run.sync_continue_button.click()
        first_run.skip_button.click()
        assert window.current_page == "main"
        qtbot.waitUntil(lambda: "Holiday plans" in sidebar_titles(window), timeout=WAIT)
        qtbot.waitUntil(lambda: "Doctor letters" in sidebar_titles(window), timeout=WAIT)
        button = indicator(qtbot, window)
        qtbot.waitUntil(lambda: button.text() == "Synced", timeout=WAIT)
    finally:
        window.close()
        if session.is_unlocked:
            run_async(session.sync.stop())
        close_session(session)


def test_keys_step_wrong_then_right_pairing_code(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    other_device: Device,  # noqa: F811
    run_async: Callable[..., Any],
) -> None:
    with_chats(other_device, run_async)
    _dialog, page = open_sync_page(main_window)
    keys_step(qtbot, page)
    assert not page.with_pairing_code  # the passphrase first, outside the first run
    assert not page.join_code_radio.isHidden()
    page.join_code_radio.setChecked(True)
    assert page.keys_passphrase_edit.isHidden()

    # Not a code at all: said before anything is sent.
    page.pairing_code_edit.setText("12-two-words")
    page.keys_button.click()
    assert "A pairing code is a number and 3 words" in page.message_label.text()
    assert "Link a device…" in page.message_label.text()
    assert "hushchat" not in page.message_label.text()
    assert page.keys_button.isEnabled()

    offer = offer_code(run_async, other_device)
    waiting = asyncio.ensure_future(offer.wait())
    word = WORDS[(WORDS.index(offer.code.words[0]) + 1) % len(WORDS)]
    wrong = PairingCode(offer.code.session, (word, *offer.code.words[1:]))
    page.pairing_code_edit.setText(str(wrong))
    page.keys_button.click()
    qtbot.waitUntil(lambda: "does not match" in page.message_label.text(), timeout=30_000)
    assert "hushchat sync" not in page.message_label.text()
    assert page.step == "keys" and page.pairing_code_edit.text() == ""
    qtbot.waitUntil(waiting.done, timeout=WAIT)
    assert waiting.exception() is not None  # the other side saw the wrong code too

    offer = offer_code(run_async, other_device)
    waiting = asyncio.ensure_future(offer.wait())
    page.pairing_code_edit.setText(str(offer.code))
    page.keys_button.click()
    qtbot.waitUntil(lambda: page.step == "account", timeout=30_000)
    qtbot.waitUntil(waiting.done, timeout=WAIT)
    assert isinstance(waiting.result(), LinkResult)
    qtbot.waitUntil(lambda: "Doctor letters" in sidebar_titles(main_window), timeout=WAIT)


def test_keys_step_expired_pairing_code(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    other_device: Device,  # noqa: F811
    run_async: Callable[..., Any],
) -> None:
    with_chats(other_device, run_async)
    _dialog, page = open_sync_page(main_window)
    keys_step(qtbot, page)
    page.join_code_radio.setChecked(True)
    offer = offer_code(run_async, other_device, lifetime=0.2)
    qtbot.wait(400)
    page.pairing_code_edit.setText(str(offer.code))
    page.keys_button.click()
    qtbot.waitUntil(lambda: "expired" in page.message_label.text(), timeout=WAIT)
    assert page.step == "keys"
    run_async(offer.cancel())
    assert run_async(main_window.session.sync.is_set_up()) is False
