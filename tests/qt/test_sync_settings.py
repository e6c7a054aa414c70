"""Settings, Sync and the window's sync indicator, against an in-memory sync server.

No network peer: the sign-in flows of ``app.sync.login`` are replaced by fakes that
return an account (or fail as the real ones do), and the session's sync client is a
``FakeTransport`` over the unit tier's ``FakeServer`` (the real server's push and pull
rules) with ``me``, ``devices`` and ``revoke`` added. The sync engine, the service, the
vault and the chat service are the real ones. Another device of the account is
``tests.unit.sync.devices.Device`` on the same fake server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QMessageBox, QPushButton, QWidget
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig
from app.session import Session
from app.store.models import TitleSource
from app.sync import login
from app.sync import service as sync_service
from app.sync.account import SyncAccount
from app.sync.client import SyncRefusedError
from app.sync.dpop import DeviceKey
from app.sync.engine import EngineStatus, SyncStatus
from app.sync.errors import SyncAuthError, SyncOfflineError
from app.sync.login import SignInError, SignInMethods
from app.sync.protocol import ChangesResponse, DeviceOut, Me, RecoveryOut
from app.tiers import Tier
from app.ui.main_window import MainWindow
from app.ui.settings import SettingsDialog
from app.ui.sync_settings import SyncPageWidget
from app.ui.sync_status import SyncStatusButton
from app.vault.recovery_code import RecoveryCode
from tests.qt.conftest import QT_PASSPHRASE, close_session, make_session
from tests.unit.sync.devices import ACCOUNT, PASSPHRASE, Device
from tests.unit.sync.fake_server import FakeServer, FakeTransport

SERVER_URL = "https://sync.example.org"
WAIT = 20_000  # the machine may be busy: waits end as soon as they can
MOMENT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@dataclass
class SyncWorld:
    """The fake server's account: its records, its devices, what the flows do."""

    server: FakeServer = field(default_factory=FakeServer)
    devices: dict[str, DeviceOut] = field(default_factory=dict)
    clients: list[FakeClient] = field(default_factory=list)
    methods: SignInMethods = field(
        default_factory=lambda: SignInMethods(SERVER_URL, "https://idp.example", True, True, False)
    )
    #: Set: the browser sign-in waits until the test releases it.
    hold_browser: bool = False
    browser_released: asyncio.Event = field(default_factory=asyncio.Event)
    #: Raised by the next sign-in flow instead of signing in.
    sign_in_error: BaseException | None = None
    calls: list[tuple[str, ...]] = field(default_factory=list)
    #: The account's recoveries, listed in every changes answer (as the real server does).
    recoveries: list[RecoveryOut] = field(default_factory=list)

    def add_device(self, device_id: str, name: str) -> None:
        self.devices[device_id] = DeviceOut(
            id=device_id,
            name=name,
            created_at=MOMENT,
            last_seen_at=MOMENT,
            revoked_at=None,
            current=False,
        )

    def account(self, device_name: str | None, email: str = "ada@example.org") -> SyncAccount:
        account = SyncAccount(
            server_url=SERVER_URL,
            account_id=ACCOUNT,
            email=email,
            sign_in="oidc",
            device_key=DeviceKey.generate(),
            access_token="access-token",
            refresh_token="refresh-token",
            device_name=device_name,
        )
        self.add_device(account.device_id, device_name or "")
        return account

    # --- the fakes of app.sync.login ----------------------------------------------------

    async def sign_in_methods(self, server_url: str, **_: Any) -> SignInMethods:
        self.calls.append(("methods", server_url))
        return replace(self.methods, server_url=server_url)

    async def sign_in_with_browser(
        self, server_url: str, *, device_name: str, output: Any, **_: Any
    ) -> SyncAccount:
        self.calls.append(("browser", server_url, device_name))
        output.write(f"Continue in the browser to sign in to {server_url} (up to 5 min)…\n")
        if self.hold_browser:
            await self.browser_released.wait()
        if self.sign_in_error is not None:
            raise self.sign_in_error
        return self.account(device_name)

    async def sign_in_with_device_code(
        self, server_url: str, *, device_name: str, output: Any, **_: Any
    ) -> SyncAccount:
        self.calls.append(("code", server_url, device_name))
        output.write("open https://idp.example/device and enter the code\n\n  WDJB-MJHT\n")
        await self.browser_released.wait()
        return self.account(device_name)

    async def sign_in_local(
        self, server_url: str, email: str, password: str, *, device_name: str, **_: Any
    ) -> SyncAccount:
        self.calls.append(("local", server_url, email))
        if self.sign_in_error is not None:
            raise self.sign_in_error
        return self.account(device_name, email)

    async def revoke_refresh_token(self, account: SyncAccount, **_: Any) -> bool:
        self.calls.append(("revoke-sign-in", account.device_id))
        return True


