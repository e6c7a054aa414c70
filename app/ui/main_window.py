"""The main window: first run → unlock → chats, with menus, shortcuts and locking.

A ``QStackedWidget`` holds the pages; the session says which one applies. Locking
(on demand with Ctrl+L, or after ``ui.auto_lock_minutes`` without input) cancels
running work, clears every decrypted widget (the chat area's ``clear()``), closes
the library (Ephemeral chats vanish, with a warning when asked on demand), drops the
keys and shows the unlock page. Window geometry is remembered with ``QSettings``.

Start-up: ``hushchat`` shows the window on the unlock page before the config, the
session and the services are loaded (``MainWindow(None)``, then :meth:`MainWindow.set_session`
after the first paint), with the theme remembered from the last run. Modules a page needs
only once it is shown are imported then.

Sync: after each unlock the window reads whether the profile is signed in to a sync server
(the sync modules are imported off the UI thread first), follows the sync service's status
in the status bar's indicator (``app.ui.sync_status``; hidden when not signed in; a click
opens Settings, Sync) and starts background sync when the profile holds the account's keys.
Locking stops it (the session cancels sync).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# Qt's namespace (``Qt.*``), ``QEvent`` and ``QMessageBox`` are reached through their
# modules when used: PySide6 sets a class up on first use, ``Qt`` in tens of ms, and the
# first frame needs none of them.
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import QByteArray, QObject, QSettings, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QPaintEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.errors import HushchatError
from app.ui.error_banner import ErrorBanner
from app.ui.keys import READ_ALOUD_SHORTCUT, STOP_READING_KEY
from app.ui.layout import PanelLayout, PanelSpec, centered_page
from app.ui.theme import Scheme, apply_theme, effective_scheme, icon
from app.ui.unlock import UnlockWidget

if TYPE_CHECKING:  # imported when first needed: start-up time
    from PySide6.QtCore import QEvent, Qt

    from app.session import Session
    from app.ui.chat_area import ChatAreaWidget
    from app.ui.first_run import FirstRunWidget
    from app.ui.recovery_reminder import RecoveryReminderBanner
    from app.ui.screen_lock import ScreenLockWatcher
    from app.ui.settings import SettingsDialog
    from app.ui.sync_recovery_notice import RecoveryBanner
    from app.ui.sync_status import SyncState, SyncStatusButton
    from app.ui.update_banner import UpdateBanner
    from app.ui.voice import Speaker

__all__ = ["MainWindow"]

log = logging.getLogger(__name__)

# Appearance remembered from the last run (QSettings keys), so the first frame has the
# user's theme before the config is read and without asking the desktop for its scheme.
_THEME_KEY = "appearance/theme"
_FONT_SIZE_KEY = "appearance/font_size"
_SCHEME_KEY = "appearance/scheme"

# Side panels of the chat area: (name, breakpoint, preferred width, minimum width) in px.
# Below its breakpoint a panel collapses by itself (app.ui.layout.PanelLayout).
SIDEBAR_PANEL = ("sidebar", 640, 260, 200)
CHAT_SETTINGS_PANEL = ("chat_settings", 1100, 300, 240)
# After an unlock, long-lived objects are frozen out of the collector (app.gc_policy).
FREEZE_AFTER_UNLOCK_MS = 1000


def _new_speaker(session: Session, parent: QObject) -> Speaker:
    from app.ui.voice import Speaker  # QtTextToSpeech and QtMultimedia: when first read

    return Speaker(session, parent)


#: Makes the window's speaker (a seam: tests give a fake one).
make_speaker: Callable[[Session, QObject], Speaker] = _new_speaker


def key_bindings(key: QKeySequence.StandardKey) -> list[QKeySequence]:
    """The platform's sequences for a standard key (they differ between desktops: Quit is
    Ctrl+Q on X11, GNOME and KDE, nothing on Windows); a seam for tests."""
    return QKeySequence.keyBindings(key)


def _load_sync_layer() -> None:
    """Import the sync service and engine (a third of a second): off the UI thread."""
    import app.sync.service  # and the engine, whose types the indicator uses

    _ = app.sync.service.SyncService


def _load_provider_layer() -> None:
    """Import the providers' HTTP stack (httpx, Jinja; a tenth of a second or more)."""
    import providers

    _ = providers.create_provider  # loads the registry and what it needs (PEP 562)


class _ActivityFilter(QObject):
    """Sees every key press, click and scroll in the app: the user is there.

    Installed with the session, after the first paint: the first event it sees makes
    PySide6 set up every widget type it may be handed (tens of ms).
    """

    def __init__(self, session: Session, parent: QObject) -> None:
        super().__init__(parent)
        self._session = session
        kinds = QtCore.QEvent.Type
        self._activity = frozenset(
            {kinds.KeyPress, kinds.MouseButtonPress, kinds.Wheel, kinds.TouchBegin}
        )

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in self._activity:
            self._session.record_activity()
        return False


