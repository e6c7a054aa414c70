"""Recoveries started on another device: the indicator's warning, the banner above the
chats (Cancel it, Approve, Details) and the list in Settings, Sync, against the fake sync
world of ``test_sync_settings`` (its server lists ``world.recoveries`` in every changes
answer and records the cancel and approve calls)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from app.sync.protocol import RecoveryOut
from app.ui.main_window import MainWindow
from app.ui.settings import SettingsDialog
from app.ui.sync_recovery_notice import RecoveryBanner
from tests.qt.test_sync_settings import (  # noqa: F401 - the fake sync world's fixtures
    WAIT,
    SyncWorld,
    answer_questions,
    indicator,
    open_sync_page,
    signed_in_and_set_up,
    sync_stopped_after,
    world,
)

STARTED = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def a_recovery(device_id: str, recovery_id: str = "rec-1", status: str = "pending") -> RecoveryOut:
    return RecoveryOut(
        id=recovery_id,
        status=status,
        device_id=device_id,
        created_at=STARTED,
        not_before=STARTED + timedelta(hours=48),
        expires_at=STARTED + timedelta(days=7),
    )


def local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def with_recoveries(
    qtbot: QtBot,
    window: MainWindow,
    run_async: Callable[..., Any],
    world: SyncWorld,  # noqa: F811
    *recoveries: RecoveryOut,
) -> None:
    """Set up and synced; then the server lists ``recoveries`` (seen at the next sync)."""
    signed_in_and_set_up(qtbot, window, run_async, world)
    button = indicator(qtbot, window)
    qtbot.waitUntil(lambda: button.text() == "Synced", timeout=WAIT)
    world.recoveries[:] = recoveries
    run_async(window.session.sync.sync_now())


def banner(qtbot: QtBot, window: MainWindow) -> RecoveryBanner:
    qtbot.waitUntil(
        lambda: window.recovery_banner is not None and window.recovery_banner.isVisible(),
        timeout=WAIT,
    )
    assert window.recovery_banner is not None
    return window.recovery_banner


def test_another_devices_recovery_warns_and_the_banner_cancels_it(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_recoveries(qtbot, main_window, run_async, world, a_recovery("device-new"))
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(lambda: button.text() == "Recovery pending", timeout=WAIT)
    assert not button.icon().isNull()
    assert "cancel it" in button.toolTip()
    assert button.accessibleName() == "Sync: Recovery pending"

    notice = banner(qtbot, main_window)
    text = notice.text_label.text()
    assert f"on {local(STARTED)}" in text
    assert f"it can complete at {local(STARTED + timedelta(hours=48))}" in text
    assert not notice.cancel_button.isHidden() and not notice.approve_button.isHidden()

    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.No)
    notice.cancel_button.click()
    assert len(asked) == 1 and "If it was not you, cancel it" in asked[0]
    assert ("cancel-recovery", "rec-1") not in world.calls  # asked first: nothing sent

    answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    notice.cancel_button.click()
    qtbot.waitUntil(lambda: "Recovery cancelled" in notice.text_label.text(), timeout=WAIT)
    assert ("cancel-recovery", "rec-1") in world.calls
    assert notice.cancel_button.isHidden()
    # The changes answer no longer lists it: the indicator is back to normal.
    qtbot.waitUntil(lambda: button.text() == "Synced", timeout=WAIT)
    assert button.icon().isNull()


def test_approve_asks_only_if_it_is_you_then_approves(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_recoveries(qtbot, main_window, run_async, world, a_recovery("device-new"))
    notice = banner(qtbot, main_window)
    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    notice.approve_button.click()
    assert "only if this is you" in asked[0]
    qtbot.waitUntil(lambda: "Recovery approved" in notice.text_label.text(), timeout=WAIT)
    assert ("approve-recovery", "rec-1") in world.calls
    assert world.recoveries[0].status == "ready"


def test_a_refused_cancel_is_said_in_the_banner(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_recoveries(qtbot, main_window, run_async, world, a_recovery("device-new"))
    notice = banner(qtbot, main_window)
    world.recoveries.clear()  # it ended on the server meanwhile
    answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    notice.cancel_button.click()
    qtbot.waitUntil(lambda: "Could not cancel" in notice.text_label.text(), timeout=WAIT)
    assert "no such recovery" in notice.text_label.text()
    assert "SyncRefusedError" not in notice.text_label.text()


def test_this_devices_own_recovery_is_no_warning(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    run_async: Callable[..., Any],
) -> None:
    signed_in_and_set_up(qtbot, main_window, run_async, world)
    account = run_async(main_window.session.sync.account())
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(lambda: button.text() == "Synced", timeout=WAIT)
    world.recoveries[:] = [a_recovery(account.device_id)]
    run_async(main_window.session.sync.sync_now())
    sync = main_window.session.sync
    qtbot.waitUntil(lambda: bool(sync.status.recoveries), timeout=WAIT)
    assert button.text() == "Synced"
    assert main_window.recovery_banner is None or main_window.recovery_banner.isHidden()


def test_details_opens_settings_sync_which_lists_and_cancels_it(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,  # noqa: F811
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world.add_device("device-new", "Unknown laptop")
    with_recoveries(
        qtbot,
        main_window,
        run_async,
        world,
        a_recovery("device-new"),
        a_recovery("device-other", "rec-2", status="ready"),
    )
    notice = banner(qtbot, main_window)
    assert "1 more in Settings, Sync" in notice.text_label.text()
    notice.details_button.click()
    dialog = main_window.findChild(SettingsDialog)
    assert dialog is not None and dialog.tabs.currentWidget() is dialog.sync_page
    page = dialog.sync_page
    qtbot.waitUntil(lambda: page.step == "account", timeout=WAIT)
    qtbot.waitUntil(lambda: page.device_tree.topLevelItemCount() > 0, timeout=WAIT)
    qtbot.waitUntil(lambda: page.recovery_tree.topLevelItemCount() == 2, timeout=WAIT)
    assert not page.recovery_box.isHidden()
    rows = [[page.recovery_tree.topLevelItem(i).text(c) for c in range(4)] for i in range(2)]
    assert rows[1][2] == "now" and rows[1][3] == "ready"
    assert rows[0][1] == local(STARTED)

    page.recovery_tree.setCurrentItem(page.recovery_tree.topLevelItem(1))
    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    page.cancel_recovery_button.click()
    assert asked
    qtbot.waitUntil(lambda: ("cancel-recovery", "rec-2") in world.calls, timeout=WAIT)
    qtbot.waitUntil(lambda: page.recovery_tree.topLevelItemCount() == 1, timeout=WAIT)
    qtbot.waitUntil(
        lambda: page.message_label.text().startswith("Recovery cancelled"), timeout=WAIT
    )
    dialog.close()