class FakeClient(FakeTransport):
    """The session's ``SyncClient``: the fake server's push and pull, plus the account."""

    def __init__(self, world: SyncWorld, account: SyncAccount) -> None:
        super().__init__(world.server, account.device_id)
        self.world = world
        self.account = account

    def _check(self) -> None:
        device = self.world.devices.get(self.device_id)
        if device is not None and device.revoked_at is not None:
            raise SyncAuthError("This device was signed out of the sync server; sign in again.")
        super()._check()

    async def me(self) -> Me:
        self._check()
        return Me(
            id=ACCOUNT,
            issuer="https://idp.example",
            subject="ada",
            email=self.account.email,
            email_verified=True,
            cursor=self.server.seq,
            device_id=self.device_id,
            created_at=MOMENT,
        )

    async def devices(self) -> list[DeviceOut]:
        self._check()
        return [
            device.model_copy(update={"current": device.id == self.device_id})
            for device in self.world.devices.values()
        ]

    async def revoke(self, device_id: str) -> None:
        self._check()
        self.world.calls.append(("revoke", device_id))
        device = self.world.devices[device_id]
        self.world.devices[device_id] = device.model_copy(update={"revoked_at": MOMENT})

    async def changes(
        self, cursor: int, *, limit: int | None = None, wait: float = 0.0
    ) -> ChangesResponse:
        page = await super().changes(cursor, limit=limit, wait=wait)
        return page.model_copy(update={"recoveries": list(self.world.recoveries)})

    async def cancel_recovery(self, recovery_id: str) -> RecoveryOut:
        return self._recovery_action("cancel", recovery_id, "cancelled")

    async def approve_recovery(self, recovery_id: str) -> RecoveryOut:
        return self._recovery_action("approve", recovery_id, "ready")

    def _recovery_action(self, action: str, recovery_id: str, status: str) -> RecoveryOut:
        self._check()
        self.world.calls.append((f"{action}-recovery", recovery_id))
        for index, recovery in enumerate(self.world.recoveries):
            if recovery.id == recovery_id:
                done = recovery.model_copy(update={"status": status})
                self.world.recoveries[index] = done
                return done
        raise SyncRefusedError("The sync server knows no such recovery.", 404, "not-found")

    async def aclose(self) -> None:
        return None


@pytest.fixture(autouse=True)
def world(monkeypatch: pytest.MonkeyPatch) -> SyncWorld:
    """Every session's sync client talks to this world's fake server; sign-in is faked."""
    world = SyncWorld()

    def client(account: SyncAccount, _saver: object) -> FakeClient:
        made = FakeClient(world, account)
        world.clients.append(made)
        return made

    monkeypatch.setattr(sync_service, "_default_client", client)
    for name in ("sign_in_methods", "sign_in_with_browser", "sign_in_with_device_code"):
        monkeypatch.setattr(login, name, getattr(world, name))
    monkeypatch.setattr(login, "sign_in_local", world.sign_in_local)
    monkeypatch.setattr(login, "revoke_refresh_token", world.revoke_refresh_token)
    return world


@pytest.fixture(autouse=True)
def sync_stopped_after(
    qtbot: QtBot, unlocked_session: Session, run_async: Callable[..., Any]
) -> Iterator[None]:
    """Let background sync end before the session closes and the loop with it: its task
    is not one of ``tasks``'. (By then the window is closed, which locked: the session
    cancelled sync.)"""
    yield
    if unlocked_session.is_unlocked:
        run_async(unlocked_session.sync.stop())

    def ended() -> bool:
        loop = asyncio.get_event_loop()
        return not any(t.get_name() == "hushchat-sync" for t in asyncio.all_tasks(loop))

    qtbot.waitUntil(ended, timeout=WAIT)


@pytest.fixture
def other_device(world: SyncWorld) -> Iterator[Device]:
    """Another device of the account (its own in-memory databases) on the same server."""
    device = Device(world.server, "a")
    world.add_device("device-a", "Ada's desktop")
    yield device
    device.runner.shutdown()


