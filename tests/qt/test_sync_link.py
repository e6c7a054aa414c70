"""Settings, Sync, "Link a device…": the pairing code dialog of the existing computer,
against the in-memory sync server of ``test_sync_settings`` (a fresh ``Device`` on the
same server plays the new computer and types the code with ``join_with_code``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.sync.pairing import (
    PairingCode,
    PairingExpiredError,
    WrongPairingCodeError,
    join_with_code,
)
from app.sync.pairing_words import WORDS
from app.sync.records import is_pairing_record
from app.ui.main_window import MainWindow
from app.ui.sync_link import LinkDeviceDialog
from app.ui.sync_settings import SyncPageWidget
from tests.qt.test_sync_settings import (  # noqa: F401 - the fake sync world's fixtures
    WAIT,
    SyncWorld,
    open_sync_page,
    signed_in_and_set_up,
    sync_stopped_after,
    world,
)
from tests.unit.sync.devices import Device
from tests.unit.sync.fake_server import FakeServer


@pytest.fixture
def new_device(world: SyncWorld) -> Iterator[Device]:  # noqa: F811
    """The computer being linked: a fresh device of the account, no keys yet."""
    device = Device(world.server, "d")
    world.add_device("device-d", "Ada's new laptop")
    yield device
    device.runner.shutdown()


def account_page(
    qtbot: QtBot,
    window: MainWindow,
    run_async: Callable[..., Any],
    world: SyncWorld,  # noqa: F811
) -> SyncPageWidget:
    signed_in_and_set_up(qtbot, window, run_async, world)
    _dialog, page = open_sync_page(window)
    qtbot.waitUntil(lambda: page.step == "account" and page.link_button.isEnabled(), timeout=WAIT)
    return page


def offered_code(qtbot: QtBot, dialog: LinkDeviceDialog) -> PairingCode:
    qtbot.waitUntil(lambda: dialog.offer is not None, timeout=WAIT)
    assert dialog.offer is not None
    return dialog.offer.code


def pairing_records(server: FakeServer) -> dict[str, bool]:
    return {r.id: r.deleted for r in server.records.values() if is_pairing_record(r.id)}


def test_link_a_device_shows_the_code_and_says_linked(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    new_device: Device,
    run_async: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    page = account_page(qtbot, main_window, run_async, world)
    assert page.link_button.text() == "&Link a device…"
    page.link_button.click()
    dialog = page.link_dialog
    assert dialog is not None and dialog.isVisible()
    code = offered_code(qtbot, dialog)
    assert dialog.code_label.text() == str(code)
    assert (
        dialog.code_label.textInteractionFlags()
        & dialog.code_label.textInteractionFlags().TextSelectableByMouse
    )
    assert dialog.code_label.font().pointSizeF() > page.font().pointSizeF()
    assert "Works once, for 9 min" in dialog.expiry_label.text() or "10 min" in (
        dialog.expiry_label.text()
    )
    assert "Waiting for the new computer" in dialog.message_label.text()
    assert dialog.waiting

    report = run_async(join_with_code(new_device.engine, str(code), step_timeout=5), 30_000)
    assert report.pulled > 0
    assert new_device.held_keys() != []
    qtbot.waitUntil(lambda: dialog.linked_name is not None, timeout=WAIT)
    assert "Linked \u201cAda's new laptop\u201d" in dialog.message_label.text()
    assert dialog.cancel_button.text() == "Close"
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: page.message_label.text().startswith("Linked"), timeout=WAIT)
    assert page.link_dialog is None
    qtbot.waitUntil(lambda: all(pairing_records(world.server).values()), timeout=WAIT)
    for word in code.words:  # the code is a secret for its ten minutes
        assert word not in caplog.text


def test_a_wrong_code_on_the_new_device_is_said_and_a_new_code_offered(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    new_device: Device,
    run_async: Callable[..., Any],
) -> None:
    page = account_page(qtbot, main_window, run_async, world)
    dialog = page.link_device()
    code = offered_code(qtbot, dialog)
    word = WORDS[(WORDS.index(code.words[-1]) + 1) % len(WORDS)]
    wrong = PairingCode(code.session, (*code.words[:-1], word))
    with pytest.raises(WrongPairingCodeError):
        run_async(join_with_code(new_device.engine, wrong, step_timeout=5), 30_000)
    qtbot.waitUntil(lambda: not dialog.new_code_button.isHidden(), timeout=WAIT)
    assert "was not this one" in dialog.message_label.text()
    assert "hushchat sync" not in dialog.message_label.text()  # the window's words
    assert new_device.held_keys() == []

    dialog.new_code_button.click()
    second = offered_code(qtbot, dialog)
    assert second != code and dialog.code_label.text() == str(second)
    dialog.reject()
    qtbot.waitUntil(lambda: not dialog.waiting, timeout=WAIT)


def test_an_expired_code_is_said_in_the_window(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    new_device: Device,
    run_async: Callable[..., Any],
) -> None:
    signed_in_and_set_up(qtbot, main_window, run_async, world)
    session = main_window.session
    dialog = LinkDeviceDialog(session, run_async(session.sync.account()), lifetime=1.0)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.start()
    code = offered_code(qtbot, dialog)
    qtbot.waitUntil(lambda: not dialog.new_code_button.isHidden(), timeout=WAIT)
    assert "expired" in dialog.message_label.text()
    assert dialog.code_label.text() != str(code)
    with pytest.raises(PairingExpiredError):
        run_async(join_with_code(new_device.engine, code, step_timeout=5), 30_000)
    assert new_device.held_keys() == []


def test_cancel_while_waiting_withdraws_the_code(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    new_device: Device,
    run_async: Callable[..., Any],
) -> None:
    page = account_page(qtbot, main_window, run_async, world)
    dialog = page.link_device()
    code = offered_code(qtbot, dialog)
    qtbot.waitUntil(lambda: bool(pairing_records(world.server)), timeout=WAIT)
    assert not all(pairing_records(world.server).values())  # the offer is up
    dialog.cancel_button.click()
    assert not dialog.isVisible()
    # Every step's record is a tombstone: the code can no longer be used.
    qtbot.waitUntil(
        lambda: (
            len(pairing_records(world.server)) == 6 and all(pairing_records(world.server).values())
        ),
        timeout=WAIT,
    )
    with pytest.raises(PairingExpiredError):
        run_async(join_with_code(new_device.engine, code, step_timeout=5), 30_000)
    assert new_device.held_keys() == []
    assert not page.message_label.text().startswith("Linked")


def test_pairing_errors_are_said_without_command_lines() -> None:
    from app.sync.pairing import PairingError
    from app.ui.sync_link import pairing_message

    error = PairingError(
        "The keys from the other device are not those of the account's keys record: "
        "nothing was installed. Run `hushchat sync link` there again."
    )
    said = pairing_message(error, new_device=True)
    assert "hushchat" not in said and "nothing was installed." in said
    assert "Link a device…" in said
    said = pairing_message(
        PairingError("The pairing message 'join' is malformed; run the link again."),
        new_device=False,
    )
    assert said.startswith("The pairing message 'join' is malformed. Press New code")
    assert "Press New code" in pairing_message(WrongPairingCodeError("x"), new_device=False)