class MainWindow(QMainWindow):
    """Hushchat's window."""

    locked = Signal()
    unlocked = Signal()
    #: The window's first frame has been painted (emitted once, after the paint).
    first_painted = Signal()

    def __init__(
        self,
        session: Session | None,
        *,
        settings: QSettings | None = None,
        idle_check_ms: int = 1000,
        parent: QWidget | None = None,
    ) -> None:
        """A window for ``session``; ``None`` shows the unlock page of an existing vault
        at once and waits for :meth:`set_session` (``hushchat``'s start-up)."""
        super().__init__(parent)
        self._session: Session | None = None
        self._painted = False
        self._appearance: tuple[str, int, Scheme] | None = None
        self.settings = settings or QSettings()
        self.setWindowTitle("Hushchat")
        self.setWindowIcon(icon("hushchat"))
        # Narrow enough for half a small screen: the side panels collapse to fit.
        self.setMinimumSize(420, 360)

        self.stack = QStackedWidget()
        # The stack under an optional notice (a recovery another device started).
        central = QWidget()
        self._central_layout = QVBoxLayout(central)
        self._central_layout.setContentsMargins(0, 0, 0, 0)
        self._central_layout.setSpacing(0)
        self._central_layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        #: Failures the user must see (not the status bar: that is for passing news).
        self.error_banner = ErrorBanner()
        self._central_layout.insertWidget(0, self.error_banner)
        self.first_run: FirstRunWidget | None = None
        self.unlock_page = UnlockWidget(None)
        self.unlock_page.unlocked.connect(self._on_unlocked)
        self.stack.addWidget(self.unlock_page)
        # Built once the unlock page is up (while the user types, or while Argon2 runs
        # on a worker thread), so the first page appears sooner.
        self.chat_area: ChatAreaWidget | None = None
        # Built by show_error, the first time there is one.
        self.error_label: QLabel | None = None
        self.error_page: QWidget | None = None
        # Built with the chat area: shows, hides and collapses its side panels.
        self.panels: PanelLayout | None = None
        #: Reads answers aloud: made when first needed, closed on lock (ensure_speaker).
        self.speaker: Speaker | None = None

        self._build_actions()
        self._build_menus()
        self._build_layout_bar()
        self._build_status_bar()
        # Built at the first unlock (it imports the sync engine's types).
        self.sync_button: SyncStatusButton | None = None
        self.recovery_banner: RecoveryBanner | None = None
        #: "Store your recovery code": while storing it is put off (built when needed).
        self.recovery_reminder: RecoveryReminderBanner | None = None
        #: The link to a newer release (``updates.check``), checked once a run.
        self.update_banner: UpdateBanner | None = None
        self._update_checked = False
        self._sync_state: SyncState | None = None
        self._sync_unsubscribe: Callable[[], None] | None = None
        self._sync_generation = 0

        self._activity_filter: _ActivityFilter | None = None
        self._screen_lock: ScreenLockWatcher | None = None
        self.idle_timer = QTimer(self)
        self.idle_timer.setInterval(idle_check_ms)
        self.idle_timer.timeout.connect(self.check_idle)
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._system_scheme_changed)

        self._restore_geometry()
        if session is None:
            self.apply_appearance()  # as remembered from the last run
            self.stack.setCurrentWidget(self.unlock_page)
            self.unlock_page.focus_field()
        else:
            self.set_session(session)

    @property
    def session(self) -> Session:
        """The session this window shows; raises ``RuntimeError`` before it is set."""
        if self._session is None:
            raise RuntimeError("the window has no session yet")
        return self._session

    @property
    def _is_unlocked(self) -> bool:
        return self._session is not None and self._session.is_unlocked

    def set_session(self, session: Session) -> None:
        """Show ``session``: its theme, then the first-run or unlock page; opens the vault."""
        if self._session is not None:
            raise RuntimeError("the window already has a session")
        self._session = session
        self.unlock_page.set_session(session)
        from app.ui.help import install_recent_log

        install_recent_log()  # the last log lines, for Help > Report a problem
        self._activity_filter = _ActivityFilter(session, self)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self._activity_filter)
        self.idle_timer.start()
        self.apply_appearance()
        self._start()

    def paintEvent(self, event: QPaintEvent) -> None:
        """Paint; after the first frame (children included), emit ``first_painted``."""
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            # Tied to the window: nothing fires if it is deleted first.
            QTimer.singleShot(0, self, self.first_painted.emit)

    # ----------------------------------------------------------------- building

    def _action(
        self,
        text: str,
        slot: object,
        shortcuts: list[QKeySequence | QKeySequence.StandardKey | str] | None = None,
        *,
        needs_unlock: bool = True,
        icon_name: str | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if shortcuts:
            sequences: list[QKeySequence] = []
            for shortcut in shortcuts:
                if isinstance(shortcut, QKeySequence.StandardKey):
                    bindings = key_bindings(shortcut)
                else:
                    bindings = [QKeySequence(shortcut)]
                # A sequence twice (StandardKey.Quit is Ctrl+Q on Linux and Windows) makes
                # Qt report an ambiguous shortcut and trigger nothing.
                sequences.extend(b for b in bindings if not b.isEmpty() and b not in sequences)
            action.setShortcuts(sequences)  # in this window (Qt.WindowShortcut, the default)
        if icon_name:
            action.setIcon(icon(icon_name))
        action.triggered.connect(slot)
        self.addAction(action)
        if needs_unlock:
            self._unlocked_actions.append(action)
        return action

    def _build_actions(self) -> None:
        self._unlocked_actions: list[QAction] = []
        area = self._on_area
        self.new_chat_action = self._action(
            "&New chat", area(lambda a: a.new_chat()), ["Ctrl+N"], icon_name="new-chat"
        )
        self.new_ephemeral_action = self._action(
            "New &ephemeral chat", area(lambda a: a.new_chat("ephemeral")), ["Ctrl+Shift+N"]
        )
        self.import_action = self._action(
            "&Import chats…", area(self._import_chats), ["Ctrl+Shift+O"]
        )
        self.search_action = self._action("&Search chats", area(self._search), ["Ctrl+K", "Ctrl+F"])
        self.next_chat_action = self._action(
            "Ne&xt chat", area(lambda a: a.select_next_chat()), ["Ctrl+Tab", "Alt+Down"]
        )
        self.previous_chat_action = self._action(
            "Pre&vious chat",
            area(lambda a: a.select_previous_chat()),
            ["Ctrl+Shift+Tab", "Alt+Up"],
        )
        # Esc is not a shortcut: the composer uses it to cancel an edit. An Esc no focused
        # widget used reaches keyPressEvent below and stops the answer.
        self.stop_action = self._action("S&top answering\tEsc", area(lambda a: a.stop()))
        self.regenerate_action = self._action(
            "&Regenerate answer", area(lambda a: a.regenerate()), ["Ctrl+R"]
        )
        self.read_aloud_action = self._action(
            "Read &aloud", area(lambda a: a.read_aloud()), [READ_ALOUD_SHORTCUT]
        )
        # Esc again (see keyPressEvent): it stops the answer first, if one is arriving.
        self.stop_reading_action = self._action(
            f"Stop rea&ding\t{STOP_READING_KEY}", area(lambda a: a.stop_reading())
        )
        self.focus_composer_action = self._action(
            "&Write a message", area(lambda a: a.focus_composer()), ["Ctrl+Shift+M"]
        )
        self.lock_action = self._action("&Lock", lambda: self.lock(), ["Ctrl+L"], icon_name="lock")
        self.settings_action = self._action(
            "&Settings…",
            lambda: self.open_settings(),
            [QKeySequence.StandardKey.Preferences, "Ctrl+,"],
            icon_name="settings",
        )
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.quit_action = self._action(
            "&Quit", self.close, [QKeySequence.StandardKey.Quit, "Ctrl+Q"], needs_unlock=False
        )
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        self.toggle_sidebar_action = self._action(
            "Show &sidebar",
            self._on_area(lambda _a: self.toggle_panel("sidebar")),
            ["Ctrl+B"],
            icon_name="sidebar",
        )
        self.toggle_chat_settings_action = self._action(
            "Show chat s&ettings",
            self._on_area(lambda _a: self.toggle_panel("chat_settings")),
            ["Ctrl+Shift+B"],
            icon_name="chat-settings-panel",
        )
        for action in (self.toggle_sidebar_action, self.toggle_chat_settings_action):
            action.setCheckable(True)
            action.setChecked(True)
        self.user_guide_action = self._action(
            "&User guide",
            lambda: self.show_user_guide(),
            ["F1"],
            needs_unlock=False,
        )
        self.shortcuts_action = self._action(
            "&Keyboard shortcuts",
            lambda: self.show_shortcuts(),
            ["Ctrl+/"],
            needs_unlock=False,
        )
        self.report_action = self._action(
            "&Report a problem…", lambda: self.report_problem(), needs_unlock=False
        )
        self.about_action = self._action("&About Hushchat", self.show_about, needs_unlock=False)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self._set_unlocked_actions(False)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.new_chat_action, self.new_ephemeral_action])
        file_menu.addSeparator()
        file_menu.addAction(self.import_action)
        file_menu.addSeparator()
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addActions([self.lock_action, self.quit_action])
        chat_menu = bar.addMenu("&Chat")
        chat_menu.addActions(
            [
                self.search_action,
                self.next_chat_action,
                self.previous_chat_action,
                self.focus_composer_action,
            ]
        )
        chat_menu.addSeparator()
        chat_menu.addActions([self.stop_action, self.regenerate_action])
        chat_menu.addSeparator()
        chat_menu.addActions([self.read_aloud_action, self.stop_reading_action])
        view_menu = bar.addMenu("&View")
        view_menu.addActions([self.toggle_sidebar_action, self.toggle_chat_settings_action])
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.user_guide_action, self.shortcuts_action])
        help_menu.addSeparator()
        help_menu.addAction(self.report_action)
        help_menu.addAction(self.about_action)

    def _build_layout_bar(self) -> None:
        """The bar above the chats: the sidebar toggle left, the chat settings one right."""
        bar = QToolBar("Panels", self)
        bar.setObjectName("layoutBar")
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.toggleViewAction().setVisible(False)  # not hidden by a right click
        bar.addAction(self.toggle_sidebar_action)
        spacer = QWidget(bar)
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar.addWidget(spacer)
        bar.addAction(self.toggle_chat_settings_action)
        for action, name, keys in (
            (self.toggle_sidebar_action, "Show or hide the sidebar", "Ctrl+B"),
            (self.toggle_chat_settings_action, "Show or hide the chat settings", "Ctrl+Shift+B"),
        ):
            button = bar.widgetForAction(action)
            button.setAccessibleName(name)
            button.setToolTip(f"{name} ({keys})")
        self.addToolBar(bar)
        self.layout_bar = bar
        bar.hide()  # shown with the chats

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.lock_button = QToolButton()
        self.lock_button.setDefaultAction(self.lock_action)
        self.lock_button.setAutoRaise(True)
        self.lock_button.setAccessibleName("Lock now")
        self.lock_button.setToolTip("Lock now (Ctrl+L)")
        bar.addPermanentWidget(self.lock_button)
        self.lock_button.setVisible(self._is_unlocked)

    def _set_unlocked_actions(self, enabled: bool) -> None:
        for action in self._unlocked_actions:
            action.setEnabled(enabled)
        if hasattr(self, "lock_button"):
            self.lock_button.setVisible(enabled)

    def ensure_chat_area(self) -> ChatAreaWidget:
        """Build the chat area (sidebar, chat view, composer) if not built yet."""
        if self.chat_area is not None:
            return self.chat_area
        from app.ui.chat_area import ChatAreaWidget

        area = ChatAreaWidget(self.session, self)
        area.activity.connect(self.session.record_activity)
        area.status_message.connect(lambda text: self.statusBar().showMessage(text, 5000))
        area.error_message.connect(self.error_banner.show_error)
        area.settings_requested.connect(lambda page: self.open_settings(page))
        area.set_speaker_source(self.ensure_speaker)
        self.stack.addWidget(area)
        self.chat_area = area
        center = area.splitter.widget(area.splitter.indexOf(area.sidebar) + 1)
        specs = [
            PanelSpec(name, widget, breakpoint, preferred, minimum)
            for (name, breakpoint, preferred, minimum), widget in (
                (SIDEBAR_PANEL, area.sidebar),
                (CHAT_SETTINGS_PANEL, area.settings_panel),
            )
        ]
        if center is None:
            raise RuntimeError("the chat area's splitter has no chat column")
        self.panels = PanelLayout(area.splitter, center, specs, self.settings)
        self.panels.visibility_changed.connect(lambda _name, _shown: self._sync_panel_actions())
        self._sync_panel_actions()
        return area

    def ensure_speaker(self) -> Speaker:
        """The window's one speaker, made when reading aloud is first asked for (its
        engines and audio output are set up only then); ``close``d on lock."""
        if self.speaker is None:
            self.speaker = make_speaker(self.session, self)
        return self.speaker

    def _close_speaker(self) -> None:
        speaker, self.speaker = self.speaker, None
        if speaker is None:
            return
        try:
            speaker.close()
        except Exception:  # the lock goes on: a speaker that failed to close is dropped
            log.exception("the speaker did not close")
        speaker.deleteLater()

    # ----------------------------------------------------------------- layout

    def toggle_panel(self, name: str) -> bool:
        """Show or hide the side panel ``name`` (``sidebar``, ``chat_settings``), as the
        user asked; returns whether it is shown now."""
        panels = self.panels
        if panels is None:
            return False
        wanted = not panels.is_shown(name)
        shown = panels.toggle(name)
        self._sync_panel_actions()
        if wanted and not shown:
            what = "the sidebar" if name == "sidebar" else "the chat settings"
            extra = panels.width_needed(name) - panels.available_width()
            self.statusBar().showMessage(
                f"No room for {what} next to the chat: make the window {extra} px wider.",
                5000,
            )
        return shown

    def _search(self, area: ChatAreaWidget) -> None:
        """Focus the search field, showing the sidebar first if it is hidden."""
        if self.panels is not None and not self.panels.is_shown("sidebar"):
            self.panels.set_shown("sidebar", True)
            self._sync_panel_actions()
        area.focus_search()

    def _sync_panel_actions(self) -> None:
        panels = self.panels
        if panels is None:
            return
        for action, name in (
            (self.toggle_sidebar_action, "sidebar"),
            (self.toggle_chat_settings_action, "chat_settings"),
        ):
            action.setChecked(panels.is_shown(name))

    def _on_area(self, act: Callable[[ChatAreaWidget], object]) -> Callable[[], None]:
        """A slot that applies ``act`` to the chat area when it is shown and unlocked."""

        def slot() -> None:
            area = self.chat_area
            if area is not None and self._is_unlocked and self.stack.currentWidget() is area:
                act(area)

        return slot

    def _import_chats(self, area: ChatAreaWidget) -> None:
        """File > Import chats… (Ctrl+Shift+O): an export file into Standard or Private."""
        from app.ui.import_chats import import_chats

        import_chats(area, self.session.service)

    # ----------------------------------------------------------------- pages

    @property
    def current_page(self) -> str:
        """``first_run``, ``unlock``, ``main`` or ``error`` (for tests and scripts)."""
        widget = self.stack.currentWidget()
        if widget is not None and widget is self.chat_area:
            return "main"
        if widget is self.unlock_page:
            return "unlock"
        if self.first_run is not None and widget is self.first_run:
            return "first_run"
        return "error"

    def _start(self) -> None:
        if not self.session.vault_exists:
            from app.ui.first_run import FirstRunWidget

            self.first_run = FirstRunWidget(self.session)
            self.first_run.completed.connect(self._on_first_run_completed)
            self.stack.addWidget(self.first_run)
            self.stack.setCurrentWidget(self.first_run)
            self.first_run.passphrase_fields.passphrase_edit.setFocus()
            return
        from app.ui import tasks  # loads the provider layer's types: after the first paint

        self.stack.setCurrentWidget(self.unlock_page)
        self.unlock_page.focus_field()
        tasks.start(self.session.open_vault(), on_done=self._vault_opened, on_error=self.show_error)

    def _vault_opened(self, _none: None) -> None:
        from app.ui import tasks

        self.unlock_page.refresh()
        self.unlock_page.focus_field()
        self.ensure_chat_area()
        # While the passphrase is typed (or Argon2 runs), so that neither the first answer
        # nor the settings dialog waits for it.
        tasks.start(self.session.runner.blocking(_load_provider_layer))

    def show_error(self, error: BaseException) -> None:
        """A problem the window cannot continue after (profile in use, damaged vault)."""
        if self.error_label is None or self.error_page is None:
            self.error_label = QLabel()
            self.error_label.setWordWrap(True)
            self.error_label.setProperty("role", "error")
            error_box = QWidget()
            error_layout = QVBoxLayout(error_box)
            error_layout.addWidget(self.error_label)
            quit_button = QPushButton("&Quit")
            quit_button.clicked.connect(self.close)
            error_layout.addWidget(quit_button, 0, QtCore.Qt.AlignmentFlag.AlignRight)
            self.error_page = centered_page(error_box)
            self.stack.addWidget(self.error_page)
        self.error_label.setText(str(error) if isinstance(error, HushchatError) else repr(error))
        self.stack.setCurrentWidget(self.error_page)

    def _on_first_run_completed(self) -> None:
        first_run = self.first_run
        self.first_run = None
        self._on_unlocked()
        if first_run is not None:
            self.stack.removeWidget(first_run)
            first_run.deleteLater()

    def _on_unlocked(self) -> None:
        from app.ui import tasks

        area = self.ensure_chat_area()
        self.session.record_activity()
        area.load()
        from app import gc_policy

        # Later full collections skip the app's own objects; after the chats are shown
        # (it starts with a full collection, tens of milliseconds).
        QTimer.singleShot(FREEZE_AFTER_UNLOCK_MS, self, gc_policy.freeze_long_lived)
        self.stack.setCurrentWidget(area)
        self.layout_bar.show()
        self._set_unlocked_actions(True)
        area.focus_composer()
        log.info("unlocked: the chats page")
        self.statusBar().showMessage("Unlocked.", 3000)
        # `hushchat` commands use this window's keys while it is unlocked.
        tasks.start(self.session.serve_agent(on_locked=self._agent_locked))
        self._watch_screen_lock()
        self.start_sync()
        self._remind_of_the_recovery_code()
        self._check_for_updates()
        self.unlocked.emit()

    def _remind_of_the_recovery_code(self) -> None:
        """After an unlock: the reminder, if storing the recovery code was put off.

        The banner is built only when there is something to remind of: its module imports
        the first-run page and the sync forms (a second and more), which the unlock must
        not wait for."""
        if self.recovery_reminder is not None:
            self.recovery_reminder.check(self.session)
            return
        from app.ui import tasks

        session = self.session

        def done(unconfirmed: bool) -> None:
            if not unconfirmed or not self._is_unlocked or self.recovery_reminder is not None:
                return
            from app.ui.recovery_reminder import RecoveryReminderBanner

            self.recovery_reminder = RecoveryReminderBanner()
            self._central_layout.insertWidget(0, self.recovery_reminder)
            self.recovery_reminder.check(session)

        tasks.start_for(
            self,
            session.recovery_code_unconfirmed(),
            on_done=done,
            on_error=lambda error: log.info(
                "recovery-code reminder not checked: %s", type(error).__name__
            ),
        )

    def _check_for_updates(self) -> None:
        """After the first unlock of a run, when ``updates.check`` is on: a link to a newer
        release, if there is one (app/updates.py). A failed check is logged, not shown."""
        settings = self.session.config.config.updates
        if not settings.check or self._update_checked:
            return
        self._update_checked = True
        from app import updates
        from app.ui import tasks

        def done(release: updates.Release | None) -> None:
            log.info("update check: %s", f"{release.version} available" if release else "current")
            if release is None:
                return
            from app.ui.update_banner import UpdateBanner

            self.update_banner = UpdateBanner(release)
            self._central_layout.insertWidget(0, self.update_banner)

        def failed(error: BaseException) -> None:
            # An UpdateCheckError says what happened; a bug was logged with its traceback.
            log.info("update check failed: %s", error)

        tasks.start_for(self, updates.newer_release(settings.url), on_done=done, on_error=failed)

    # ----------------------------------------------------------------- sync

    def start_sync(self) -> None:
        """After an unlock: follow the sync status and, when the profile is signed in and
        holds the account's keys, sync in the background (stopped by the next lock)."""
        self.refresh_sync(start=True)

    def refresh_sync(self, *, start: bool = False, account_changed: bool = False) -> None:
        """Read the profile's sync state again (Settings, Sync changed it): the status
        bar's indicator and the chats' "not synced" marks follow. ``start`` also starts
        background sync when it can; ``account_changed`` forgets the old account's status."""
        from app.ui import tasks

        self._sync_generation += 1
        generation = self._sync_generation
        session = self.session

        async def read() -> tuple[bool, bool, bool, int, str | None]:
            await session.runner.blocking(_load_sync_layer)
            sync = session.sync
            if self._sync_unsubscribe is None:
                self._sync_unsubscribe = sync.add_status_listener(self._sync_status_changed)
            account = await sync.account()
            set_up = account is not None and await sync.is_set_up()
            if start and set_up:
                await sync.start()
            waiting = 0
            if set_up and not sync.running:  # paused: say what waits
                waiting, _deferred = await (await sync.engine()).backlog()
            device_id = account.device_id if account is not None else None
            return account is not None, set_up, sync.running, waiting, device_id

        def done(state: tuple[bool, bool, bool, int, str | None]) -> None:
            if generation != self._sync_generation or not self._is_unlocked:
                return
            from app.ui.sync_status import SyncState

            signed_in, set_up, running, waiting, device_id = state
            status = None
            if self._sync_state is not None and not account_changed:
                status = self._sync_state.status
            self._show_sync(SyncState(signed_in, set_up, running, status, waiting, device_id))

        def failed(error: BaseException) -> None:
            # Ephemeral-only, or locked meanwhile: nothing to show. A bug was logged.
            log.info("sync state not read: %s", type(error).__name__)

        tasks.start(read(), on_done=done, on_error=failed)

    def _sync_status_changed(self, status: object) -> None:
        """The sync service reported a new status (on the loop, i.e. the UI thread)."""
        from app.sync.engine import EngineStatus, SyncStatus
        from app.ui.sync_status import SyncState

        if not isinstance(status, EngineStatus) or not self._is_unlocked:
            return
        current = self._sync_state or SyncState()
        sync = self.session.sync
        self._show_sync(
            SyncState(
                current.signed_in,
                current.set_up,
                sync.running,
                status,
                device_id=current.device_id,
            )
        )
        if status.state in (SyncStatus.OFFLINE, SyncStatus.ERROR):
            self._read_backlog()

    def _read_backlog(self) -> None:
        """Sync is not keeping up: say how many local changes wait to be sent."""
        from dataclasses import replace

        from app.ui import tasks

        generation = self._sync_generation
        sync = self.session.sync

        async def read() -> int:
            waiting, _deferred = await (await sync.engine()).backlog()
            return waiting

        def done(waiting: int) -> None:
            state = self._sync_state
            if generation == self._sync_generation and self._is_unlocked and state is not None:
                self._show_sync(replace(state, waiting=waiting))

        tasks.start(
            read(),
            on_done=done,
            on_error=lambda error: log.info("sync backlog not read: %s", type(error).__name__),
        )

    def _show_sync(self, state: SyncState) -> None:
        from app.ui.sync_status import SyncStatusButton

        self._sync_state = state
        if self.sync_button is None:
            self.sync_button = SyncStatusButton()
            self.sync_button.clicked.connect(lambda: self.open_settings("sync"))
            self.statusBar().insertPermanentWidget(0, self.sync_button)
        self.sync_button.show_state(state)
        if self.chat_area is not None:
            self.chat_area.set_sync_signed_in(state.signed_in)
        self._show_recoveries(state)

    def _show_recoveries(self, state: SyncState) -> None:
        """The banner above the chats while another device recovers the account's
        Standard chats (``app.ui.sync_recovery_notice``)."""
        recoveries = state.recoveries
        if self.recovery_banner is None:
            if not recoveries:
                return
            from app.ui.sync_recovery_notice import RecoveryBanner

            self.recovery_banner = RecoveryBanner()
            self.recovery_banner.details_requested.connect(lambda: self.open_settings("sync"))
            self._central_layout.insertWidget(0, self.recovery_banner)
        self.recovery_banner.show_recoveries(self.session, recoveries)

    def _sync_after_reopen(self) -> None:
        """The chats were closed and reopened (their sync service with them): follow the
        new one, and sync in the background again when set up."""
        self._forget_sync()
        self.start_sync()

    def _forget_sync(self) -> None:
        """On lock: the sync service goes with the library; so does what it showed."""
        self._sync_generation += 1
        unsubscribe, self._sync_unsubscribe = self._sync_unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        self._sync_state = None
        if self.sync_button is not None:
            self.sync_button.hide()
        if self.recovery_banner is not None:
            self.recovery_banner.reset()
        if self.recovery_reminder is not None:
            self.recovery_reminder.reset()

    def _watch_screen_lock(self) -> None:
        """Lock when the OS locks the screen or sleeps (set up at the first unlock)."""
        if self._screen_lock is not None:
            return
        from app.ui.screen_lock import ScreenLockWatcher

        self._screen_lock = ScreenLockWatcher(self)
        self._screen_lock.lock_requested.connect(self._os_locked)
        if sys.platform == "win32":
            self._screen_lock.register_windows_session(int(self.winId()))

    def _os_locked(self, reason: str) -> None:
        if self._is_unlocked:
            log.info("locking: %s", reason)
            self._lock_now()

    if sys.platform == "win32":  # only there: a Python hook costs on every native event

        def nativeEvent(self, event_type: Any, message: Any) -> Any:
            """Windows: session lock and suspend messages reach the screen-lock watcher."""
            watcher = self._screen_lock
            if (
                watcher is not None
                and sys.platform == "win32"
                and bytes(event_type) == b"windows_generic_MSG"
            ):
                from ctypes import wintypes

                msg = wintypes.MSG.from_address(int(message))
                watcher.handle_windows_message(int(msg.message), int(msg.wParam))
            return super().nativeEvent(event_type, message)

    def _agent_locked(self, reason: str) -> None:
        """The key server locked itself (suspend, `hushchat lock`): lock the window too."""
        log.info("locking: the command-line key server locked (%s)", reason)
        if self._is_unlocked:
            self._lock_now()

    # ----------------------------------------------------------------- locking

    def check_idle(self) -> None:
        """Lock when the user has been away for the auto-lock time (timer-driven); also
        on the first-run pages once the vault exists (the recovery code is on screen)."""
        if not self._is_unlocked or self.current_page not in ("main", "first_run"):
            return
        left = self.session.seconds_until_idle_lock()
        if left is not None and left <= 0:
            log.info("locking after the idle timeout")
            self.lock(confirm=False)

    def lock(self, *, confirm: bool = True) -> bool:
        """Lock now; asks first when Ephemeral chats would vanish. Returns whether locked."""
        if not self._is_unlocked:
            return False
        if confirm and not self._ephemeral_may_vanish("Lock"):
            return False
        self._lock_now()
        return True

    def _lock_now(self) -> None:
        from app.ui import tasks

        tasks.cancel_all()
        if self.chat_area is not None:
            self.chat_area.clear()
        self._close_speaker()  # nothing of a chat is heard after the lock
        for box in self.findChildren(QtWidgets.QMessageBox, "importSummary"):
            box.close()  # it names the imported file
        first_run, self.first_run = self.first_run, None
        if first_run is not None:  # locked on the recovery-code page: the code goes too
            first_run.forget()
            self.stack.removeWidget(first_run)
            first_run.deleteLater()
        self._forget_sync()
        self.session.lock()
        self._set_unlocked_actions(False)
        self.layout_bar.hide()
        self.unlock_page.reset()
        self.stack.setCurrentWidget(self.unlock_page)
        self.unlock_page.focus_field()
        self.statusBar().clearMessage()
        self.error_banner.dismiss()
        self.locked.emit()

    def _ephemeral_may_vanish(self, verb: str) -> bool:
        area = self.chat_area
        if not self._is_unlocked or area is None or not area.has_ephemeral_chats():
            return True
        buttons = QtWidgets.QMessageBox.StandardButton
        answer = QtWidgets.QMessageBox.warning(
            self,
            f"{verb} Hushchat",
            f"Your Ephemeral chats exist only in memory and will vanish for good. {verb} anyway?",
            buttons.Cancel | buttons.Ok,
            buttons.Cancel,
        )
        return answer == buttons.Ok

    # ----------------------------------------------------------------- settings

    def open_settings(self, page: str | None = None) -> SettingsDialog | None:
        """Show the settings dialog, on ``page`` (``"sync"``) if given (returned for
        tests)."""
        if not self._is_unlocked:
            return None
        from app.ui.settings import SettingsDialog

        dialog = SettingsDialog(self.session, self, speaker_source=self.ensure_speaker)
        dialog.appearance_changed.connect(self.apply_appearance)
        dialog.sync_page.account_changed.connect(lambda: self.refresh_sync(account_changed=True))
        dialog.sync_page.state_changed.connect(lambda: self.refresh_sync())
        dialog.chats_reopened.connect(self._sync_after_reopen)
        if self.chat_area is not None:
            dialog.attachment_settings_changed.connect(self.chat_area.recheck_attachments)
        if page is not None:
            dialog.show_page(page)
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def apply_appearance(self) -> None:
        """Apply the theme and font size of the current config, and remember them.

        Without a session yet, apply the ones remembered from the last run (nothing on the
        very first run). Applies nothing when nothing changed: setting the same style sheet
        again re-polishes every widget.
        """
        app = QApplication.instance()
        if not isinstance(app, QApplication):
            return
        appearance: tuple[str, int, Scheme]
        if self._session is not None:
            ui = self._session.config.config.ui
            appearance = (ui.theme, ui.font_size, effective_scheme(ui.theme))
        else:
            remembered = self._remembered_appearance()
            if remembered is None:
                return
            appearance = remembered
        if appearance == self._appearance:
            return
        apply_theme(app, *appearance)
        self._appearance = appearance
        if self._session is not None and self._remembered_appearance() != appearance:
            theme, font_size, scheme = appearance
            self.settings.setValue(_THEME_KEY, theme)
            self.settings.setValue(_FONT_SIZE_KEY, font_size)
            self.settings.setValue(_SCHEME_KEY, scheme)

    def _remembered_appearance(self) -> tuple[str, int, Scheme] | None:
        theme = self.settings.value(_THEME_KEY)
        size = str(self.settings.value(_FONT_SIZE_KEY))
        scheme = self.settings.value(_SCHEME_KEY)
        if not isinstance(theme, str) or not size.isdigit():
            return None
        return (theme, int(size), "dark" if scheme == "dark" else "light")

    def _system_scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        self.apply_appearance()  # re-applies if the theme follows the desktop

    # ----------------------------------------------------------------- help

    def all_actions(self) -> list[QAction]:
        """The window's actions in menu order (the shortcuts overlay lists these)."""
        actions: list[QAction] = []
        for menu_action in self.menuBar().actions():
            menu = menu_action.menu()
            if isinstance(menu, QtWidgets.QMenu):
                actions.extend(a for a in menu.actions() if not a.isSeparator())
        actions.extend(a for a in self.actions() if a not in actions)
        return actions

    def show_shortcuts(self) -> QtWidgets.QDialog:
        """The keyboard shortcuts overlay (Ctrl+/), listing every action's keys."""
        from app.ui.help import ShortcutsDialog

        dialog = ShortcutsDialog(self.all_actions(), self)
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def show_user_guide(self) -> QtWidgets.QDialog | None:
        """The user guide (F1); a clear message where it looked when it is missing."""
        from app.ui.help import UserGuideDialog, user_guide_candidates, user_guide_path

        path = user_guide_path()
        if path is None:
            places = "\n".join(f"  {p}" for p in user_guide_candidates())
            QtWidgets.QMessageBox.information(
                self,
                "User guide not found",
                "The user guide is not installed with this copy of Hushchat. It was "
                f"looked for in:\n{places}\n\nRead docs/user-guide.md in Hushchat's "
                "source, or set HUSHCHAT_DOCS_DIR to a folder that holds it.",
            )
            return None
        dialog = UserGuideDialog(path, self)
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def report_problem(self) -> str:
        """Copy versions, platform and the last log lines (no message content, secrets
        removed) to the clipboard, and say so; returns the copied text."""
        from app.ui.help import problem_report

        text = problem_report()
        QGuiApplication.clipboard().setText(text)
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Information)
        box.setWindowTitle("Report a problem")
        box.setText(
            "A description for a problem report is on the clipboard: Hushchat's version, "
            "your platform and the last log lines. It holds no message text, keys or "
            "passphrases. Paste it into your report and say what you did and what happened."
        )
        box.setDetailedText(text)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return text

    def show_about(self) -> None:
        """The About box."""
        from app import __version__

        QtWidgets.QMessageBox.about(
            self,
            "About Hushchat",
            f"<b>Hushchat {__version__}</b><p>Private, local-first chat with the LLMs you "
            "choose. Your chats are encrypted on this computer.</p>",
        )

    # ----------------------------------------------------------------- window state

    def _restore_geometry(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray | bytes) and self.restoreGeometry(geometry):
            pass
        else:
            self.resize(1100, 720)
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray | bytes):
            self.restoreState(state)
        self.layout_bar.setVisible(self.current_page == "main")  # restoreState shows it

    def save_geometry(self) -> None:
        """Remember the window's size, position and state."""
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Esc that no focused widget used: stop the answer; none arriving, stop reading
        aloud."""
        qt = QtCore.Qt
        if event.key() == qt.Key.Key_Escape and event.modifiers() == qt.KeyboardModifier.NoModifier:
            self._on_area(_escape)()
            event.accept()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Warn about Ephemeral chats, remember the geometry, lock."""
        if not self._ephemeral_may_vanish("Quit"):
            event.ignore()
            return
        self.save_geometry()
        self.idle_timer.stop()
        app = QApplication.instance()
        if app is not None and self._activity_filter is not None:
            app.removeEventFilter(self._activity_filter)
        if self._is_unlocked:
            self._lock_now()
        event.accept()


def _escape(area: ChatAreaWidget) -> None:
    """Esc in the chats: the answer arriving stops (and reading it aloud with it); with
    none arriving, reading aloud stops."""
    if area.chat_view.is_streaming() or not area.stop_reading():
        area.stop()