def open_sync_page(window: MainWindow) -> tuple[SettingsDialog, SyncPageWidget]:
    dialog = window.open_settings("sync")
    assert dialog is not None
    assert dialog.tabs.currentWidget() is dialog.sync_page
    return dialog, dialog.sync_page


def wait_step(qtbot: QtBot, page: SyncPageWidget, step: str) -> None:
    qtbot.waitUntil(lambda: page.step == step and page.sign_in_button.isEnabled(), timeout=WAIT)


def answer_questions(
    monkeypatch: pytest.MonkeyPatch, answer: QMessageBox.StandardButton
) -> list[str]:
    """QMessageBox.question answers ``answer``; the texts it was asked are returned."""
    asked: list[str] = []

    def question(_parent: object, _title: str, text: str, *_: object) -> QMessageBox.StandardButton:
        asked.append(text)
        return answer

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def sign_in_with_browser(qtbot: QtBot, page: SyncPageWidget) -> None:
    """Type the server address and press Enter, as a user does."""
    wait_step(qtbot, page, "sign_in")
    page.server_edit.setFocus()
    qtbot.keyClicks(page.server_edit, SERVER_URL)
    qtbot.keyClick(page.server_edit, Qt.Key.Key_Return)


def signed_in_and_set_up(
    qtbot: QtBot, window: MainWindow, run_async: Callable[..., Any], world: SyncWorld
) -> SyncAccount:
    """The profile signed in and set up through the service, background sync running."""
    sync = window.session.sync
    account = world.account("This laptop")
    run_async(sync.sign_in(account))
    run_async(
        sync.set_up(
            passphrase=QT_PASSPHRASE,
            recovery_secret=None,
            kdf=run_async(sync.keys_record_kdf(window.session.slots(), window.session.kdf)),
        )
    )
    window.start_sync()
    qtbot.waitUntil(lambda: sync.running, timeout=WAIT)
    return account


def indicator(qtbot: QtBot, window: MainWindow) -> SyncStatusButton:
    """The status bar's sync indicator, once the window has made it (after the first
    read of the profile's sync state, which runs in the background)."""
    qtbot.waitUntil(lambda: window.sync_button is not None, timeout=WAIT)
    assert window.sync_button is not None
    return window.sync_button


def sidebar_titles(window: MainWindow) -> list[str]:
    area = window.chat_area
    assert area is not None
    model = area.sidebar.model
    return [str(model.index(row, 0).data()) for row in range(model.rowCount())]


# ----------------------------------------------------------------- the page's steps


def test_first_device_signs_in_with_the_browser_and_sets_up_sync(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,
    run_async: Callable[..., Any],
) -> None:
    assert main_window.sync_button is None or not main_window.sync_button.isVisible()
    dialog, page = open_sync_page(main_window)
    world.hold_browser = True
    sign_in_with_browser(qtbot, page)  # Enter in the address field signs in

    qtbot.waitUntil(lambda: page.step == "waiting", timeout=WAIT)
    assert page.waiting_title.text() == "Continue in your browser…"
    assert page.cancel_button.isVisible()
    assert not page.code_button.isHidden()  # the provider offers sign-in with a code
    assert page.local_box.isHidden()  # no local accounts on this server
    assert dialog.isVisible()  # Enter did not reach the dialog's Close button
    world.browser_released.set()

    # The account is new: set up, with the vault passphrase, checked against the vault.
    qtbot.waitUntil(lambda: page.step == "keys" and page.keys_button.isEnabled(), timeout=WAIT)
    assert not page.joining
    assert "first device of ada@example.org" in page.keys_intro.text()
    assert not page.recovery_check.isHidden()
    page.keys_passphrase_edit.setText("not the vault passphrase")
    page.keys_button.click()
    qtbot.waitUntil(lambda: "does not open" in page.message_label.text(), timeout=WAIT)
    assert page.message_label.property("role") == "error"
    assert not any(r.kind == "keys" for r in world.server.records.values())

    page.keys_passphrase_edit.setText(QT_PASSPHRASE)
    page.recovery_check.setChecked(True)
    page.recovery_edit.setText("1234")
    page.keys_button.click()
    assert "recovery code" in page.message_label.text()  # a typo, said before any work
    page.recovery_edit.setText(RecoveryCode.generate().formatted())
    qtbot.keyClick(page.keys_passphrase_edit, Qt.Key.Key_Return)  # Enter sets up
    qtbot.waitUntil(lambda: page.step == "account", timeout=WAIT)
    assert "Sync is set up" in page.message_label.text()
    assert "recovery code" in page.message_label.text()
    assert page.keys_passphrase_edit.text() == "" and page.recovery_edit.text() == ""
    assert any(r.kind == "keys" for r in world.server.records.values())

    # The account step: who, where, this device, its devices.
    assert page.email_label.text() == "ada@example.org"
    assert page.server_label.text() == SERVER_URL
    assert page.device_label.text() == login.default_device_name()
    qtbot.waitUntil(lambda: page.device_tree.topLevelItemCount() == 1, timeout=WAIT)
    item = page.device_tree.topLevelItem(0)
    assert item.text(2) == "this device"
    page.device_tree.setCurrentItem(item)
    assert not page.revoke_button.isEnabled()  # this device signs out instead

    # Background sync runs, and the window's indicator says so.
    session = main_window.session
    qtbot.waitUntil(lambda: session.sync.running, timeout=WAIT)
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(lambda: button is not None and button.text() == "Synced", timeout=WAIT)
    assert button is not None and button.isVisible()
    dialog.close()


