"""Locking when the OS locks the screen or sleeps: logind and screen-saver signals on a
private D-Bus daemon (started here), and the Windows session messages."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from PySide6.QtDBus import QDBusConnection, QDBusMessage
from pytestqt.qtbot import QtBot

from app.ui.screen_lock import (
    LOGIND,
    PBT_APMSUSPEND,
    WM_POWERBROADCAST,
    WM_WTSSESSION_CHANGE,
    WTS_SESSION_LOCK,
    ScreenLockWatcher,
)

pytestmark = pytest.mark.dbus

OUR_SESSION = "/org/freedesktop/login1/session/_31"


@pytest.fixture
def bus_address() -> Iterator[str]:
    """A private D-Bus daemon standing in for the system and session buses."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.fail("dbus-daemon is not installed (Debian package dbus); .ci/run installs it")
    process = subprocess.Popen(
        [daemon, "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


@pytest.fixture
def logind(bus_address: str, request: pytest.FixtureRequest) -> QDBusConnection:
    """A connection that owns logind's name, to send its signals from."""
    connection = QDBusConnection.connectToBus(bus_address, f"logind-{request.node.name}")
    assert connection.registerService(LOGIND)
    return connection


def _watcher(bus_address: str, name: str) -> tuple[ScreenLockWatcher, list[str]]:
    bus = QDBusConnection.connectToBus(bus_address, f"watcher-{name}")
    watcher = ScreenLockWatcher(
        system_bus=bus, session_bus=bus, session_path=OUR_SESSION, platform="linux"
    )
    seen: list[str] = []
    watcher.lock_requested.connect(seen.append)
    return watcher, seen


def _signal(sender: QDBusConnection, path: str, interface: str, name: str, *args: object) -> None:
    message = QDBusMessage.createSignal(path, interface, name)
    message.setArguments(list(args))
    assert sender.send(message)


def test_sleep_and_our_sessions_lock_ask_to_lock(
    qtbot: QtBot, bus_address: str, logind: QDBusConnection, request: pytest.FixtureRequest
) -> None:
    watcher, seen = _watcher(bus_address, request.node.name)
    assert "sleep (logind)" in watcher.watching
    assert "screen lock (logind)" in watcher.watching
    manager = ("/org/freedesktop/login1", "org.freedesktop.login1.Manager", "PrepareForSleep")
    _signal(logind, *manager, False)  # waking up: nothing to do
    _signal(logind, "/org/freedesktop/login1/session/_99", "org.freedesktop.login1.Session", "Lock")
    _signal(logind, *manager, True)
    qtbot.waitUntil(lambda: seen == ["sleep"], timeout=5_000)
    _signal(logind, OUR_SESSION, "org.freedesktop.login1.Session", "Lock")
    qtbot.waitUntil(lambda: seen == ["sleep", "screen lock"], timeout=5_000)


def test_a_signal_from_someone_else_than_logind_is_ignored(
    qtbot: QtBot, bus_address: str, logind: QDBusConnection, request: pytest.FixtureRequest
) -> None:
    watcher, seen = _watcher(bus_address, request.node.name)
    assert watcher.watching
    impostor = QDBusConnection.connectToBus(bus_address, f"impostor-{request.node.name}")
    _signal(impostor, OUR_SESSION, "org.freedesktop.login1.Session", "Lock")
    _signal(logind, OUR_SESSION, "org.freedesktop.login1.Session", "Lock")  # a marker
    qtbot.waitUntil(lambda: seen == ["screen lock"], timeout=5_000)
    qtbot.wait(200)
    assert seen == ["screen lock"]


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("org.freedesktop.ScreenSaver", "/org/freedesktop/ScreenSaver"),
        ("org.gnome.ScreenSaver", "/org/gnome/ScreenSaver"),
    ],
)
def test_screen_saver_turning_on_asks_to_lock(
    qtbot: QtBot, bus_address: str, request: pytest.FixtureRequest, service: str, path: str
) -> None:
    watcher, seen = _watcher(bus_address, request.node.name)
    assert watcher.watching
    saver = QDBusConnection.connectToBus(bus_address, f"saver-{request.node.name}")
    assert saver.registerService(service)
    _signal(saver, path, service, "ActiveChanged", False)
    _signal(saver, path, service, "ActiveChanged", True)
    qtbot.waitUntil(lambda: seen == ["screen saver"], timeout=5_000)


def test_without_logind_only_the_screen_savers_are_watched(
    qtbot: QtBot, bus_address: str, request: pytest.FixtureRequest
) -> None:
    """No logind on the bus: asking for our session fails quietly (logged)."""
    bus = QDBusConnection.connectToBus(bus_address, f"watcher-{request.node.name}")
    watcher = ScreenLockWatcher(system_bus=bus, session_bus=bus, platform="linux")
    qtbot.wait(300)  # the GetSessionByPID call is answered with an error
    assert "screen lock (logind)" not in watcher.watching


def test_windows_session_lock_and_suspend_messages() -> None:
    watcher = ScreenLockWatcher(platform="win32")
    seen: list[str] = []
    watcher.lock_requested.connect(seen.append)
    watcher.handle_windows_message(WM_WTSSESSION_CHANGE, 0x8)  # WTS_SESSION_UNLOCK
    watcher.handle_windows_message(WM_POWERBROADCAST, 0x7)  # PBT_APMRESUMESUSPEND
    assert seen == []
    watcher.handle_windows_message(WM_WTSSESSION_CHANGE, WTS_SESSION_LOCK)
    watcher.handle_windows_message(WM_POWERBROADCAST, PBT_APMSUSPEND)
    assert seen == ["screen lock", "sleep"]
