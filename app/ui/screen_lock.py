"""Lock when the computer locks its screen or goes to sleep.

:class:`ScreenLockWatcher` emits ``lock_requested(reason)`` when:

* Linux: logind says the machine is about to sleep (``PrepareForSleep(true)`` on the
  system bus) or asks our session to lock (``Session.Lock``), or a screen saver turns
  on (``org.freedesktop.ScreenSaver`` / ``org.gnome.ScreenSaver`` ``ActiveChanged(true)``
  on the session bus);
* macOS: the distributed notification ``com.apple.screenIsLocked`` is posted
  (delivered on the main run loop, which Qt's event loop drives);
* Windows: ``WM_WTSSESSION_CHANGE`` with ``WTS_SESSION_LOCK``, or ``WM_POWERBROADCAST``
  with ``PBT_APMSUSPEND``, reach the window (``handle_windows_message``, called from
  the window's native event hook).

Whatever the platform offers, a suspend is also caught afterwards by the unlock
agent's clock comparison (``app.agent.server.SuspendDetector``). Nothing here blocks:
D-Bus calls are asynchronous and every signal arrives through Qt's event loop.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import Any, Final, cast

from PySide6.QtCore import SLOT, QObject, Signal, Slot
from PySide6.QtDBus import QDBusConnection, QDBusMessage, QDBusPendingCallWatcher

__all__ = ["LOGIND", "ScreenLockWatcher"]

log = logging.getLogger(__name__)

LOGIND: Final = "org.freedesktop.login1"
_LOGIND_PATH: Final = "/org/freedesktop/login1"
_MANAGER: Final = "org.freedesktop.login1.Manager"
_SESSION: Final = "org.freedesktop.login1.Session"
_SCREEN_SAVERS: Final = (
    ("org.freedesktop.ScreenSaver", "/org/freedesktop/ScreenSaver", "org.freedesktop.ScreenSaver"),
    ("org.gnome.ScreenSaver", "/org/gnome/ScreenSaver", "org.gnome.ScreenSaver"),
)

# Windows messages (winuser.h, wtsapi32.h).
WM_WTSSESSION_CHANGE: Final = 0x02B1
WTS_SESSION_LOCK: Final = 0x7
WM_POWERBROADCAST: Final = 0x0218
PBT_APMSUSPEND: Final = 0x4
_NOTIFY_FOR_THIS_SESSION: Final = 0


def _slot(signature: str) -> bytes:
    """A slot reference for ``QDBusConnection.connect``: PySide6 wants ``SLOT()``'s
    string at run time, while its type stubs say bytes."""
    return cast(bytes, SLOT(signature))


class ScreenLockWatcher(QObject):
    """Tells the window to lock when the OS locks the screen or sleeps."""

    lock_requested = Signal(str)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        system_bus: QDBusConnection | None = None,
        session_bus: QDBusConnection | None = None,
        session_path: str | None = None,
        platform: str = sys.platform,
    ) -> None:
        """Start watching. The buses and logind session path are for tests; by default
        the system and session buses are used and our session is asked of logind."""
        super().__init__(parent)
        self.watching: list[str] = []  # what is being watched, for tests and the log
        self._mac_observer: Any = None
        if platform.startswith("linux"):
            self._watch_linux(system_bus, session_bus, session_path)
        elif platform == "darwin":
            self._watch_macos()
        if self.watching:
            log.info("locking on: %s", ", ".join(self.watching))
        else:
            log.info("no screen-lock or sleep notifications on this system")

    # ----------------------------------------------------------------- Linux

    def _watch_linux(
        self,
        system_bus: QDBusConnection | None,
        session_bus: QDBusConnection | None,
        session_path: str | None,
    ) -> None:
        system = system_bus if system_bus is not None else QDBusConnection.systemBus()
        if system.isConnected():
            self._system = system
            if system.connect(
                LOGIND, _LOGIND_PATH, _MANAGER, "PrepareForSleep", "b", self,
                _slot("_sleeping(bool)"),
            ):  # fmt: skip
                self.watching.append("sleep (logind)")
            if session_path is not None:
                self._watch_session(session_path)
            else:
                self._find_session()
        session = session_bus if session_bus is not None else QDBusConnection.sessionBus()
        if session.isConnected():
            for service, path, interface in _SCREEN_SAVERS:
                if session.connect(
                    service, path, interface, "ActiveChanged", "b", self,
                    _slot("_saver_changed(bool)"),
                ):  # fmt: skip
                    self.watching.append(f"screen saver ({service})")

    def _find_session(self) -> None:
        """Ask logind for our session's object path (asynchronously)."""
        call = QDBusMessage.createMethodCall(LOGIND, _LOGIND_PATH, _MANAGER, "GetSessionByPID")
        call.setArguments([os.getpid()])
        pending = self._system.asyncCall(call)
        self._session_call = QDBusPendingCallWatcher(pending, self)
        self._session_call.finished.connect(self._session_found)

    def _session_found(self, watcher: QDBusPendingCallWatcher) -> None:
        reply = watcher.reply()
        watcher.deleteLater()
        if reply.type() != QDBusMessage.MessageType.ReplyMessage or not reply.arguments():
            log.info("logind knows no session for this process: %s", reply.errorMessage())
            return
        path = reply.arguments()[0]
        self._watch_session(path.path() if hasattr(path, "path") else str(path))

    def _watch_session(self, path: str) -> None:
        if self._system.connect(
            LOGIND, path, _SESSION, "Lock", "", self, _slot("_session_locked()")
        ):
            self.watching.append("screen lock (logind)")

    @Slot(bool)
    def _sleeping(self, starting: bool) -> None:
        if starting:
            self.lock_requested.emit("sleep")

    @Slot()
    def _session_locked(self) -> None:
        self.lock_requested.emit("screen lock")

    @Slot(bool)
    def _saver_changed(self, active: bool) -> None:
        if active:
            self.lock_requested.emit("screen saver")

    # ----------------------------------------------------------------- macOS

    def _watch_macos(self) -> None:
        """Observe ``com.apple.screenIsLocked`` through CoreFoundation (ctypes)."""
        try:
            cf = ctypes.CDLL("/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation")
        except OSError as error:
            log.info("CoreFoundation not found (%s): no screen-lock notifications", error)
            return
        callback_type = ctypes.CFUNCTYPE(
            None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_void_p,
        )  # fmt: skip

        def notified(*_args: Any) -> None:
            self.lock_requested.emit("screen lock")

        self._mac_observer = callback_type(notified)  # kept alive as long as we are
        cf.CFNotificationCenterGetDistributedCenter.restype = ctypes.c_void_p
        cf.CFStringCreateWithCString.restype = ctypes.c_void_p
        cf.CFStringCreateWithCString.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]
        cf.CFNotificationCenterAddObserver.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, callback_type, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_long,
        ]  # fmt: skip
        center = cf.CFNotificationCenterGetDistributedCenter()
        name = cf.CFStringCreateWithCString(None, b"com.apple.screenIsLocked", 0x08000100)
        deliver_immediately = 4  # CFNotificationSuspensionBehaviorDeliverImmediately
        cf.CFNotificationCenterAddObserver(
            center, None, self._mac_observer, name, None, deliver_immediately
        )
        self.watching.append("screen lock (com.apple.screenIsLocked)")

    # ----------------------------------------------------------------- Windows

    def register_windows_session(self, window_handle: int) -> None:
        """Ask Windows to send session changes (lock) to the window ``window_handle``."""
        windll = getattr(ctypes, "windll", None)
        if windll is None:
            return
        if windll.wtsapi32.WTSRegisterSessionNotification(window_handle, _NOTIFY_FOR_THIS_SESSION):
            self.watching.append("screen lock (WTS)")
        self.watching.append("sleep (WM_POWERBROADCAST)")

    def handle_windows_message(self, message: int, wparam: int) -> None:
        """Look at one Windows message the window received (from its native event hook)."""
        if message == WM_WTSSESSION_CHANGE and wparam == WTS_SESSION_LOCK:
            self.lock_requested.emit("screen lock")
        elif message == WM_POWERBROADCAST and wparam == PBT_APMSUSPEND:
            self.lock_requested.emit("sleep")