def test_cancel_while_waiting_for_the_browser(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld, run_async: Callable[..., Any]
) -> None:
    _dialog, page = open_sync_page(main_window)
    world.hold_browser = True
    sign_in_with_browser(qtbot, page)
    qtbot.waitUntil(lambda: page.step == "waiting", timeout=WAIT)
    qtbot.waitUntil(lambda: "Continue in the browser" in page.waiting_detail.text(), timeout=WAIT)
    qtbot.keyClick(page.cancel_button, Qt.Key.Key_Space)
    wait_step(qtbot, page, "sign_in")
    assert page.message_label.text() == "Sign-in cancelled."
    assert run_async(main_window.session.sync.account()) is None


def test_sign_in_with_a_code_shows_the_code(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld
) -> None:
    _dialog, page = open_sync_page(main_window)
    world.hold_browser = True
    sign_in_with_browser(qtbot, page)
    qtbot.waitUntil(lambda: page.step == "waiting", timeout=WAIT)
    page.cancel_button.click()
    wait_step(qtbot, page, "sign_in")
    page.code_button.click()
    qtbot.waitUntil(lambda: "WDJB-MJHT" in page.waiting_detail.text(), timeout=WAIT)
    assert page.waiting_title.text() == "Enter the code on another device…"
    world.browser_released.set()
    qtbot.waitUntil(lambda: page.step == "keys", timeout=WAIT)
    assert ("code", SERVER_URL, login.default_device_name()) in world.calls


def test_a_refused_sign_in_is_said_in_plain_words(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld, run_async: Callable[..., Any]
) -> None:
    _dialog, page = open_sync_page(main_window)
    world.sign_in_error = SignInError(
        "The identity provider idp.example did not sign you in (access_denied)."
    )
    sign_in_with_browser(qtbot, page)
    qtbot.waitUntil(lambda: "did not sign you in" in page.message_label.text(), timeout=WAIT)
    wait_step(qtbot, page, "sign_in")
    assert page.message_label.property("role") == "error"
    assert "SignInError" not in page.message_label.text()
    assert run_async(main_window.session.sync.account()) is None


def test_an_unreachable_server_is_said_without_exception_names(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld
) -> None:
    _dialog, page = open_sync_page(main_window)
    world.sign_in_error = SyncOfflineError(
        "Cannot reach the sync server sync.example.org (ConnectError); syncing will retry "
        "when it can."
    )
    sign_in_with_browser(qtbot, page)
    qtbot.waitUntil(lambda: "Cannot reach" in page.message_label.text(), timeout=WAIT)
    assert page.message_label.text() == (
        "Cannot reach the sync server sync.example.org; syncing will retry when it can."
    )


