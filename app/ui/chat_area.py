"""The chat area of the main window: sidebar, chat view, composer, settings panel.

``ChatAreaWidget`` wires the four parts together and is the one object the
window shell talks to (see the methods below). It subscribes to the chat
service's change notifications while unlocked and hands each ``ChatChanged`` to
the parts that show that chat; ``clear`` drops every piece of decrypted content
from models and widgets when the vault locks.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox, QSplitter, QVBoxLayout, QWidget

from app import gc_policy
from app.chat.attachments import AttachmentSettings, NewAttachment
from app.chat.context import ContextUse
from app.chat.events import ChatChanged
from app.chat.service import sending_blocked_reason
from app.config import Config
from app.errors import HushchatError
from app.session import Session
from app.store.models import Chat, Tier
from app.ui import chat_view as chat_view_module
from app.ui import tasks
from app.ui.attachments import AttachmentViewerDialog, read_new
from app.ui.chat_settings import ChatSettingsPanel
from app.ui.chat_view import ChatViewWidget
from app.ui.composer import ComposerWidget
from app.ui.sidebar import SidebarWidget

if TYPE_CHECKING:
    from app.ui.voice import Speaker

__all__ = ["ChatAreaWidget"]

log = logging.getLogger(__name__)

#: How long after a chat opens its context meter is measured, in milliseconds.
METER_DELAY_MS = 200


class ChatAreaWidget(QWidget):
    """Everything about chats in the main window."""

    activity = Signal()  # the user did something (the shell restarts the idle-lock timer)
    status_message = Signal(str)
    #: A failure to show where the user looks (the window's error banner).
    error_message = Signal(str)
    #: The fix a refusal offers is a page of Settings: its ``show_page`` name ("voice").
    settings_requested = Signal(str)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session = session
        self._unsubscribe: Callable[[], None] | None = None
        self._generation = 0  # bumped by clear(): late results of older work are dropped
        self.setObjectName("chatArea")

        self.sidebar = SidebarWidget(session, self)
        self.chat_view = ChatViewWidget(session, self)
        self.composer = ComposerWidget(self, send_key=self._ui_setting("send_key", "enter"))
        self._apply_code_blocks()
        self.settings_panel = ChatSettingsPanel(session, self)
        # Long model names must not widen the panel at the chat's expense.
        self.settings_panel.setMaximumWidth(380)

        center = QWidget(self)
        center_layout = QVBoxLayout(center)
        center_layout.setContentsMargins(0, 0, 0, 0)
        center_layout.setSpacing(0)
        center_layout.addWidget(self.chat_view, 1)
        center_layout.addWidget(self.composer)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setObjectName("chatSplitter")
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(center)
        self.splitter.addWidget(self.settings_panel)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setCollapsible(1, False)
        self.splitter.setSizes([260, 640, 280])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        self.sidebar.chat_selected.connect(self.open_chat)
        self.sidebar.new_chat_requested.connect(self.new_chat)
        self.sidebar.hit_opened.connect(self.open_hit)
        self.composer.submitted.connect(self._send)
        self.composer.submitted_with_attachments.connect(self._send)
        self.composer.attachments_changed.connect(self._check_attachments)
        self.composer.chips.open_requested.connect(self.open_waiting_file)
        self.composer.chips.save_requested.connect(self.save_waiting_file)
        self.chat_view.attachments_refused.connect(self.composer.give_back_attachments)
        self.chat_view.files_dropped.connect(self.composer.add_files)
        self.composer.edit_submitted.connect(self._edit)
        self.composer.stop_requested.connect(self.stop)
        self.chat_view.chat_loaded.connect(self._chat_loaded)
        self.chat_view.hit_shown.connect(self._hit_shown)
        self.chat_view.turn_started.connect(self.settings_panel.show_turn)
        self.chat_view.streaming_changed.connect(self.composer.set_streaming)
        self.chat_view.edit_requested.connect(self.composer.start_edit)
        self.chat_view.send_refused.connect(self._send_refused)
        self.chat_view.fix_requested.connect(self._fix)
        self.chat_view.streaming_changed.connect(self._streaming_changed)
        self.composer.choose_model_requested.connect(self.choose_model)
        for part in (self.sidebar, self.chat_view, self.composer, self.settings_panel):
            part.activity.connect(self.activity)
        for part in (self.sidebar, self.chat_view, self.settings_panel):
            part.status_message.connect(self.status_message)
        for part in (self.sidebar, self.chat_view, self.settings_panel):
            part.error_message.connect(self.error_message)
        self._meter_timer = QTimer(self)
        self._meter_timer.setSingleShot(True)
        self._meter_timer.setInterval(METER_DELAY_MS)
        self._meter_timer.timeout.connect(self._measure_context)
        self._update_composer(None)

    # the shell's interface ---------------------------------------------------------------

    def load(self) -> None:
        """Fill the sidebar and follow the service's changes (after unlock)."""
        if self._unsubscribe is None:
            self._unsubscribe = self._session.service.changes.subscribe(self._on_change)
        self.composer.set_send_key(self._ui_setting("send_key", "enter"))
        self._apply_code_blocks()
        self.sidebar.load()
        self._update_composer(None)

    def clear(self) -> None:
        """Stop every answer and drop all decrypted content from models and widgets."""
        self._generation += 1
        self._meter_timer.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.chat_view.clear()
        self.sidebar.clear()
        self.composer.clear()
        self.settings_panel.clear()
        self._update_composer(None)

    def new_chat(self, tier: str = "standard") -> None:
        """Create a chat ("New Chat" until it names itself) and open it."""
        self.activity.emit()
        chosen = Tier(tier)
        if self._config.llms and self._session.service.default_provider(chosen) is None:
            self.error_message.emit(
                f"No configured model is allowed in {chosen.value.title()} chats; "
                "add an on-prem provider in Settings."
            )
            return

        generation = self._generation

        def created(chat: Chat) -> None:
            if generation == self._generation:
                self.open_chat(chat.id)
                self.focus_composer()

        tasks.start(
            self._session.service.create_chat(chosen),
            on_done=created,
            on_error=lambda error: self.error_message.emit(str(error)),
        )

    def open_chat(self, chat_id: str, around: str | None = None) -> None:
        """Show ``chat_id`` in the view and select it in the sidebar; with ``around`` (a
        search hit), the part of its thread around that message."""
        self.composer.cancel_edit()
        self.sidebar.select_chat(chat_id)
        self.chat_view.open_chat(chat_id, around=around)
        # The composer follows the chat now, not once its page is read: another chat's
        # answer must not leave it on "Stop" (a send there was ignored until then).
        self.composer.set_streaming(self.chat_view.is_streaming())

    def open_hit(self, chat_id: str, message_id: str) -> None:
        """Open a search hit: its chat, scrolled to the matched message, which becomes the
        current row ("" when the title matched: the chat's newest messages).

        A hit not loaded is shown in a window of the thread around it (one read, however
        far back it is); scrolling up or down from there loads further pages."""
        view = self.chat_view
        if not message_id:
            self.open_chat(chat_id)
            return
        if view.chat_id == chat_id == view.model.chat_id and view.scroll_to_message(message_id):
            self.sidebar.select_chat(chat_id)
            view.list.setFocus(Qt.FocusReason.OtherFocusReason)  # the focus ring marks it
            return
        self.open_chat(chat_id, around=message_id)

    def focus_search(self) -> None:
        self.sidebar.focus_search()

    def select_next_chat(self) -> None:
        self.sidebar.select_offset(1)

    def select_previous_chat(self) -> None:
        self.sidebar.select_offset(-1)

    def stop(self) -> None:
        """Stop the open chat's answer (what arrived is kept)."""
        self.chat_view.stop()

    def set_speaker_source(self, source: Callable[[], Speaker] | None) -> None:
        """Read answers aloud with the window's speaker, which ``source()`` gives."""
        self.chat_view.set_speaker_source(source)

    def read_aloud(self) -> None:
        """Read the selected or focused answer aloud, else the open chat's last one."""
        self.chat_view.read_aloud()

    def stop_reading(self) -> bool:
        """Stop reading aloud; whether something was being read."""
        return self.chat_view.stop_reading()

    def regenerate(self) -> None:
        """Answer the open chat's last question again, as a new version."""
        self.activity.emit()
        if not self.chat_view.regenerate():
            self.status_message.emit("Nothing to regenerate here.")

    def focus_composer(self) -> None:
        self.composer.editor.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def choose_model(self) -> None:
        """Open the chat's model picker (the fix a refused or too long message offers)."""
        panel = self.settings_panel
        if not panel.isVisible():
            panel.show()
        panel.providers.setFocus(Qt.FocusReason.OtherFocusReason)
        panel.providers.showPopup()

    def set_sync_signed_in(self, signed_in: bool) -> None:
        """Mark Ephemeral chats "not synced" while the profile is signed in to sync."""
        self.sidebar.model.set_marks_unsynced(signed_in)
        self.chat_view.set_marks_unsynced(signed_in)

    def has_ephemeral_chats(self) -> bool:
        """Whether closing or locking now would make Ephemeral chats vanish."""
        return self.sidebar.model.has_tier(Tier.EPHEMERAL)

    # wiring ------------------------------------------------------------------------------

    @property
    def _config(self) -> Config:
        return self._session.config.config

    def _ui_setting(self, name: str, default: str) -> str:
        ui = getattr(self._config, "ui", None)
        value = getattr(ui, name, default) if ui is not None else default
        return value if isinstance(value, str) else default

    def _apply_code_blocks(self) -> None:
        """Wrap long code lines, or let code blocks scroll sideways (``ui.code_blocks``)."""
        wrap = self._ui_setting("code_blocks", "wrap") != "scroll"
        delegate = self.chat_view.list.message_delegate
        if delegate.wrap_code != wrap:
            delegate.wrap_code = wrap
            self.chat_view.list.keep_position(delegate.reset_caches)

    def _on_change(self, change: ChatChanged) -> None:
        self.sidebar.on_chat_changed(change)
        self.chat_view.on_chat_changed(change)

    def _chat_loaded(self, chat: Chat | None) -> None:
        self.settings_panel.set_chat(chat)
        self._update_composer(chat)
        if self.composer.attachments():
            self._check_attachments()  # what the chat's tier and model accept
        # After the chat's first paint (opening a long chat stays as fast as before);
        # quick switches between chats measure only the last one.
        self._meter_timer.start()
        if chat is None:
            self.sidebar.select_chat(None)

    def _hit_shown(self, _message_id: str, found: bool) -> None:
        """The view opened a search hit: mark it, or say where it is."""
        if found:
            self.chat_view.list.setFocus(Qt.FocusReason.OtherFocusReason)  # the focus ring
        else:
            self._hit_not_shown()

    def _hit_not_shown(self) -> None:
        self.status_message.emit(
            "The matched message is in another version of this chat; show it with "
            "Previous version or Next version in the menu of an edited message."
        )

    def _streaming_changed(self, streaming: bool) -> None:
        gc_policy.set_streaming(streaming)  # no full collection stalls a streaming answer
        if not streaming:
            self._measure_context()  # the answer now counts too

    def _measure_context(self) -> None:
        """Ask the service what the open chat takes of its context window (the meter)."""
        chat_id = self.chat_view.chat_id
        if chat_id is None or self.composer.is_blocked:
            self.composer.set_context(None)
            return
        if self.chat_view.model.chat_id != chat_id:
            # Another chat is being opened: its page must not wait behind this read on
            # the database thread; it measures once it is shown (chat_loaded).
            return
        generation = self._generation

        def measured(use: ContextUse) -> None:
            if generation == self._generation and chat_id == self.chat_view.chat_id:
                self.composer.set_context(use)

        def failed(error: BaseException) -> None:
            log.info("context use not measured: %s", type(error).__name__)
            self.composer.set_context(None)

        tasks.start_for(
            self,
            self._session.service.context_use(chat_id, max_tokens=self.chat_view.max_tokens),
            on_done=measured,
            on_error=failed,
        )

    def _send_refused(self, text: str, kind: str) -> None:
        """A send failed before anything was saved: give the text back, show the state now.

        The refusal may come from a change the panels have not shown yet (a provider
        re-labelled as cloud in Settings): they are refreshed from the current config.
        """
        self.composer.restore(text)
        chat = self.chat_view.chat
        self.settings_panel.set_chat(chat)
        self._update_composer(chat)
        if kind in ("ContextOverflowError", "ContextTooLongError"):
            self._measure_context()

    def _fix(self, action: str) -> None:
        if action == "choose-model":
            self.choose_model()
        elif action == "shorten":
            self.focus_composer()
        elif action == "resend":
            self.composer.submit()
        elif action == "voice-settings":
            self.settings_requested.emit("voice")

    def _update_composer(self, chat: Chat | None) -> None:
        self.composer.set_blocked(sending_blocked_reason(self._config, chat))

    def open_waiting_file(self, attachment: NewAttachment) -> AttachmentViewerDialog:
        """Show a file waiting in the composer (an image, or the text Hushchat reads from
        it) in a window of its own; returned for tests."""
        dialog = AttachmentViewerDialog(attachment.name, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.save_requested.connect(lambda: self.save_waiting_file(attachment))
        max_bytes = AttachmentSettings.of(self._session.config.config).max_bytes

        def shown(result: tuple[bytes, bool, str]) -> None:
            data, is_image, text = result
            if is_image:
                dialog.show_image(QImage.fromData(data))
            else:
                dialog.show_text(text)

        def failed(error: BaseException) -> None:
            if not isinstance(error, HushchatError | OSError):
                log.warning("a waiting file was not shown", exc_info=error)
            dialog.show_problem(str(error))

        dialog.open()
        tasks.start_for(
            dialog,
            self._session.runner.blocking(read_new, attachment, max_bytes),
            shown,
            failed,
        )
        return dialog

    def save_waiting_file(self, attachment: NewAttachment) -> None:
        """Ask where to save a copy of a file waiting in the composer, then save it."""
        chosen = chat_view_module.choose_save_path(self, attachment.name)
        if not chosen:
            return
        name = attachment.name

        def write() -> None:
            if attachment.path is not None:
                shutil.copyfile(attachment.path, chosen)
            else:
                Path(chosen).write_bytes(attachment.data or b"")

        def failed(error: BaseException) -> None:
            self.error_message.emit(
                f"Could not save {name}: {error} Choose another folder and try again."
            )

        tasks.start(
            self._session.runner.blocking(write),
            on_done=lambda _: self.status_message.emit(f"Saved {name}"),
            on_error=failed,
        )

    def recheck_attachments(self) -> None:
        """Check the composer's files again (the attachment settings changed)."""
        self._check_attachments()

    def _check_attachments(self) -> None:
        """Ask the service whether the composer's files can be sent in the open chat
        (each chip then shows its problem, if any)."""
        files = self.composer.attachments()
        chat_id = self.chat_view.chat_id
        if not files or chat_id is None:
            return  # (a first message's new chat is checked when it is sent)
        generation = self._generation

        def checked(checks: list[Any]) -> None:
            if generation == self._generation and chat_id == self.chat_view.chat_id:
                self.composer.set_checks(files, checks)

        def failed(error: BaseException) -> None:
            log.warning("attachments not checked: %s", type(error).__name__)

        tasks.start_for(
            self,
            self._session.service.check_attachments(chat_id, files),
            on_done=checked,
            on_error=failed,
        )

    def _send(self, text: str, attachments: list[Any] | None = None) -> None:
        self.activity.emit()
        files = attachments or []
        if self.chat_view.chat_id is not None:
            if not self.chat_view.send(text, attachments=files):
                self.composer.give_back_attachments(files)
                self.status_message.emit("An answer is still coming; stop it first.")
            return
        # Nothing open: the first message starts a new Standard chat.

        generation = self._generation

        def created(chat: Chat) -> None:
            if generation == self._generation:
                self.open_chat(chat.id)
                self.chat_view.send(text, attachments=files)

        def failed(error: BaseException) -> None:
            if generation != self._generation:
                return
            self.composer.give_back(text)
            self.composer.give_back_attachments(files)
            QMessageBox.warning(
                self,
                "The chat was not started",
                f"{error}\n\nYour message is back in the message box: send it again when "
                "the problem is solved.",
            )

        tasks.start(
            self._session.service.create_chat(Tier.STANDARD), on_done=created, on_error=failed
        )

    def _edit(self, message_id: str, text: str) -> None:
        self.activity.emit()
        if not self.chat_view.edit(message_id, text):
            self.status_message.emit("An answer is still coming; stop it first.")
