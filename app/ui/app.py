"""Starting the window: QApplication, the qasync event loop, the session, the window.

``hushchat`` with no subcommand calls :func:`run_gui`. The qasync loop runs the
services' coroutines on the Qt event loop; blocking work goes through the session's
``BlockingRunner``. ``HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS`` (tests, packaging checks)
closes the window that many milliseconds after it was first shown and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Final

from app.errors import ExitCode, HushchatError

__all__ = ["SMOKE_EXIT_ENV", "create_application", "run_gui"]

log = logging.getLogger(__name__)

SMOKE_EXIT_ENV: Final = "HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS"


def create_application(argv: list[str] | None = None) -> object:
    """The QApplication (created once), with names, icon and high-DPI settings."""
    from PySide6.QtCore import QCoreApplication, Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    if existing is not None:
        return existing
    # Qt 6 scales by the screen's device pixel ratio; keep fractional ratios (1.25, 1.5)
    # instead of rounding them, so text and SVG icons are crisp on every screen.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
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
    """Open the window and run until it closes; return the exit code."""
    import qasync
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from app import runtime
    from app.session import Session
    from app.ui import tasks
    from app.ui.main_window import MainWindow
    from app.vault.profile import resolve_profile_dir

    app = create_application()
    assert isinstance(app, QApplication)
    try:
        config = runtime.load(args)
    except HushchatError as error:
        if app.platformName() not in ("offscreen", "minimal"):
            QMessageBox.critical(None, "Hushchat cannot start", str(error))
        raise  # the command line prints it as one line and exits with its code
    session = Session(config, resolve_profile_dir(getattr(args, "profile", None)))
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(session)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    app.lastWindowClosed.connect(closed.set)

    def shown() -> None:
        log.info("window shown on the %s page", window.current_page)
        smoke_ms = os.environ.get(SMOKE_EXIT_ENV)
        if smoke_ms:
            QTimer.singleShot(max(0, int(smoke_ms)), window.close)

    window.show()
    QTimer.singleShot(0, shown)  # runs once the loop has painted the window
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
                tasks.cancel_all()
                loop.run_until_complete(_settle(loop))
            finally:
                sys.set_asyncgen_hooks(*hooks)
    finally:
        session.close()
    log.debug("window closed")
    return ExitCode.OK