def test_an_unexpected_error_is_logged_with_its_traceback_not_shown(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _dialog, page = open_sync_page(main_window)
    world.sign_in_error = KeyError("a bug")
    with caplog.at_level(logging.ERROR):
        sign_in_with_browser(qtbot, page)
        qtbot.waitUntil(lambda: "Something went wrong" in page.message_label.text(), timeout=WAIT)
    assert "KeyError" not in page.message_label.text()
    assert "Hushchat's log" in page.message_label.text()
    crashed = [r for r in caplog.records if r.message == "background task crashed"]
    assert crashed and crashed[0].exc_info is not None


def test_local_accounts_sign_in_with_e_mail_and_password(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld
) -> None:
    world.methods = SignInMethods(SERVER_URL, None, False, False, True)
    _dialog, page = open_sync_page(main_window)
    sign_in_with_browser(qtbot, page)
    qtbot.waitUntil(lambda: not page.local_box.isHidden(), timeout=WAIT)
    assert page.code_button.isHidden()
    assert "e-mail and password" in page.message_label.text()
    assert page.email_edit.hasFocus()
    qtbot.keyClicks(page.email_edit, "ada@example.org")
    qtbot.keyClick(page.email_edit, Qt.Key.Key_Tab)
    assert page.password_edit.hasFocus()
    world.sign_in_error = SignInError("Wrong e-mail address or password.")
    qtbot.keyClicks(page.password_edit, "hunter2 hunter2")
    qtbot.keyClick(page.password_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "Wrong e-mail" in page.message_label.text(), timeout=WAIT)
    assert page.password_edit.text() == ""  # never kept after use
    world.sign_in_error = None
    page.password_edit.setText("hunter2 hunter2")
    page.local_button.click()
    qtbot.waitUntil(lambda: page.step == "keys", timeout=WAIT)
    assert ("local", SERVER_URL, "ada@example.org") in world.calls


def test_another_device_joins_with_the_accounts_passphrase_and_gets_its_chats(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,
    other_device: Device,
    run_async: Callable[..., Any],
) -> None:
    store = other_device.library.store(Tier.STANDARD)
    chat = store.create_chat(title="Holiday plans", title_source=TitleSource.USER)
    run_async(other_device.setup())
    run_async(other_device.engine.sync_once())

    _dialog, page = open_sync_page(main_window)
    sign_in_with_browser(qtbot, page)
    qtbot.waitUntil(lambda: page.step == "keys" and page.keys_button.isEnabled(), timeout=WAIT)
    assert page.joining
    assert "already syncs from another device" in page.keys_intro.text()
    assert page.recovery_check.isHidden()
    page.keys_passphrase_edit.setText(QT_PASSPHRASE)  # this vault's, not the account's
    page.keys_button.click()
    qtbot.waitUntil(lambda: "does not open the account" in page.message_label.text(), timeout=WAIT)
    assert page.step == "keys"
    page.keys_passphrase_edit.setText(PASSPHRASE)
    page.keys_button.click()
    qtbot.waitUntil(lambda: page.step == "account", timeout=WAIT)
    assert page.message_label.text().startswith("Joined")
    qtbot.waitUntil(lambda: "Holiday plans" in sidebar_titles(main_window), timeout=WAIT)

    # A rename on the other device arrives by the long poll and shows in the sidebar.
    store.rename(chat.id, "Holiday plans, Lisbon")
    run_async(other_device.engine.sync_once())
    qtbot.waitUntil(lambda: "Holiday plans, Lisbon" in sidebar_titles(main_window), timeout=WAIT)
    qtbot.waitUntil(lambda: page.device_tree.topLevelItemCount() == 2, timeout=WAIT)


def test_revoke_asks_naming_the_device_and_sign_out_says_chats_stay(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device_id = signed_in_and_set_up(qtbot, main_window, run_async, world).device_id
    world.add_device("device-lost", "Old laptop")
    _dialog, page = open_sync_page(main_window)
    qtbot.waitUntil(lambda: page.device_tree.topLevelItemCount() == 2, timeout=WAIT)
    lost = next(
        page.device_tree.topLevelItem(i)
        for i in range(2)
        if page.device_tree.topLevelItem(i).text(0) == "Old laptop"
    )
    page.device_tree.setCurrentItem(lost)
    assert page.revoke_button.isEnabled()

    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.No)
    page.revoke_button.click()
    assert len(asked) == 1 and "Old laptop" in asked[0]
    assert ("revoke", "device-lost") not in world.calls

    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    page.revoke_button.click()
    qtbot.waitUntil(lambda: "Revoked “Old laptop”" in page.message_label.text(), timeout=WAIT)
    assert ("revoke", "device-lost") in world.calls
    qtbot.waitUntil(
        lambda: any(
            page.device_tree.topLevelItem(i).text(1) == "revoked"
            for i in range(page.device_tree.topLevelItemCount())
        ),
        timeout=WAIT,
    )

    # Sign out: asked first, saying the chats stay; No changes nothing.
    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.No)
    page.sign_out_button.click()
    assert "chats stay on this device" in asked[0]
    assert run_async(main_window.session.sync.account()) is not None
    answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    page.sign_out_button.click()
    wait_step(qtbot, page, "sign_in")
    assert "chats stay on this device" in page.message_label.text()
    assert page.server_edit.text() == SERVER_URL
    assert run_async(main_window.session.sync.account()) is None
    assert ("revoke-sign-in", device_id) in world.calls  # at the identity provider too
    assert not main_window.session.sync.running
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(lambda: button is not None and not button.isVisible(), timeout=WAIT)


