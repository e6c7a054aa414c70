"""Starting the window: QApplication, the qasync event loop, the session, the window.

``hushchat`` with no subcommand calls :func:`run_gui`. The qasync loop runs the
services' coroutines on the Qt event loop; blocking work goes through the session's
``BlockingRunner``. ``HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS`` (tests, packaging checks)
closes the window that many milliseconds after it was first shown and exits 0.

Start-up order (DESIGN §8: the unlock page within 1.5x a bare PySide6 + qasync window):
with an existing vault, the window is painted on its unlock page first; the config, the
session and everything behind them (pydantic, ruamel.yaml, the vault's cryptography,
the chat service) load right after that first frame, while the user types. A first run
loads them before, as its page needs them. The ``--debug`` line "window shown on the
unlock page" marks the first frame: start-up is timed by it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, Final

from app.errors import ExitCode, HushchatError

if TYPE_CHECKING:
    from app.session import Session

__all__ = ["SMOKE_EXIT_ENV", "create_application", "run_gui"]

log = logging.getLogger(__name__)

SMOKE_EXIT_ENV: Final = "HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS"
# Start anyway when no first paint was reported by then (a platform that paints nothing).
_SHOWN_FALLBACK_MS: Final = 2000


def create_application(argv: list[str] | None = None) -> object:
    """The QApplication (created once), with names and icon.

    High DPI: Qt 6 scales by the screen's device pixel ratio and keeps fractional ratios
    (1.25, 1.5; its default rounding policy is PassThrough), so text and SVG icons are
    crisp on every screen. Nothing here touches Qt's namespace (``Qt.*``): PySide6 sets it
    up on first use, which takes tens of ms, and the first frame does not need it.
    """
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    if existing is not None:
        return existing
    QCoreApplication.setOrganizationName("Hushchat")
    QCoreApplication.setApplicationName("Hushchat")
    app = QApplication(argv if argv is not None else sys.argv[:1])
    QGuiApplication.setApplicationDisplayName("Hushchat")
    QGuiApplication.setDesktopFileName("hushchat")
    from app.ui.theme import icon

    app.setWindowIcon(icon("hushchat"))
    return app


async def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """Let cancelled tasks finish, then close async generators (as ``asyncio.run`` does)."""
    for _ in range(3):
        await asyncio.sleep(0)
    await loop.shutdown_asyncgens()


def run_gui(args: argparse.Namespace) -> int:
    """Open the window and run until it closes; return the exit code.

    A config that does not load is shown in a message box and raised as ``ConfigError``
    (the command line prints it as one line and exits with its code).
    """
    import qasync
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

    from app.ui.main_window import MainWindow
    from app.vault.profile import holds_vault, resolve_profile_dir

    app = create_application()
    assert isinstance(app, QApplication)
    profile_dir = resolve_profile_dir(getattr(args, "profile", None))

    def open_session(parent: QWidget | None) -> Session:
        from app import runtime
        from app.session import Session

        try:
            config = runtime.load(args)
        except HushchatError as error:
            if app.platformName() not in ("offscreen", "minimal"):
                QMessageBox.critical(parent, "Hushchat cannot start", str(error))
            raise  # the command line prints it as one line and exits with its code
        return Session(config, profile_dir)

    session: Session | None = None
    failures: list[HushchatError] = []
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    if holds_vault(profile_dir):
        window = MainWindow(None)  # the unlock page now, the session after the first frame
    else:
        session = open_session(None)
        window = MainWindow(session)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    app.lastWindowClosed.connect(closed.set)

    is_shown = False

    def shown() -> None:
        nonlocal session, is_shown
        if is_shown:
            return
        is_shown = True
        fallback.stop()
        log.info("window shown on the %s page", window.current_page)
        smoke_ms = os.environ.get(SMOKE_EXIT_ENV)
        if smoke_ms:
            QTimer.singleShot(max(0, int(smoke_ms)), window.close)
        if session is None:
            try:
                session = open_session(window)
            except HushchatError as error:
                failures.append(error)
                window.close()
                return
            window.set_session(session)

    window.first_painted.connect(shown)
    # A platform that paints nothing ("minimal") or a window never exposed still starts.
    fallback = QTimer(singleShot=True, interval=_SHOWN_FALLBACK_MS)
    fallback.timeout.connect(shown)
    fallback.start()
    window.show()
    try:
        with loop:
            # qasync's loop installs no async-generator hooks; without them a provider's
            # stream abandoned mid-answer would be finalized outside the loop.
            hooks = sys.get_asyncgen_hooks()
            sys.set_asyncgen_hooks(
                firstiter=loop._asyncgen_firstiter_hook, finalizer=loop._asyncgen_finalizer_hook
            )
            try:
                loop.run_until_complete(closed.wait())
                from app.ui import tasks

                tasks.cancel_all()
                loop.run_until_complete(_settle(loop))
            finally:
                sys.set_asyncgen_hooks(*hooks)
    finally:
        if session is not None:
            session.close()
    log.debug("window closed")
    if failures:
        raise failures[0]
    return ExitCode.OK