def test_sync_now_and_pause_resume(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld, run_async: Callable[..., Any]
) -> None:
    signed_in_and_set_up(qtbot, main_window, run_async, world)
    _dialog, page = open_sync_page(main_window)
    qtbot.waitUntil(lambda: page.step == "account", timeout=WAIT)
    sync = main_window.session.sync
    page.sync_now_button.click()
    qtbot.waitUntil(lambda: page.message_label.text().startswith("Synced:"), timeout=WAIT)

    assert page.pause_button.text() == "Pa&use sync"
    page.pause_button.click()
    qtbot.waitUntil(lambda: not sync.running and page.pause_button.isEnabled(), timeout=WAIT)
    assert page.pause_button.text() == "Resu&me sync"
    assert "paused" in page.state_label.text()
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(lambda: button is not None and button.text() == "Sync paused", timeout=WAIT)
    assert button is not None and "to be sent" not in button.toolTip()  # nothing to send
    run_async(main_window.session.service.create_chat(Tier.STANDARD))
    main_window.refresh_sync()
    qtbot.waitUntil(lambda: "to be sent" in button.toolTip(), timeout=WAIT)
    page.pause_button.click()
    qtbot.waitUntil(lambda: sync.running and page.pause_button.isEnabled(), timeout=WAIT)
    assert page.message_label.text() == "Sync resumed."
    qtbot.waitUntil(lambda: button is not None and button.text() == "Synced", timeout=WAIT)


def test_the_pages_fields_and_buttons_are_in_the_tab_order(
    qtbot: QtBot, main_window: MainWindow
) -> None:
    _dialog, page = open_sync_page(main_window)
    wait_step(qtbot, page, "sign_in")
    chain: list[QWidget] = []
    widget = page.server_edit.nextInFocusChain()
    while widget is not page.server_edit and len(chain) < 200:
        if page.isAncestorOf(widget) and widget.focusPolicy() & Qt.FocusPolicy.TabFocus:
            chain.append(widget)
        widget = widget.nextInFocusChain()
    order = [page.device_name_edit, page.sign_in_button, page.code_button]
    assert [w for w in chain if w in order] == order
    for step in (page.sign_in_step, page.keys_step, page.account_step, page.waiting_step):
        for button in step.findChildren(QPushButton):
            assert button in chain, button.text()
            assert button.focusPolicy() & Qt.FocusPolicy.TabFocus
    for edit in (page.email_edit, page.password_edit, page.keys_passphrase_edit):
        assert edit in chain


# ----------------------------------------------------------------- the window


def test_the_indicator_follows_the_status_and_opens_the_sync_page(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld, run_async: Callable[..., Any]
) -> None:
    signed_in_and_set_up(qtbot, main_window, run_async, world)
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(lambda: button is not None and button.text() == "Synced", timeout=WAIT)
    assert button is not None and button.isVisible()
    sync = main_window.session.sync
    for state, reason, text in (
        (SyncStatus.SYNCING, None, "Syncing…"),
        (SyncStatus.OFFLINE, "The sync server cannot be reached.", "Offline"),
        (SyncStatus.ERROR, "The server answered 500.", "Sync error"),
        (SyncStatus.SIGNED_OUT, "This device was signed out.", "Signed out"),
        (SyncStatus.OFFLINE, "Cannot talk to the sync server s.example: ReadError.", "Offline"),
        (SyncStatus.IDLE, None, "Synced"),
    ):
        sync._set_status(EngineStatus(state, reason))
        assert button.text() == text
        if reason:
            assert reason.rstrip(".").removesuffix(": ReadError") in button.toolTip()
        assert "ReadError" not in button.toolTip()
        assert "Settings, Sync" in button.toolTip()

    button.click()
    dialog = main_window.findChild(SettingsDialog)
    assert dialog is not None and dialog.tabs.currentWidget() is dialog.sync_page
    dialog.close()


def test_a_revoked_device_shows_signed_out(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld, run_async: Callable[..., Any]
) -> None:
    account = signed_in_and_set_up(qtbot, main_window, run_async, world)
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(lambda: button is not None and button.text() == "Synced", timeout=WAIT)
    world.devices[account.device_id] = world.devices[account.device_id].model_copy(
        update={"revoked_at": MOMENT}
    )
    run_async(main_window.session.service.create_chat(Tier.STANDARD))  # something to push
    qtbot.waitUntil(lambda: button is not None and button.text() == "Signed out", timeout=WAIT)
    assert button is not None and "Sign in again" in button.toolTip()


def test_sync_starts_after_unlock_when_set_up(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld, run_async: Callable[..., Any]
) -> None:
    signed_in_and_set_up(qtbot, main_window, run_async, world)
    main_window.lock(confirm=False)
    assert main_window.sync_button is not None and not main_window.sync_button.isVisible()
    assert not main_window.session.is_unlocked

    main_window.unlock_page.passphrase_edit.setText(QT_PASSPHRASE)
    with qtbot.waitSignal(main_window.unlocked, timeout=WAIT):
        main_window.unlock_page.unlock()
    session = main_window.session
    qtbot.waitUntil(lambda: session.sync.running, timeout=WAIT)
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(lambda: button is not None and button.text() == "Synced", timeout=WAIT)
    assert button is not None and button.isVisible()


def test_signed_in_but_not_set_up_does_not_start(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld, run_async: Callable[..., Any]
) -> None:
    sync = main_window.session.sync
    run_async(sync.sign_in(world.account("This laptop")))
    main_window.start_sync()
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(lambda: button is not None and button.isVisible(), timeout=WAIT)
    assert button is not None and button.text() == "Sync not set up"
    assert not sync.running


def test_not_signed_in_shows_no_indicator_and_starts_nothing(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld
) -> None:
    main_window.start_sync()
    qtbot.waitUntil(lambda: main_window.sync_button is not None, timeout=WAIT)
    assert main_window.sync_button is not None and not main_window.sync_button.isVisible()
    assert not main_window.session.sync.running
    assert world.clients == []  # no request to any server


def test_ephemeral_chats_say_not_synced_only_while_signed_in(
    qtbot: QtBot,
    main_window: MainWindow,
    world: SyncWorld,
    run_async: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Closing the window at the end lets the Ephemeral chat vanish without asking.
    monkeypatch.setattr(QMessageBox, "warning", lambda *_: QMessageBox.StandardButton.Ok)
    area = main_window.chat_area
    assert area is not None
    qtbot.waitUntil(lambda: main_window.sync_button is not None, timeout=WAIT)
    area.new_chat("ephemeral")
    qtbot.waitUntil(lambda: area.sidebar.model.rowCount() == 1, timeout=WAIT)
    model = area.sidebar.model

    def tooltip() -> str:
        return str(model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole))

    assert "Not synced" not in tooltip()
    assert "Not synced" not in area.chat_view.banner.text()

    run_async(main_window.session.sync.sign_in(world.account("This laptop")))
    main_window.refresh_sync(account_changed=True)
    qtbot.waitUntil(lambda: "Not synced" in tooltip(), timeout=WAIT)
    assert "not synced" in str(model.index(0, 0).data(Qt.ItemDataRole.AccessibleTextRole))
    assert "Not synced" in area.chat_view.banner.text()

    chat = run_async(main_window.session.service.create_chat(Tier.STANDARD))
    qtbot.waitUntil(lambda: model.rowCount() == 2, timeout=WAIT)
    row = model.row_of(chat.id)
    assert row is not None
    assert "Not synced" not in str(model.index(row, 0).data(Qt.ItemDataRole.ToolTipRole))


def test_sync_runs_again_after_a_key_rotation_reopens_the_chats(
    qtbot: QtBot, main_window: MainWindow, world: SyncWorld, run_async: Callable[..., Any]
) -> None:
    signed_in_and_set_up(qtbot, main_window, run_async, world)
    old = main_window.session.sync
    dialog, page = open_sync_page(main_window)
    assert dialog.start_rotation(QT_PASSPHRASE, confirm=False)
    qtbot.waitUntil(lambda: hasattr(dialog, "recovery_dialog"), timeout=30_000)
    session = main_window.session
    qtbot.waitUntil(lambda: session.sync is not old and session.sync.running, timeout=WAIT)
    assert not old.running
    qtbot.waitUntil(lambda: page.step == "account", timeout=WAIT)
    button = indicator(qtbot, main_window)
    qtbot.waitUntil(
        lambda: button is not None and button.isVisible() and button.text() == "Synced",
        timeout=WAIT,
    )
    session.sync._set_status(EngineStatus(SyncStatus.OFFLINE, "no route to host"))
    assert "no route to host" in page.state_label.text()
    assert button is not None and button.text() == "Offline"
    dialog.recovery_dialog.close()


def test_first_run_brings_the_chats_of_another_computer(
    qtbot: QtBot,
    world: SyncWorld,
    other_device: Device,
    run_async: Callable[..., Any],
    qt_config: LoadedConfig,
    tmp_path: Path,
    window_settings: QSettings,
) -> None:
    store = other_device.library.store(Tier.STANDARD)
    store.create_chat(title="Holiday plans", title_source=TitleSource.USER)
    run_async(other_device.setup())
    run_async(other_device.engine.sync_once())

    profile = tmp_path / "new-computer"
    session = make_session(qt_config, profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    try:
        first_run = window.first_run
        assert first_run is not None and window.current_page == "first_run"
        assert first_run.from_server_options.isHidden()
        first_run.from_server_check.setChecked(True)
        assert not first_run.from_server_options.isHidden()
        assert "Choose the passphrase you use there" in first_run.from_server_hint.text()
        fields = first_run.passphrase_fields
        fields.passphrase_edit.setText(PASSPHRASE)  # the account's passphrase
        fields.confirm_edit.setText(PASSPHRASE)
        qtbot.waitUntil(first_run.create_button.isEnabled, timeout=WAIT)
        first_run.create_button.click()
        qtbot.waitUntil(lambda: first_run.currentWidget() is first_run.recovery_page, timeout=WAIT)
        first_run.recovery.stored_check.setChecked(True)
        first_run.continue_button.click()

        assert first_run.currentWidget() is first_run.sync_step_page
        page = first_run.sync_page
        assert page is not None and not first_run.sync_skip_button.isHidden()
        sign_in_with_browser(qtbot, page)
        qtbot.waitUntil(lambda: page.step == "keys" and page.keys_button.isEnabled(), timeout=WAIT)
        assert page.joining
        page.keys_passphrase_edit.setText(PASSPHRASE)
        page.keys_button.click()
        qtbot.waitUntil(lambda: page.step == "account", timeout=WAIT)
        assert first_run.sync_skip_button.isHidden()
        assert session.sync.running

        first_run.sync_continue_button.click()
        assert first_run.currentWidget() is first_run.provider_page
        first_run.skip_button.click()
        assert window.current_page == "main"
        qtbot.waitUntil(lambda: "Holiday plans" in sidebar_titles(window), timeout=WAIT)
        button = indicator(qtbot, window)
        qtbot.waitUntil(lambda: button.text() == "Synced", timeout=WAIT)
    finally:
        window.close()
        if session.is_unlocked:
            run_async(session.sync.stop())
        close_session(session)


def test_first_run_without_the_tick_goes_straight_to_the_provider(
    qtbot: QtBot,
    run_async: Callable[..., Any],
    qt_config: LoadedConfig,
    tmp_path: Path,
    window_settings: QSettings,
) -> None:
    session = make_session(qt_config, tmp_path / "only-computer")
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    try:
        first_run = window.first_run
        assert first_run is not None
        first_run.passphrase_fields.passphrase_edit.setText(PASSPHRASE)
        first_run.passphrase_fields.confirm_edit.setText(PASSPHRASE)
        qtbot.waitUntil(first_run.create_button.isEnabled, timeout=WAIT)
        first_run.create_button.click()
        qtbot.waitUntil(lambda: first_run.currentWidget() is first_run.recovery_page, timeout=WAIT)
        first_run.recovery.stored_check.setChecked(True)
        first_run.continue_button.click()
        assert first_run.currentWidget() is first_run.provider_page
        assert first_run.sync_page is None  # nothing asked the sync server
    finally:
        window.close()
        close_session(session)
