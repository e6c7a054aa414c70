"""The message list of one chat: a virtualized view over its thread, and its turns.

``MessageListModel`` holds the loaded page(s) of the active thread (newest page
first, older pages fetched as the user scrolls up; a search hit opens a window
around it instead, newer pages fetched as the user scrolls down) plus the "N older
messages not sent to the model" marker. ``MessageDelegate`` paints each row from
QTextDocuments of rendered Markdown, cached per message, chunk and width, so a
10,000-message chat costs what its visible rows cost; heights of rows never
painted are estimated first and measured in small idle slices afterwards, with
the visible content held still. ``ChatViewWidget`` runs the chat's turns (send,
regenerate, edit) as tasks on the event loop; streamed text goes into a buffer
and the streaming row is repainted at most every ``REPAINT_MS`` so the UI thread
never stalls however fast the model is.

Reading aloud: each finished answer offers "Read aloud" (Ctrl+Shift+R), which becomes
"Stop reading" while the window's ``Speaker`` (app/ui/voice.py) reads it; a chat whose
``read_aloud`` setting is on feeds each answer to the speaker as it streams. A refused
or unconfigured speech engine is said under the conversation like a refused model; a
failure after reading started is said in that answer's footer.

There is never one widget per message: only the message whose text is being selected
has one (``MessageSelector``), laid over it, and the file card that has the keyboard
focus (``FileCardFocusWidget``: Tab reaches the cards in view).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QAction,
    QColor,
    QContextMenuEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QFocusEvent,
    QFont,
    QFontMetrics,
    QGuiApplication,
    QHelpEvent,
    QImage,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
    QTextBlock,
    QTextBlockFormat,
    QTextCursor,
    QTextDocument,
    QTextOption,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFileDialog,
    QFrame,
    QLabel,
    QListView,
    QMenu,
    QMessageBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTextBrowser,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.chat.events import (
    ChatChanged,
    ChatDeleted,
    ChatPurged,
    ChatRestored,
    MessagesChanged,
    TurnDelta,
    TurnEvent,
    TurnFinished,
    TurnReasoning,
    TurnStarted,
)
from app.chat.stats import message_stats_line
from app.errors import ConfigError, HushchatError, PolicyRefusedError
from app.session import Session
from app.store.models import Attachment, Chat, Message, MessageStatus, ThreadPage, Tier
from app.ui import tasks
from app.ui.attachments import AttachmentViewerDialog, card_name, files_of, human_size
from app.ui.keys import READ_ALOUD_SHORTCUT, STOP_READING_KEY, native
from app.ui.markdown import Chunk, render_markdown, split_blocks
from app.ui.theme import icon

if TYPE_CHECKING:
    from app.ui.voice import AnswerFeed, Speaker

__all__ = ["ChatViewWidget", "MessageDelegate", "MessageListModel", "MessageListView"]

log = logging.getLogger(__name__)

PAGE_SIZE = 100
REPAINT_MS = 30
MEASURE_SLICE_SECONDS = 0.006
LAYOUT_BATCH_MS = 150
#: While an answer streams, a step of colouring a finished chunk runs at most this often.
HIGHLIGHT_STREAMING_MS = 12
DOC_CACHE_SIZE = 800
# Rendered parts are kept as pictures (blitting beats re-drawing rich text every frame).
PIXMAP_CACHE_BYTES = 48 * 1024 * 1024
ROW_MARGIN_X = 16
ROW_MARGIN_Y = 6
BUBBLE_PAD = 10
MARKER_KEY = "marker"
NOTICE_KEY = "notice"
ERROR_COLOR = "#c01c28"
# What a failure offers, by the kind of error (a ``ChatViewWidget._on_action`` name, a label).
CHOOSE_MODEL = ("choose-model", "Choose another model")
SHORTEN = ("shorten", "Shorten the message")
TRY_AGAIN = ("resend", "Try again")
NOTICE_ACTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "PolicyRefusedError": (CHOOSE_MODEL,),
    "ContextOverflowError": (SHORTEN, CHOOSE_MODEL),
    "ContextTooLongError": (SHORTEN, CHOOSE_MODEL),
    "ConfigError": (CHOOSE_MODEL, TRY_AGAIN),
}
#: How a Markdown table starts in rendered HTML (code blocks and quotes are tables too).
TABLE_MARK = '<table border="1"'
EPHEMERAL_TINT = QColor(214, 160, 40)
EPHEMERAL_BANNER = "Ephemeral — vanishes when closed. Nothing of this chat is saved."
#: The notice a send refused before anything was saved starts with this.
NOT_SENT = "Not sent."
#: ... and the notice of a speech engine refused or not set up.
NOT_READ = "Not read aloud."
VOICE_SETTINGS = ("voice-settings", "Voice settings")
#: Tooltips of a message's footer actions (the links are painted, not widgets).
ACTION_TIPS = {
    "read": f"Read this answer aloud ({native(READ_ALOUD_SHORTCUT)})",
    "stop-reading": f"Stop reading aloud ({native(STOP_READING_KEY)})",
}
PREVIOUS_MARK = "\u2039"  # the version switcher shows PREVIOUS_MARK 2/3 NEXT_MARK
NEXT_MARK = "\u203a"


def _ask(parent: QWidget, title: str, text: str) -> bool:
    """A yes/no confirmation (a seam: tests replace it)."""
    answer = QMessageBox.question(
        parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    )
    return answer == QMessageBox.StandardButton.Yes


confirm: Callable[[QWidget, str, str], bool] = _ask


def _ask_save_path(parent: QWidget, name: str) -> str:
    """Where to save a copy of the attachment ``name`` ("": cancelled)."""
    path, _ = QFileDialog.getSaveFileName(parent, "Save attachment as", name)
    return path


#: Asks where to save an attachment (a seam: tests replace it).
choose_save_path: Callable[[QWidget, str], str] = _ask_save_path

#: Thumbnails of image attachments: at most this wide (and tall), read up to this size.
THUMB_MAX_PX = 240
THUMB_MAX_BYTES = 20 * 1024 * 1024
THUMB_CACHE_SIZE = 120
CARD_ICON_PX = 16
#: The focus outline of a file card is this far outside its text (px).
CARD_FOCUS_PAD = 3


class ChatDocument(QTextDocument):
    """A QTextDocument that loads no resource at all: model output fetches nothing."""

    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        return None


# --- model ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    """One row: a message, the context marker, or a notice (``message`` None).

    A notice (key ``NOTICE_KEY``) says why the last send failed before any message was
    saved (or why an answer is not read aloud), under the conversation, with the
    ``actions`` that fix it; ``title`` says which.
    """

    key: str
    message: Message | None = None
    text: str = ""
    actions: tuple[tuple[str, str], ...] = ()
    title: str = NOT_SENT


@dataclass(slots=True)
class _Stream:
    """The text streamed so far into the answer ``message_id``."""

    message_id: str
    pieces: list[str] = field(default_factory=list)
    length: int = 0
    reasoning: int = 0
    #: The text on screen: taken from ``pieces`` at each repaint, so a frame lays out
    #: and paints the same text however many deltas arrive in between.
    shown: str = ""

    def text(self) -> str:
        if len(self.pieces) > 1:
            self.pieces[:] = ["".join(self.pieces)]
        return self.pieces[0] if self.pieces else ""

    def take(self) -> str:
        """Show everything that has arrived."""
        self.shown = self.text()
        return self.shown


class MessageListModel(QAbstractListModel):
    """The loaded messages of one chat's active thread, oldest first.

    Older pages are fetched with ``fetch_older`` when the user scrolls to the top.
    (Qt's own ``canFetchMore``/``fetchMore`` grow a list at the *bottom* and fire
    whenever the last row is visible, which for a chat shown from its newest end
    would load the whole history; so the view asks for older pages explicitly.)

    A search hit opens a *window* around it that may not reach the newest message
    (``has_newer``); newer pages are fetched with ``fetch_newer`` when the user
    scrolls to its bottom. While ``has_newer``, nothing that belongs at the newest end
    (the context marker, the last answer's Regenerate) is shown under the window.
    """

    older_requested = Signal(str)  # id of the oldest loaded message
    newer_requested = Signal(str)  # id of the newest loaded message (a window's last)
    ROW_ROLE: ClassVar[int] = int(Qt.ItemDataRole.UserRole) + 1

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.chat_id: str | None = None
        self.has_older = False
        self.has_newer = False
        self._rows: list[_Row] = []
        self._messages: list[Message] = []
        self._stream: _Stream | None = None
        self._fetching_older = False
        self._fetching_newer = False
        # The marker sits before the message at this absolute thread position.
        self._marker_at: int | None = None
        self._marker_dropped = 0
        self._first_position: int | None = None  # thread position of _messages[0]
        self._notice: _Row | None = None
        #: The attachments of the chat's messages, by message id.
        self.attachments: dict[str, list[Attachment]] = {}

    # Qt interface ------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole or role == Qt.ItemDataRole.AccessibleTextRole:
            if row.message is None:
                return row.text
            who = "You" if row.message.role == "user" else "Assistant"
            text = f"{who}: {self.content_of(row)}"
            files = self.attachments.get(row.message.id)
            if files:
                text += "\nAttachments: " + ", ".join(
                    f"{f.name} ({human_size(f.size)})" for f in files
                )
            sources = _sources_of(row.message)
            if sources:
                text += "\nSources: " + "; ".join(sources)
            stats = None if self.is_streaming(row) else message_stats_line(row.message)
            if role == Qt.ItemDataRole.AccessibleTextRole and stats:
                text += f"\n{stats}"
            return text
        if role == self.ROW_ROLE:
            return row
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # reading -----------------------------------------------------------------------------

    def row(self, number: int) -> _Row:
        return self._rows[number]

    def row_number(self, key: str) -> int | None:
        for number in range(len(self._rows) - 1, -1, -1):
            if self._rows[number].key == key:
                return number
        return None

    @property
    def messages(self) -> list[Message]:
        return list(self._messages)

    def content_of(self, row: _Row) -> str:
        """The text to show: the streamed text for the answer being streamed."""
        if row.message is None:
            return row.text
        if self._stream is not None and row.message.id == self._stream.message_id:
            return self._stream.shown
        return row.message.content

    def is_streaming(self, row: _Row) -> bool:
        return (
            self._stream is not None
            and row.message is not None
            and row.message.id == self._stream.message_id
        )

    @property
    def stream(self) -> _Stream | None:
        return self._stream

    def last_assistant(self) -> Message | None:
        for message in reversed(self._messages):
            if message.role == "assistant":
                return message
        return None

    def message(self, message_id: str) -> Message | None:
        for message in self._messages:
            if message.id == message_id:
                return message
        return None

    # changing ----------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every message (on lock or when no chat is open)."""
        self.beginResetModel()
        self.chat_id = None
        self.has_older = False
        self.has_newer = False
        self._rows = []
        self._messages = []
        self._stream = None
        self._marker_at = None
        self._first_position = None
        self._fetching_older = False
        self._fetching_newer = False
        self._notice = None
        self.attachments = {}
        self.endResetModel()

    def show_page(self, chat_id: str, page: ThreadPage, *, thread_length: int | None) -> None:
        """Show ``page`` as the newest messages of ``chat_id``, or as a window around a
        message when ``page.has_newer`` (a new chat resets, the same chat is updated row
        by row)."""
        if chat_id != self.chat_id:
            self.beginResetModel()
            self.chat_id = chat_id
            self._stream = None
            self._notice = None
            self._marker_at = None
            self._messages = list(page.messages)
            self.has_older = page.has_older
            self.has_newer = page.has_newer
            self._first_position = self._position_from(thread_length)
            self._fetching_older = False
            self._fetching_newer = False
            self._rows = self._build_rows()
            self.endResetModel()
            return
        self._messages = list(page.messages)
        self.has_older = page.has_older
        self.has_newer = page.has_newer
        self._fetching_newer = False
        self._first_position = self._position_from(thread_length)
        self._apply_rows(self._build_rows())

    def add_older(self, chat_id: str, before: str, page: ThreadPage) -> None:
        """Put an older page above the loaded messages (if it still fits there)."""
        self._fetching_older = False
        if chat_id != self.chat_id or not self._messages or self._messages[0].id != before:
            return
        self._messages = list(page.messages) + self._messages
        self.has_older = page.has_older
        if self._first_position is not None:
            self._first_position -= len(page.messages)
        self._apply_rows(self._build_rows())

    def add_newer(self, chat_id: str, after: str, page: ThreadPage) -> None:
        """Put a newer page below the loaded messages (a window scrolled down), if it
        still fits there: ``after`` is still the newest loaded message."""
        self._fetching_newer = False
        if (
            chat_id != self.chat_id
            or not self.has_newer
            or not self._messages
            or self._messages[-1].id != after
        ):
            return
        self._messages += page.messages
        self.has_newer = page.has_newer
        if not page.messages:  # ``after`` left the thread meanwhile: a reload follows
            self.has_newer = False
        self._apply_rows(self._build_rows())

    @property
    def has_marker(self) -> bool:
        return self._marker_at is not None

    @property
    def notice(self) -> _Row | None:
        """The notice under the conversation, if one is shown."""
        return self._notice

    def set_notice(
        self, text: str, actions: tuple[tuple[str, str], ...] = (), *, title: str = NOT_SENT
    ) -> None:
        """Show ``text`` (why a send failed) with ``actions`` under the last message."""
        self._notice = _Row(NOTICE_KEY, None, text, actions, title)
        self._apply_rows(self._build_rows())

    def clear_notice(self) -> None:
        if self._notice is not None:
            self._notice = None
            self._apply_rows(self._build_rows())

    def can_fetch_older(self) -> bool:
        return self.has_older and not self._fetching_older and bool(self._messages)

    def fetch_older(self) -> None:
        """Ask (``older_requested``) for the page before the oldest loaded message."""
        if self.can_fetch_older():
            self._fetching_older = True
            self.older_requested.emit(self._messages[0].id)

    def older_fetch_failed(self) -> None:
        self._fetching_older = False

    def can_fetch_newer(self) -> bool:
        return self.has_newer and not self._fetching_newer and bool(self._messages)

    def fetch_newer(self) -> None:
        """Ask (``newer_requested``) for the page after the newest loaded message."""
        if self.can_fetch_newer():
            self._fetching_newer = True
            self.newer_requested.emit(self._messages[-1].id)

    def newer_fetch_failed(self) -> None:
        self._fetching_newer = False

    def start_stream(self, stream: _Stream | None) -> None:
        """Show ``stream``'s text in its answer's row (None: no answer is streaming)."""
        self._stream = stream
        if stream is not None:
            stream.take()
            number = self.row_number(stream.message_id)
            if number is not None:
                index = self.index(number)
                self.dataChanged.emit(index, index)

    def set_marker(self, dropped: int, thread_length: int | None) -> None:
        """Mark where the context sent with the latest turn began."""
        self._marker_dropped = dropped
        self._marker_at = dropped if dropped > 0 else None
        if thread_length is not None:
            self._first_position = self._position_from(thread_length)
        self._apply_rows(self._build_rows())

    def _position_from(self, thread_length: int | None) -> int | None:
        if self.has_newer:  # a window: where it sits in the thread is not known
            return None
        if thread_length is None:
            return self._first_position if self._marker_at is not None else None
        return thread_length - len(self._messages)

    def _build_rows(self) -> list[_Row]:
        rows = [_Row(m.id, m) for m in self._messages]
        if self._notice is not None:
            rows.append(self._notice)
        if self._marker_at is None or self.has_newer:
            return rows
        text = (
            f"{self._marker_dropped:,} older message{'s' if self._marker_dropped != 1 else ''} "
            "not sent to the model"
        )
        where = 0
        if self._first_position is not None:
            where = min(max(self._marker_at - self._first_position, 0), len(self._messages))
        rows.insert(where, _Row(MARKER_KEY, None, text))
        return rows

    def _apply_rows(self, new: list[_Row]) -> None:
        """Replace the rows, touching only those that differ (keeps the view's place)."""
        old = self._rows
        limit = min(len(old), len(new))
        prefix = 0
        while prefix < limit and old[prefix].key == new[prefix].key:
            prefix += 1
        suffix = 0
        while suffix < limit - prefix and old[-1 - suffix].key == new[-1 - suffix].key:
            suffix += 1
        removed_end = len(old) - suffix
        inserted_end = len(new) - suffix
        if removed_end > prefix:
            self.beginRemoveRows(QModelIndex(), prefix, removed_end - 1)
            del self._rows[prefix:removed_end]
            self.endRemoveRows()
        if inserted_end > prefix:
            self.beginInsertRows(QModelIndex(), prefix, inserted_end - 1)
            self._rows[prefix:prefix] = new[prefix:inserted_end]
            self.endInsertRows()
        for number, row in enumerate(new):
            current = self._rows[number]
            if (
                current.message != row.message
                or current.text != row.text
                or current.actions != row.actions
            ):
                self._rows[number] = row
                index = self.index(number)
                self.dataChanged.emit(index, index)


# --- delegate ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    top: int
    document: QTextDocument
    code_blocks: list[str]
    key: tuple[Any, ...] = ()
    #: Whether the part can change (the growing end of a streaming answer): never cached
    #: as a picture.
    is_growing: bool = False


@dataclass(slots=True)
class _Layout:
    """How one row is drawn at one width: its documents, their offsets, its height."""

    parts: list[_Part]
    header: str
    height: int
    content_top: int


def _signature(row: _Row, content_length: int, streaming: bool) -> tuple[Any, ...]:
    message = row.message
    if message is None:
        return (row.key, row.text, row.actions, row.title)
    return (
        message.id,
        message.status,
        message.version,
        message.versions,
        message.error,
        content_length,
        streaming,
    )


class MessageDelegate(QStyledItemDelegate):
    """Paints a message from cached QTextDocuments; heights are measured once per width."""

    streaming_painted = Signal(int)  # characters of the streaming answer now on screen
    #: An image attachment is shown whose thumbnail is not loaded: its id.
    thumbnail_wanted = Signal(str)

    def __init__(self, view: MessageListView) -> None:
        super().__init__(view)
        self._view = view
        self._width = -1
        self._generation = 0
        self._heights: dict[str, tuple[tuple[Any, ...], int]] = {}
        self._layouts: OrderedDict[str, tuple[tuple[Any, ...], _Layout]] = OrderedDict()
        self._docs: OrderedDict[tuple[Any, ...], tuple[QTextDocument, list[str]]] = OrderedDict()
        self._pixmaps: OrderedDict[tuple[Any, ...], QPixmap] = OrderedDict()
        self._splits: dict[str, tuple[str, list[Chunk]]] = {}
        self._highlights: OrderedDict[tuple[Any, ...], tuple[Chunk, str]] = OrderedDict()
        #: The open last block of the streaming answer, re-rendered as it grows.
        self._tail: tuple[tuple[Any, ...], tuple[QTextDocument, list[str]]] | None = None
        #: The coloured HTML of chunks in ``_highlights`` whose document is made next.
        self._highlight_html: dict[tuple[Any, ...], tuple[str, list[str]]] = {}
        #: Chunks in ``_highlights`` whose picture is drawn: they are shown next.
        self._pictured: set[tuple[Any, ...]] = set()
        #: Rows (answers that streamed) that have been shown block by block.
        self._block_rows: set[str] = set()
        self._highlight_timer = QTimer(self)
        self._highlight_timer.setInterval(0)
        self._highlight_timer.timeout.connect(self._highlight_slice)
        self._pixmap_bytes = 0
        self.is_dark = False
        self.last_regenerable: str | None = None
        #: Long code lines wrap inside the message; off, a block wider than the message
        #: scrolls sideways (Shift+wheel or a sideways swipe over it) and shows a bar.
        self.wrap_code = True
        #: How far each wide part is scrolled sideways, by part key.
        self._offsets: dict[tuple[Any, ...], float] = {}
        #: The error kind of answers that failed in this session, by message id.
        self.error_kinds: dict[str, str] = {}
        #: Whether answers offer "Read aloud" (the window has a speaker).
        self.can_read_aloud = False
        #: Answers being read aloud: their ``SpeakerState`` value ("preparing", "speaking").
        self.reading: dict[str, str] = {}
        #: Why reading an answer aloud failed, by message id (shown in its footer).
        self.reading_errors: dict[str, str] = {}
        #: The row whose text is open for selection (see ``MessageListView.open_selection``):
        #: its text is laid out as one document, drawn by the selector over the row.
        self.selecting: str | None = None
        #: Thumbnails of image attachments by attachment id (scaled, decoded in memory).
        self._thumbs: OrderedDict[str, QImage] = OrderedDict()
        #: Image attachments without a thumbnail (too large, not an image Qt reads).
        self._no_thumb: set[str] = set()
        self._card_icons: dict[str, QImage] = {}

    # caches ------------------------------------------------------------------------------

    def reset_caches(self) -> None:
        """Forget every layout (theme, font or content cleared)."""
        self._generation += 1
        self._heights.clear()
        self._layouts.clear()
        self._docs.clear()
        self._splits.clear()
        self._highlights.clear()
        self._highlight_html.clear()
        self._pictured.clear()
        self._block_rows.clear()
        self._tail = None
        self._card_icons.clear()
        self._thumbs.clear()  # decrypted content: dropped on lock too
        self._no_thumb.clear()
        self._drop_pixmaps()
        self.is_dark = self._view.palette().color(QPalette.ColorRole.Base).lightness() < 128

    def reset_width(self) -> None:
        """Take the view's new width (layouts of the old width are dropped)."""
        self.content_width()

    def content_width(self) -> int:
        width = self._view.viewport().width() - 2 * (ROW_MARGIN_X + BUBBLE_PAD)
        width = max(width, 120)
        if width != self._width:
            self._width = width
            self._heights.clear()
            self._layouts.clear()
            self._drop_pixmaps()
        return width

    def _drop_pixmaps(self) -> None:
        self._pixmaps.clear()
        self._pixmap_bytes = 0

    def _pixmap(self, part: _Part, palette: QPalette, ratio: float) -> QPixmap:
        """``part`` drawn once into a cached picture at the screen's pixel ratio."""
        key = (*part.key, ratio)
        cached = self._pixmaps.get(key)
        if cached is not None:
            self._pixmaps.move_to_end(key)
            return cached
        size = part.document.size()
        pixmap = QPixmap(
            max(1, math.ceil(size.width() * ratio)), max(1, math.ceil(size.height() * ratio))
        )
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette = palette
        part.document.documentLayout().draw(painter, context)
        painter.end()
        self._pixmaps[key] = pixmap
        self._pixmap_bytes += pixmap.width() * pixmap.height() * 4
        while self._pixmap_bytes > PIXMAP_CACHE_BYTES and len(self._pixmaps) > 1:
            _, old = self._pixmaps.popitem(last=False)
            self._pixmap_bytes -= old.width() * old.height() * 4
        return pixmap

    def known_height(self, row: _Row, model: MessageListModel) -> int | None:
        """The measured height of ``row`` at the current width, if known."""
        self.content_width()
        known = self._heights.get(row.key)
        if known is None:
            return None
        signature = self._row_signature(row, model)
        return known[1] if known[0] == signature else None

    def _row_signature(self, row: _Row, model: MessageListModel) -> tuple[Any, ...]:
        streaming = model.is_streaming(row)
        content = (
            len(model.content_of(row))
            if streaming
            else len(row.message.content if row.message else row.text)
        )
        regenerable = row.message is not None and row.message.id == self.last_regenerable
        selecting = row.key == self.selecting
        reading: tuple[Any, ...] = ()
        if row.message is not None and row.message.role == "assistant":
            message_id = row.message.id
            reading = (
                self.can_read_aloud,
                message_id in self.reading,
                self.reading_errors.get(message_id),
            )
        files: tuple[Any, ...] = ()
        if row.message is not None:
            files = tuple(
                (f.id, f.id in self._thumbs) for f in model.attachments.get(row.message.id, ())
            )
        return (
            *_signature(row, content, streaming),
            regenerable,
            selecting,
            reading,
            files,
            self._generation,
        )

    def estimate(self, row: _Row, model: MessageListModel) -> int:
        """A quick guess at a row's height from its length (before it is measured)."""
        metrics = QFontMetrics(self._view.font())
        line = metrics.lineSpacing()
        if row.key == NOTICE_KEY:
            return 4 * line + 2 * (ROW_MARGIN_Y + BUBBLE_PAD)
        if row.message is None:
            return line + 2 * ROW_MARGIN_Y + 8
        width = self.content_width()
        per_line = max(20, width // max(1, metrics.averageCharWidth()))
        text = model.content_of(row)
        lines = text.count("\n") + len(text) // per_line + 1
        chrome = 2 * ROW_MARGIN_Y + 2 * BUBBLE_PAD + 2 * line + 8
        return chrome + int(lines * line * 1.1)

    def layout(self, row: _Row, model: MessageListModel) -> _Layout:
        """The row's documents and height at the current width (computed once)."""
        width = self.content_width()
        signature = self._row_signature(row, model)
        cached = self._layouts.get(row.key)
        if cached is not None and cached[0] == signature:
            self._layouts.move_to_end(row.key)
            return cached[1]
        layout = self._make_layout(row, model, width)
        self._layouts[row.key] = (signature, layout)
        if len(self._layouts) > 300:
            self._layouts.popitem(last=False)
        self._heights[row.key] = (signature, layout.height)
        return layout

    def measure(self, row: _Row, model: MessageListModel) -> tuple[int, bool]:
        """Measure ``row``; returns its height and whether it had been guessed differently."""
        before = self.known_height(row, model)
        guess = before if before is not None else self.estimate(row, model)
        height = self.layout(row, model).height
        return height, height != guess

    def _document(
        self,
        key: tuple[Any, ...],
        make: Callable[[], tuple[str, list[str]]],
        resources: dict[str, QImage] | None = None,
    ) -> tuple[QTextDocument, list[str]]:
        cached = self._docs.get(key)
        if cached is not None:
            self._docs.move_to_end(key)
            return cached
        html, code_blocks = make()
        entry = (self.new_document(html, resources=resources), code_blocks)
        self._docs[key] = entry
        if len(self._docs) > DOC_CACHE_SIZE:
            self._docs.popitem(last=False)
        return entry

    def new_document(
        self,
        html: str,
        parent: QObject | None = None,
        *,
        resources: dict[str, QImage] | None = None,
    ) -> ChatDocument:
        """A document of ``html`` laid out as messages are, at the current width (with
        ``resources``: the images it shows, by name; nothing else is ever loaded)."""
        document = ChatDocument(parent)
        for name, image in (resources or {}).items():
            document.addResource(QTextDocument.ResourceType.ImageResource, QUrl(name), image)
        document.setUndoRedoEnabled(False)
        document.setDocumentMargin(0)
        document.setDefaultFont(self._view.font())
        document.setDefaultStyleSheet("p { margin-top: 0px; margin-bottom: 6px; }")
        # Lines break between words only: a narrow message never splits a word (nor a
        # table cell's word) that fits on a line.
        option = document.defaultTextOption()
        option.setWrapMode(QTextOption.WrapMode.WordWrap)
        document.setDefaultTextOption(option)
        document.setHtml(html)
        if self.wrap_code and "<pre" in html:
            _wrap_preformatted(document)
        document.setTextWidth(self._width)
        if document.size().width() > self._width + 1 and TABLE_MARK not in html:
            # A single word wider than the whole line (a long URL, a hash, a long
            # identifier in code) is then broken where the line ends. A table keeps its
            # words whole and scrolls sideways instead (see ``scroll_part``).
            option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
            document.setDefaultTextOption(option)
        return document

    def selection_part(self, row: _Row, model: MessageListModel) -> tuple[_Part, str] | None:
        """The part holding the whole text of the row open for selection, and its HTML."""
        if row.key != self.selecting:
            return None
        for part in self.layout(row, model).parts:
            if part.key and part.key[0] == "whole":
                return part, part.key[1]
        return None

    def _make_layout(self, row: _Row, model: MessageListModel, width: int) -> _Layout:
        metrics = QFontMetrics(self._view.font())
        if row.key == NOTICE_KEY:
            html = self._notice_html(row)
            key: tuple[Any, ...] = ("notice", html, width, self._generation)
            document, _ = self._document(key, lambda: (html, []))
            top = ROW_MARGIN_Y + BUBBLE_PAD
            height = top + math.ceil(document.size().height()) + BUBBLE_PAD + ROW_MARGIN_Y
            return _Layout([_Part(top, document, [], key)], "", height, top)
        if row.message is None:
            height = metrics.lineSpacing() + 2 * ROW_MARGIN_Y + 8
            return _Layout([], row.text, height, 0)
        message = row.message
        streaming = model.is_streaming(row)
        header = _header(message, streaming)
        top = ROW_MARGIN_Y + BUBBLE_PAD + metrics.lineSpacing() + 4
        content_top = top
        parts: list[_Part] = []
        text = model.content_of(row)
        chunks: list[Chunk] | None = [] if row.key == self.selecting and not streaming else None
        if chunks is not None and text:
            # Open for selection: the whole text in one document, with the selector's.
            rendered = render_markdown(text, dark=self.is_dark, highlight=True)
            whole: tuple[Any, ...] = ("whole", rendered.html, width, self._generation)
            document, code_blocks = self._document(
                whole, lambda: (rendered.html, rendered.code_blocks)
            )
            parts.append(_Part(top, document, code_blocks, whole))
            top += math.ceil(document.size().height())
        if chunks is None:
            chunks = self._split(message.id, text, streaming)
        for number, chunk in enumerate(chunks):
            growing = streaming and number == len(chunks) - 1
            key = self._chunk_key(chunk, highlight=True)
            plain = self._chunk_key(chunk, highlight=False)
            pending = key not in self._docs or key in self._highlights  # not yet shown
            if pending and (
                growing
                or (plain not in self._docs and self._shown_as_blocks(row.key, chunk, streaming))
            ):
                # A chunk of a streaming answer is shown block by block (see
                # ``_block_parts``): each frame renders only its open last block. Once
                # complete it is rendered whole, coloured, when idle, and replaces them.
                if not growing:
                    self._defer_highlight(key, chunk, row.key)
                self._block_rows.add(row.key)
                for block_part in self._block_parts(chunk, top, growing=growing):
                    parts.append(block_part)
                    top += math.ceil(block_part.document.size().height())
                continue
            if pending and plain in self._docs:
                # Just finished growing: keep showing it plain and colour it when idle.
                self._defer_highlight(key, chunk, row.key)
                key = plain
            document, code_blocks = self._document(
                key, _chunk_renderer(chunk, self.is_dark, highlight=key[3])
            )
            parts.append(_Part(top, document, code_blocks, key))
            top += math.ceil(document.size().height())
        files = model.attachments.get(message.id, [])
        sources = _sources_of(message)
        if files or sources:
            files_html, resources = self._files_html(files, sources)
            files_key: tuple[Any, ...] = ("files", files_html, width, self._generation)
            document, _ = self._document(files_key, lambda: (files_html, []), resources)
            parts.append(_Part(top, document, [], files_key))
            top += math.ceil(document.size().height())
        footer = self._footer_html(message, streaming, model)
        if footer:
            footer_key: tuple[Any, ...] = ("footer", footer, width, self._generation)
            document, _ = self._document(footer_key, lambda: (footer, []))
            parts.append(_Part(top + 2, document, [], footer_key))
            top += math.ceil(document.size().height()) + 2
        height = top + BUBBLE_PAD + ROW_MARGIN_Y
        return _Layout(parts, header, height, content_top)

    def _chunk_key(self, chunk: Chunk, *, highlight: bool) -> tuple[Any, ...]:
        return (
            "chunk",
            chunk.text,
            chunk.opens_in_fence,
            highlight,
            self._width,
            self._generation,
        )

    def _block_key(self, block: Chunk) -> tuple[Any, ...]:
        return ("block", block.text, block.opens_in_fence, False, self._width, self._generation)

    def _shown_as_blocks(self, row_key: str, chunk: Chunk, streaming: bool) -> bool:
        """Whether ``chunk`` is (or was, until its answer ended) shown block by block: a
        chunk of a streaming answer, or of an answer that streamed whose first block is
        still cached."""
        if streaming:
            return True
        if row_key not in self._block_rows:
            return False
        key = self._block_key(_blocks_of(chunk)[0])
        return key in self._docs or (self._tail is not None and self._tail[0] == key)

    def _block_parts(self, chunk: Chunk, top: int, *, growing: bool) -> list[_Part]:
        """``chunk`` as one uncoloured document per top-level block, from ``top``.

        Every block but the last of a growing chunk is complete: its rendering (and its
        picture) is cached and reused every frame. The last one is re-rendered each frame
        and kept out of the document cache (it only grows)."""
        parts: list[_Part] = []
        blocks = _blocks_of(chunk)
        for number, block in enumerate(blocks):
            key = self._block_key(block)
            make = _chunk_renderer(block, self.is_dark, highlight=False)
            open_end = growing and number == len(blocks) - 1
            if open_end:
                tail = self._tail
                if tail is None or tail[0] != key:
                    html, code_blocks = make()
                    tail = (key, (self.new_document(html), code_blocks))
                    self._tail = tail
                document, code_blocks = tail[1]
            else:
                if self._tail is not None and self._tail[0] == key:
                    # The open block just ended as it was last drawn: keep its document.
                    self._docs[key] = self._tail[1]
                    self._tail = None
                document, code_blocks = self._document(key, make)
            parts.append(_Part(top, document, code_blocks, key, open_end))
            top += math.ceil(document.size().height())
        return parts

    def _defer_highlight(self, key: tuple[Any, ...], chunk: Chunk, row_key: str) -> None:
        self._highlights[key] = (chunk, row_key)
        if not self._highlight_timer.isActive():
            self._highlight_timer.start()

    def _highlight_slice(self) -> None:
        """Colour a few chunks that finished streaming, then redraw their rows.

        A chunk takes steps: its coloured HTML, its document, (while an answer streams)
        its picture, then it is shown. While an answer streams, one step runs per
        ``HIGHLIGHT_STREAMING_MS``, so that a frame of the stream never waits for more
        than one of them."""
        deadline = time.perf_counter() + MEASURE_SLICE_SECONDS
        one_step = self._view.message_model.stream is not None
        # (and not in every turn: between steps the stream's frames come first)
        self._highlight_timer.setInterval(HIGHLIGHT_STREAMING_MS if one_step else 0)
        rows: set[str] = set()
        longest = 0.0  # the longest step so far: the next is not begun if it may not fit
        while self._highlights and time.perf_counter() + longest < deadline:
            key, (chunk, row_key) = next(iter(self._highlights.items()))
            if key[4] != self._width or key[5] != self._generation:
                self._highlights.popitem(last=False)
                self._highlight_html.pop(key, None)
                self._pictured.discard(key)
                continue
            began = time.perf_counter()
            made = self._highlight_html.pop(key, None)
            if key not in self._docs and made is None:
                self._highlight_html[key] = _chunk_renderer(chunk, self.is_dark, highlight=True)()
            elif key not in self._docs:
                self._document(key, lambda made=made: made)  # type: ignore[misc]
            elif one_step and key not in self._pictured:
                document, code_blocks = self._docs[key]
                part = _Part(0, document, code_blocks, key)
                self._pixmap(part, self._view.palette(), self._view.devicePixelRatioF())
                self._pictured.add(key)
            else:
                self._highlights.popitem(last=False)
                self._pictured.discard(key)
                rows.add(row_key)
            longest = max(longest, time.perf_counter() - began)
            if one_step:
                break
        if not self._highlights:
            self._highlight_timer.stop()
        model = self._view.message_model
        for row_key in rows:
            self._layouts.pop(row_key, None)
            number = model.row_number(row_key)
            if number is not None:
                self.layout(model.row(number), model)  # now with the coloured part
        if rows:
            self._view.keep_position(lambda: None)
            self._view.viewport().update()

    def _split(self, message_id: str, text: str, streaming: bool) -> list[Chunk]:
        """``text`` in chunks; a streaming answer is split again only from its last chunk."""
        if not text:
            return []
        if not streaming:
            self._splits.pop(message_id, None)
            return split_blocks(text)
        previous = self._splits.get(message_id)
        if previous is not None and previous[1] and text.startswith(previous[0]):
            done = previous[1]
            chunks = done[:-1] + split_blocks(text, resume=done[-1])
        else:
            chunks = split_blocks(text)
        self._splits[message_id] = (text, chunks)
        return chunks

    def _link(self, name: str, label: str) -> str:
        link = self._view.palette().color(QPalette.ColorRole.Link).name()
        return f'<a href="action:{name}" style="color:{link};text-decoration:none;">{label}</a>'

    def _notice_html(self, row: _Row) -> str:
        actions = "&nbsp;&nbsp;·&nbsp;&nbsp;".join(self._link(n, label) for n, label in row.actions)
        title = _escape(row.title)
        return f'<p style="color:{ERROR_COLOR};"><b>{title}</b> {_escape(row.text)}</p>' + (
            f"<p>{actions}</p>" if actions else ""
        )

    def _footer_html(self, message: Message, streaming: bool, model: MessageListModel) -> str:
        link = self._view.palette().color(QPalette.ColorRole.Link).name()
        muted = self._view.palette().color(QPalette.ColorRole.PlaceholderText).name()

        def action(name: str, label: str) -> str:
            return f'<a href="action:{name}" style="color:{link};text-decoration:none;">{label}</a>'

        items: list[str] = []
        if streaming:
            stream = model.stream
            if stream is not None and stream.length == 0 and stream.reasoning:
                items.append(f'<span style="color:{muted};">Thinking…</span>')
            items.append(action("stop", "Stop"))
            if message.id in self.reading:
                items.append(action("stop-reading", "Stop reading"))
        else:
            if message.versions > 1:
                items.append(
                    f"{action('previous', PREVIOUS_MARK)}&nbsp;{message.version}/{message.versions}"
                    f"&nbsp;{action('next', NEXT_MARK)}"
                )
            if message.status is MessageStatus.ERROR:
                reason = message.error or "the model failed"
                items.append(f'<span style="color:{ERROR_COLOR};">Error: {_escape(reason)}</span>')
                kind = self.error_kinds.get(message.id)
                if kind == "ContextTooLongError" or (kind is None and _says_too_long(reason)):
                    items.append(action("edit-question", "Shorten the question"))
                    items.append(action("choose-model", "Choose another model"))
                items.append(action("retry", "Retry"))
            elif message.status is MessageStatus.STOPPED:
                items.append(f'<span style="color:{muted};">Stopped</span>')
            elif message.status is MessageStatus.PARTIAL:
                items.append(f'<span style="color:{muted};">Interrupted</span>')
            items.append(action("copy", "Copy"))
            if self.can_read_aloud and message.role == "assistant" and message.content.strip():
                if message.id in self.reading:
                    items.append(action("stop-reading", "Stop reading"))
                else:
                    items.append(action("read", "Read aloud"))
            if message.role == "user":
                items.append(action("edit", "Edit"))
            elif message.id == self.last_regenerable and message.status is not MessageStatus.ERROR:
                items.append(action("regenerate", "Regenerate"))
            items.append(action("delete", "Delete"))
            problem = self.reading_errors.get(message.id)
            if problem:
                items.append(
                    f'<span style="color:{ERROR_COLOR};">Not read aloud: {_escape(problem)}</span>'
                )
        html = (
            '<span style="font-size:small;">' + "&nbsp;&nbsp;·&nbsp;&nbsp;".join(items) + "</span>"
        )
        stats = None if streaming else message_stats_line(message)
        if stats:
            font = self._stats_font()
            shown = QFontMetrics(font).elidedText(stats, Qt.TextElideMode.ElideRight, self._width)
            size = (
                f"{font.pointSizeF():.1f}pt" if font.pointSizeF() > 0 else f"{font.pixelSize()}px"
            )
            html += (
                f'<p style="margin:0; font-size:{size}; color:{muted}; white-space:pre;">'
                f"{_escape(shown)}</p>"
            )
        return html

    def _files_html(
        self, files: list[Attachment], sources: tuple[str, ...]
    ) -> tuple[str, dict[str, QImage]]:
        """A card per attachment (an icon by kind, its name, kind and size; an image's
        thumbnail once loaded: ``thumbnail_wanted`` asks for it), then the sources line.
        A card is a link: clicking it opens the file in the window's viewer (Save as is
        in its context menu). Also the images it shows, by name."""
        palette = self._view.palette()
        link = palette.color(QPalette.ColorRole.Link).name()
        muted = palette.color(QPalette.ColorRole.PlaceholderText).name()
        resources: dict[str, QImage] = {}
        html: list[str] = []
        for file in files:
            is_image = file.media_type.startswith("image/")
            thumb = self._thumbs.get(file.id) if is_image else None
            if is_image and thumb is None and file.id not in self._no_thumb:
                if file.size <= THUMB_MAX_BYTES:
                    self.thumbnail_wanted.emit(file.id)
                else:
                    self._no_thumb.add(file.id)
            href = f"attachment:{file.id}"
            if thumb is not None:
                self._thumbs.move_to_end(file.id)
                resources[f"thumb:{file.id}"] = thumb
                html.append(
                    f'<p style="margin:6px 0 0 0;"><a href="{href}"><img src="thumb:{file.id}" '
                    f'width="{thumb.width()}" height="{thumb.height()}"></a></p>'
                )
            kind = "image" if is_image else "file"
            resources[f"icon:{kind}"] = self._card_icon(kind)
            html.append(
                f'<p style="margin:4px 0 0 0;"><a href="{href}" style="color:{link};'
                f'text-decoration:none;"><img src="icon:{kind}" width="{CARD_ICON_PX}" '
                f'height="{CARD_ICON_PX}">&nbsp;{_escape(file.name)}</a>'
                f'<span style="color:{muted};"> &middot; {_kind_label(file.media_type)}, '
                f"{human_size(file.size)}</span></p>"
            )
        if sources:
            html.append(
                f'<p style="margin:6px 0 0 0; font-size:small; color:{muted};">'
                f"Sources: {_escape('; '.join(sources))}</p>"
            )
        return "".join(html), resources

    def _card_icon(self, kind: str) -> QImage:
        image = self._card_icons.get(kind)
        if image is None:
            image = icon(kind).pixmap(CARD_ICON_PX, CARD_ICON_PX).toImage()
            self._card_icons[kind] = image
        return image

    def set_thumbnail(self, attachment_id: str, image: QImage | None) -> None:
        """Take the loaded thumbnail of an image attachment (None: it has none)."""
        if image is None or image.isNull():
            self._no_thumb.add(attachment_id)
            return
        self._thumbs[attachment_id] = image
        while len(self._thumbs) > THUMB_CACHE_SIZE:
            self._thumbs.popitem(last=False)

    def has_thumbnail(self, attachment_id: str) -> bool:
        return attachment_id in self._thumbs

    def _stats_font(self) -> QFont:
        """The small font of an answer's stats line."""
        font = QFont(self._view.font())
        if font.pointSizeF() > 0:
            font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        else:
            font.setPixelSize(max(8, round(font.pixelSize() * 0.85)))
        return font

    def footer_text(self, row: _Row, model: MessageListModel) -> str:
        """The plain text of a message's footer as painted (actions, then the stats line)."""
        if row.message is None:
            return ""
        for part in self.layout(row, model).parts:
            if part.key and part.key[0] == "footer":
                return part.document.toPlainText()
        return ""

    # Qt interface ------------------------------------------------------------------------

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        model = self._view.message_model
        row = model.row(index.row())
        height = self.known_height(row, model)
        if height is None:
            height = self.estimate(row, model)
        return QSize(self._view.viewport().width(), height)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        model = self._view.message_model
        row = model.row(index.row())
        known = self.known_height(row, model)
        layout = self.layout(row, model)
        rect = QRect(option.rect)
        if known is None and layout.height != rect.height() and not model.is_streaming(row):
            self._view.request_measure()
        palette = option.palette
        painter.save()
        painter.setClipRect(rect)
        if row.key == NOTICE_KEY:
            self._paint_notice(painter, rect, palette, layout)
            painter.restore()
            return
        if row.message is None:
            self._paint_marker(painter, rect, palette, layout.header)
            painter.restore()
            return
        bubble = rect.adjusted(ROW_MARGIN_X, ROW_MARGIN_Y, -ROW_MARGIN_X, -ROW_MARGIN_Y)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if row.message.role == "user":
            fill = QColor(palette.color(QPalette.ColorRole.Highlight))
            fill.setAlpha(28)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(fill)
            painter.drawRoundedRect(QRectF(bubble), 8, 8)
        state = option.state
        if state & QStyle.StateFlag.State_HasFocus and self._view.hasFocus():
            pen = QColor(palette.color(QPalette.ColorRole.Highlight))
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(bubble).adjusted(0.5, 0.5, -0.5, -0.5), 8, 8)
        left = rect.left() + ROW_MARGIN_X + BUBBLE_PAD
        header_font = QFont(self._view.font())
        header_font.setBold(True)
        painter.setFont(header_font)
        painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(
            QRect(left, rect.top() + ROW_MARGIN_Y + BUBBLE_PAD, self._width, layout.content_top),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
            layout.header,
        )
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette = palette
        clip = QRectF(painter.clipBoundingRect())
        ratio = self._view.devicePixelRatioF()
        for part in layout.parts:
            top = rect.top() + part.top
            height = part.document.size().height()
            if top + height < clip.top() or top > clip.bottom() or part.key[0] == "whole":
                continue  # (the text open for selection is drawn by the selector)
            wide = part.document.size().width() > self._width + 1
            offset = self._offsets.get(part.key, 0.0) if wide else 0.0
            if wide:
                painter.save()
                painter.setClipRect(
                    QRectF(left, top, self._width, height), Qt.ClipOperation.IntersectClip
                )
            if not part.is_growing:
                painter.drawPixmap(QPointF(left - offset, top), self._pixmap(part, palette, ratio))
            else:
                painter.save()
                painter.translate(left - offset, top)
                context.clip = QRectF(offset, 0, self._width, height)
                part.document.documentLayout().draw(painter, context)
                painter.restore()
            if wide:
                self._paint_scroll_bar(painter, part, QRectF(left, top, self._width, height))
                painter.restore()
        painter.restore()
        if model.is_streaming(row):
            stream = model.stream
            self.streaming_painted.emit(len(stream.shown) if stream else 0)

    def _paint_scroll_bar(self, painter: QPainter, part: _Part, area: QRectF) -> None:
        """A thin bar under a part wider than the message: how much is shown, and where."""
        full = part.document.size().width()
        length = max(24.0, area.width() * area.width() / full)
        start = (area.width() - length) * self._offsets.get(part.key, 0.0) / (full - area.width())
        color = QColor(self._view.palette().color(QPalette.ColorRole.PlaceholderText))
        color.setAlpha(140)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawRoundedRect(QRectF(area.left() + start, area.bottom() - 4, length, 3), 1.5, 1.5)

    def scroll_part(self, row: _Row, model: MessageListModel, point: QPoint, delta: float) -> bool:
        """Scroll the wide part under ``point`` (relative to the row) sideways by ``delta``
        pixels; False when there is none (the wheel then scrolls the list). With code set
        to wrap, only a table wider than the message is that wide."""
        layout = self.layout(row, model)
        for part in layout.parts:
            size = part.document.size()
            if 0 <= point.y() - part.top <= size.height() and size.width() > self._width + 1:
                limit = size.width() - self._width
                offset = min(max(self._offsets.get(part.key, 0.0) + delta, 0.0), limit)
                self._offsets[part.key] = offset
                return True
        return False

    def _paint_notice(
        self, painter: QPainter, rect: QRect, palette: QPalette, layout: _Layout
    ) -> None:
        bubble = rect.adjusted(ROW_MARGIN_X, ROW_MARGIN_Y, -ROW_MARGIN_X, -ROW_MARGIN_Y)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        border = QColor(ERROR_COLOR)
        fill = QColor(ERROR_COLOR)
        fill.setAlpha(22)
        painter.setPen(border)
        painter.setBrush(fill)
        painter.drawRoundedRect(QRectF(bubble).adjusted(0.5, 0.5, -0.5, -0.5), 8, 8)
        left = rect.left() + ROW_MARGIN_X + BUBBLE_PAD
        ratio = self._view.devicePixelRatioF()
        for part in layout.parts:
            painter.drawPixmap(
                QPointF(left, rect.top() + part.top), self._pixmap(part, palette, ratio)
            )

    def _paint_marker(self, painter: QPainter, rect: QRect, palette: QPalette, text: str) -> None:
        color = QColor(palette.color(QPalette.ColorRole.PlaceholderText))
        painter.setPen(color)
        font = QFont(self._view.font())
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
        painter.setFont(font)
        metrics = QFontMetrics(font)
        width = metrics.horizontalAdvance(text)
        middle = rect.center().y()
        gap = 12
        left = rect.left() + ROW_MARGIN_X
        right = rect.right() - ROW_MARGIN_X
        text_left = rect.center().x() - width // 2
        line = QColor(color)
        line.setAlpha(90)
        painter.setPen(line)
        painter.drawLine(left, middle, text_left - gap, middle)
        painter.drawLine(text_left + width + gap, middle, right, middle)
        painter.setPen(color)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)

    # hit testing -------------------------------------------------------------------------

    def growing_rect(self, row: _Row, model: MessageListModel, rect: QRect) -> QRect:
        """The part of a streaming row that changes as text arrives (its end and footer)."""
        layout = self.layout(row, model)
        growing = [part.top for part in layout.parts if part.is_growing]
        top = growing[0] if growing else layout.content_top
        return QRect(rect.left(), rect.top() + top, rect.width(), rect.height() - top)

    def anchor_at(
        self, row: _Row, model: MessageListModel, point: QPoint
    ) -> tuple[str, list[str]] | None:
        """The link under ``point`` (relative to the row's top-left) and its part's code."""
        layout = self.layout(row, model)
        x = point.x() - ROW_MARGIN_X - BUBBLE_PAD
        for part in layout.parts:
            local = QPointF(x + self._offsets.get(part.key, 0.0), point.y() - part.top)
            if 0 <= local.y() <= part.document.size().height():
                href = part.document.documentLayout().anchorAt(local)
                if href:
                    return href, part.code_blocks
        return None

    def card_rects(self, row: _Row, model: MessageListModel) -> list[tuple[str, QRect]]:
        """The file cards of ``row`` (an image's thumbnail with its card) and where they
        are relative to the row's top-left: (attachment id, rectangle), in order."""
        if row.message is None or not model.attachments.get(row.message.id):
            return []
        found: dict[str, QRect] = {}
        for part in self.layout(row, model).parts:
            if not part.key or part.key[0] != "files":
                continue
            layout = part.document.documentLayout()
            block = part.document.begin()
            while block.isValid():
                href = _anchor_of(block)
                if href.startswith("attachment:"):
                    box = layout.blockBoundingRect(block)
                    lines = block.layout()
                    width = max(
                        (lines.lineAt(i).naturalTextWidth() for i in range(lines.lineCount())),
                        default=box.width(),
                    )
                    rect = QRect(
                        ROW_MARGIN_X + BUBBLE_PAD + math.floor(box.left()) - CARD_FOCUS_PAD,
                        part.top + math.floor(box.top()),
                        math.ceil(width) + 2 * CARD_FOCUS_PAD,
                        math.ceil(box.height()) + CARD_FOCUS_PAD,
                    )
                    key = href.split(":", 1)[1]
                    found[key] = found[key].united(rect) if key in found else rect
                block = block.next()
        return list(found.items())


def _anchor_of(block: QTextBlock) -> str:
    """The first link target in ``block`` ("" when it has none)."""
    fragments = block.begin()
    while not fragments.atEnd():
        text_format = fragments.fragment().charFormat()
        if text_format.isAnchor():
            return str(text_format.anchorHref())
        fragments += 1
    return ""


def _wrap_preformatted(document: QTextDocument) -> None:
    """Let the lines of code blocks (``<pre>``) wrap at the document's width, between
    words as prose does; their spaces and line breaks are kept."""
    block = document.begin()
    cursor = QTextCursor(document)
    while block.isValid():
        if block.blockFormat().nonBreakableLines():
            cursor.setPosition(block.position())
            wrapping = QTextBlockFormat()
            wrapping.setNonBreakableLines(False)
            cursor.mergeBlockFormat(wrapping)
        block = block.next()


@functools.lru_cache(maxsize=256)
def _blocks_of(chunk: Chunk) -> list[Chunk]:
    """The top-level blocks of ``chunk`` (a block continuing a code block that the
    previous chunk opened keeps saying so); never empty."""
    blocks = split_blocks(chunk.text, soft_limit=0) or [Chunk(chunk.text)]
    first = blocks[0]
    if chunk.opens_in_fence and not first.opens_in_fence:
        blocks[0] = Chunk(first.text, True)
    return [Chunk(block.text, block.opens_in_fence) for block in blocks]


def _chunk_renderer(
    chunk: Chunk, dark: bool, *, highlight: bool
) -> Callable[[], tuple[str, list[str]]]:
    def make() -> tuple[str, list[str]]:
        html, code_blocks = _chunk_html(chunk.text, chunk.opens_in_fence, dark, highlight)
        return html, list(code_blocks)

    return make


@functools.lru_cache(maxsize=512)
def _chunk_html(
    text: str, opens_in_fence: bool, dark: bool, highlight: bool
) -> tuple[str, tuple[str, ...]]:
    """The HTML of a chunk (whatever the width: when the view's width changes, as when
    its scroll bar appears under a growing answer, only the documents are made again)."""
    rendered = render_markdown(text, dark=dark, opens_in_fence=opens_in_fence, highlight=highlight)
    return rendered.html, tuple(rendered.code_blocks)


def _sources_of(message: Message) -> tuple[str, ...]:
    """The labels of the excerpts an answer was given (``Message.sources``, issue 14)."""
    return message.sources


#: How a card names the kind of a file, by media type.
KIND_LABELS = {
    "application/pdf": "PDF",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word",
    "text/html": "HTML",
    "text/markdown": "Markdown",
    "text/plain": "Text",
    "text/csv": "CSV",
    "application/json": "JSON",
}


def _kind_label(media_type: str) -> str:
    label = KIND_LABELS.get(media_type)
    if label is not None:
        return label
    major, _, minor = media_type.partition("/")
    if major == "image":
        return f"{minor.upper()} image" if minor else "Image"
    if major == "text":
        return "Text"
    return "File"


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _header(message: Message, streaming: bool) -> str:
    if message.role == "user":
        return "You"
    who = "Assistant"
    if message.model:
        who += f" · {message.model}"
    if streaming:
        who += " · answering…"
    return who


# --- view ----------------------------------------------------------------------------------


class MessageSelector(QTextBrowser):
    """The text of one message, selectable with the mouse and the keyboard.

    Only one exists per list: it is laid over the message open for selection (the
    delegate then lays that message's text out as the same single document and leaves it
    for the selector to draw). Read-only; links work as in the painted message; nothing is
    loaded. Esc leaves it.
    """

    def __init__(self, view: MessageListView) -> None:
        super().__init__(view.viewport())
        self._view = view
        self.message_id = ""
        self.code_blocks: list[str] = []
        self._document: ChatDocument | None = None
        self.setObjectName("messageSelector")
        self.setAccessibleName("Message text")
        self.setAccessibleDescription(
            "Select with the mouse or Shift and the arrow keys; Ctrl+C copies; Esc leaves."
        )
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setUndoRedoEnabled(False)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextBrowserInteraction
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.setLineWrapMode(QTextBrowser.LineWrapMode.FixedPixelWidth)
        self.setStyleSheet("QTextBrowser#messageSelector { background: transparent; }")
        self.viewport().setAutoFillBackground(False)
        self.anchorClicked.connect(self._follow)
        self.hide()

    def hold_message(self, message_id: str, document: ChatDocument, code_blocks: list[str]) -> None:
        """Hold ``document`` (the message's text), replacing the one held before."""
        self.message_id = message_id
        self.code_blocks = code_blocks
        self.setLineWrapColumnOrWidth(math.ceil(document.textWidth()))
        self.setDocument(document)
        self._document = document  # held here; the one before goes once replaced

    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        return None  # model output fetches nothing

    def _follow(self, url: QUrl) -> None:
        self._view.activate_link(self.message_id, url.toString(), self.code_blocks)

    def event(self, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Escape
        ):
            event.accept()  # Esc leaves the selection first (not the window's Esc: Stop)
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self._view.close_selection()
            self._view.setFocus()
            event.accept()
            return
        super().keyPressEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        self._view.wheelEvent(event)  # the list scrolls, not the message


class FileCardFocusWidget(QWidget):
    """The file card (or image thumbnail) that has the keyboard focus.

    One per list, laid over that card like ``MessageSelector`` over a message's text (the
    cards themselves are painted, not widgets). It draws the focus outline and carries the
    card's accessible name ("report.pdf, PDF, 2.1 MB"). Tab and Shift+Tab move between
    the cards in view (``MessageListView.focusNextPrevChild``); Enter or Space opens the
    file; the Menu key or Shift+F10 offers Open and Save as; Esc goes back to the messages.
    Mouse clicks go through to the list.
    """

    def __init__(self, view: MessageListView) -> None:
        super().__init__(view.viewport())
        self._view = view
        self.message_id = ""
        self.attachment_id = ""
        self.menu: QMenu | None = None
        self.setObjectName("fileCardFocus")
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAccessibleDescription(
            "Enter opens it; Shift+F10 or the Menu key: Open, Save as; Esc: back to the messages."
        )
        self.hide()

    def hold(self, message_id: str, file: Attachment) -> None:
        """Stand for ``file``, a card of message ``message_id``."""
        self.message_id = message_id
        self.attachment_id = file.id
        self.setAccessibleName(card_name(file.name, _kind_label(file.media_type), file.size))
        self.setToolTip(file.name)

    def _trigger(self, action: str) -> None:
        self._view.action_triggered.emit(f"{action}:{self.attachment_id}", self.message_id)

    def open_file(self) -> None:
        self._trigger("open-attachment")

    def card_menu(self) -> QMenu:
        """Open and Save as, for this card."""
        menu = QMenu(self)
        menu.setAccessibleName(f"{self.accessibleName()} actions")
        menu.addAction("&Open", self.open_file)
        menu.addAction("&Save as…", lambda: self._trigger("save-attachment"))
        return menu

    def show_menu(self) -> None:
        """Show the card's menu under it (non-blocking)."""
        if self.menu is not None:
            self.menu.close()
            self.menu.deleteLater()
        self.menu = self.card_menu()
        self.menu.popup(self.mapToGlobal(self.rect().bottomLeft()))

    def event(self, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.key() in _CARD_KEYS
        ):
            event.accept()  # the card's, not the window's (Esc: Stop)
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        shift = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.open_file()
        elif key == Qt.Key.Key_Menu or (key == Qt.Key.Key_F10 and shift):
            self.show_menu()
        elif key == Qt.Key.Key_Escape:
            self._view.leave_card()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        self.show_menu()
        event.accept()

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        if event.reason() not in (
            Qt.FocusReason.PopupFocusReason,
            Qt.FocusReason.ActiveWindowFocusReason,
        ):
            self.hide()  # the focus went elsewhere in the window

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pen = QPen(self.palette().color(QPalette.ColorRole.Highlight))
        pen.setWidth(2)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(1, 1, -1, -1), 4, 4)
        painter.end()


#: Keys a focused file card keeps from the window's shortcuts.
_CARD_KEYS = frozenset(
    {
        Qt.Key.Key_Escape,
        Qt.Key.Key_Return,
        Qt.Key.Key_Enter,
        Qt.Key.Key_Space,
        Qt.Key.Key_Menu,
        Qt.Key.Key_F10,
    }
)


class MessageListView(QListView):
    """The list: per-pixel scrolling, links in messages, older pages at the top."""

    painted = Signal()
    #: End or Ctrl+End in a window that does not reach the newest message.
    newest_requested = Signal()
    action_triggered = Signal(str, str)  # action name, message id
    context_menu_requested = Signal(QPoint, str)  # global position, message id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message_model = MessageListModel(self)
        self.setModel(self.message_model)
        self.message_delegate = MessageDelegate(self)
        self.setItemDelegate(self.message_delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setUniformItemSizes(False)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMouseTracking(True)
        self.setWordWrap(True)
        self.verticalScrollBar().setSingleStep(24)
        self.setAccessibleName("Messages")
        self.placeholder = "Send a message to start the conversation."
        self._measure_timer = QTimer(self)
        self._measure_timer.setInterval(0)
        self._measure_timer.timeout.connect(self._measure_slice)
        self._measure_queue: list[str] = []
        # Rows measured off screen are laid out together, at most every LAYOUT_BATCH_MS:
        # a layout goes through every loaded row, far more than a slice of measuring.
        self._layout_due = False
        self._layout_timer = QTimer(self)
        self._layout_timer.setSingleShot(True)
        self._layout_timer.setInterval(LAYOUT_BATCH_MS)
        self._layout_timer.timeout.connect(self._apply_due_layout)
        self._last_width = -1
        #: Keep the end in view (see ``follows_end``); scrolling by the user decides it.
        self.follow_end = True
        self.verticalScrollBar().rangeChanged.connect(self._range_changed)
        self.message_delegate.reset_caches()
        self.selector = MessageSelector(self)
        self.card_focus = FileCardFocusWidget(self)
        self._dragging_into_selector = False
        self._place_timer = QTimer(self)
        self._place_timer.setSingleShot(True)
        self._place_timer.setInterval(0)
        self._place_timer.timeout.connect(self._place_selection)
        model = self.message_model
        model.modelReset.connect(self.close_selection)
        model.dataChanged.connect(self._selection_data_changed)

    # selecting text ----------------------------------------------------------------------

    def selected_message(self) -> str | None:
        """The id of the message open for selection, if one is."""
        key = self.message_delegate.selecting
        return key if key is not None and self.selector.isVisible() else None

    def open_selection(self, number: int) -> bool:
        """Make the text of row ``number`` selectable (closing any other); False when the
        row has no finished message text."""
        model = self.message_model
        delegate = self.message_delegate
        row = model.row(number)
        if row.message is None or model.is_streaming(row) or not row.message.content:
            return False
        if delegate.selecting == row.key and self.selector.isVisible():
            return True
        self.close_selection()
        delegate.selecting = row.key
        found = delegate.selection_part(row, model)  # (measures the row as it now is)
        if found is None:
            delegate.selecting = None
            return False
        self.keep_position(lambda: None)
        part, html = found
        self.selector.hold_message(row.key, delegate.new_document(html), part.code_blocks)
        self.selector.show()
        self._place_selection()
        return self.selector.isVisible()

    def close_selection(self) -> None:
        """Paint the message open for selection again (its selection is dropped)."""
        self._dragging_into_selector = False
        if self.message_delegate.selecting is None:
            return
        had_focus = self.selector.hasFocus()
        key, self.message_delegate.selecting = self.message_delegate.selecting, None
        model = self.message_model
        number = model.row_number(key)
        if number is not None:
            self.message_delegate.layout(model.row(number), model)  # painted as chunks again
        self.selector.hide()
        self.selector.clear()
        if had_focus:
            self.setFocus()
        self.keep_position(lambda: None)
        self.viewport().update()

    def _place_selection(self) -> None:
        """Lay the selector over its message; close it once the message is off screen."""
        key = self.message_delegate.selecting
        if key is None:
            return
        model = self.message_model
        number = model.row_number(key)
        found = None
        if number is not None:
            found = self.message_delegate.selection_part(model.row(number), model)
        if number is None or found is None:
            self.close_selection()
            return
        part = found[0]
        rect = self.visualRect(model.index(number))
        if not rect.intersects(self.viewport().rect()):
            self.close_selection()  # scrolled out
            return
        size = part.document.size()
        geometry = QRect(
            rect.left() + ROW_MARGIN_X + BUBBLE_PAD,
            rect.top() + part.top,
            # Within the message: code that does not wrap scrolls inside the selector.
            min(math.ceil(size.width()), self.message_delegate.content_width()),
            math.ceil(size.height()),
        )
        if self.selector.geometry() != geometry:
            self.selector.setGeometry(geometry)

    def _selection_data_changed(self, first: QModelIndex, last: QModelIndex) -> None:
        key = self.message_delegate.selecting
        if key is None:
            return
        number = self.message_model.row_number(key)
        if number is None or first.row() <= number <= last.row():
            self.close_selection()  # the message changed

    def _forward_to_selector(self, event: QMouseEvent) -> None:
        target = self.selector.viewport()
        local = QPointF(target.mapFrom(self.viewport(), event.position().toPoint()))
        forwarded = QMouseEvent(
            event.type(),
            local,
            event.globalPosition(),
            event.button(),
            event.buttons(),
            event.modifiers(),
        )
        QApplication.sendEvent(target, forwarded)

    # file cards from the keyboard ----------------------------------------------------------

    def cards_shown(self) -> list[tuple[int, str, QRect]]:
        """The file cards in view, in order: (row number, attachment id, rectangle in the
        viewport)."""
        model = self.message_model
        area = self.viewport().rect()
        if model.rowCount() == 0:
            return []
        first = self.indexAt(QPoint(1, area.top() + 1))
        last = self.indexAt(QPoint(1, area.bottom() - 1))
        start = first.row() if first.isValid() else 0
        end = last.row() if last.isValid() else model.rowCount() - 1
        shown: list[tuple[int, str, QRect]] = []
        for number in range(start, end + 1):
            corner = self.visualRect(model.index(number)).topLeft()
            for attachment_id, rect in self.message_delegate.card_rects(model.row(number), model):
                placed = rect.translated(corner)
                if placed.intersects(area):
                    shown.append((number, attachment_id, placed))
        return shown

    def _card_rect(self, number: int, attachment_id: str) -> QRect | None:
        model = self.message_model
        corner = self.visualRect(model.index(number)).topLeft()
        for key, rect in self.message_delegate.card_rects(model.row(number), model):
            if key == attachment_id:
                return rect.translated(corner)
        return None

    def focus_card(self, number: int, attachment_id: str) -> bool:
        """Give the keyboard focus to a file card of row ``number`` (scrolled into view;
        its message becomes the current one). False when the row has no such card."""
        model = self.message_model
        row = model.row(number)
        files = model.attachments.get(row.message.id, []) if row.message else []
        file = next((f for f in files if f.id == attachment_id), None)
        if row.message is None or file is None:
            return False
        bar = self.verticalScrollBar()
        value = bar.value()
        self.setCurrentIndex(model.index(number))
        bar.setValue(value)  # (a tall message must not jump to its top)
        rect = self._card_rect(number, attachment_id)
        if rect is None:
            return False
        area = self.viewport().rect()
        if rect.bottom() > area.bottom():
            bar.setValue(bar.value() + rect.bottom() - area.bottom() + CARD_FOCUS_PAD)
        elif rect.top() < area.top():
            bar.setValue(bar.value() - (area.top() - rect.top()) - CARD_FOCUS_PAD)
        self.close_selection()
        card = self.card_focus
        card.hold(row.message.id, file)
        card.show()
        self._place_card()
        card.setFocus(Qt.FocusReason.TabFocusReason)
        card.update()
        return True

    def leave_card(self) -> None:
        """The messages get the keyboard focus back from a file card."""
        had_focus = self.card_focus.hasFocus()
        self.card_focus.hide()
        if had_focus:
            self.setFocus(Qt.FocusReason.OtherFocusReason)

    def _place_card(self) -> None:
        """Keep the focused card's outline over its card; gone or scrolled out: leave it."""
        card = self.card_focus
        if not card.isVisible():
            return
        number = self.message_model.row_number(card.message_id)
        rect = self._card_rect(number, card.attachment_id) if number is not None else None
        if rect is None or not rect.intersects(self.viewport().rect()):
            self.leave_card()
            return
        if card.geometry() != rect:
            card.setGeometry(rect)

    def focusNextPrevChild(self, next: bool) -> bool:
        """Tab from the messages goes through the file cards in view, then on."""
        card = self.card_focus
        if card.isVisible() and card.hasFocus():
            keys = [(number, key) for number, key, _ in self.cards_shown()]
            here = (self.message_model.row_number(card.message_id), card.attachment_id)
            if here in keys:
                step = keys.index(here) + (1 if next else -1)
                if 0 <= step < len(keys) and self.focus_card(*keys[step]):
                    return True
            self.leave_card()
            self.setFocus(Qt.FocusReason.BacktabFocusReason)
            return super().focusNextPrevChild(True) if next else True
        if next and (self.hasFocus() or self.selector.hasFocus()):
            for number, key, _ in self.cards_shown():
                if self.focus_card(number, key):
                    return True
        return super().focusNextPrevChild(next)

    # positions ---------------------------------------------------------------------------

    def is_at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def follows_end(self) -> bool:
        """Whether the view keeps the end of the chat in view as rows change: since a chat
        was opened or a message sent, until the user scrolls away from the end. Never in
        a window that does not reach the newest message (its end is not the chat's)."""
        if self.message_model.has_newer:
            return False
        return self.follow_end or self.is_at_bottom()

    def fetch_near_edges(self) -> None:
        """Ask for the older (newer) page when the top (bottom) is near: within two
        screens."""
        bar = self.verticalScrollBar()
        reach = 2 * self.viewport().height()
        model = self.message_model
        if bar.value() <= reach and model.can_fetch_older():
            model.fetch_older()
        if bar.value() >= bar.maximum() - reach and model.can_fetch_newer():
            model.fetch_newer()

    def keep_position(self, change: Callable[[], None]) -> None:
        """Apply ``change`` to the model, keeping the rows on screen where they were
        (or keeping the end in view if it was)."""
        model = self.message_model
        at_bottom = self.follows_end() or model.rowCount() == 0
        anchor_key: str | None = None
        anchor_top = 0
        if not at_bottom:
            index = self.indexAt(QPoint(4, 4))
            if index.isValid():
                anchor_key = model.row(index.row()).key
                anchor_top = self.visualRect(index).top()
        change()
        self.doItemsLayout()
        if at_bottom:
            self.scrollToBottom()
            return
        if anchor_key is not None:
            number = model.row_number(anchor_key)
            if number is not None:
                rect = self.visualRect(model.index(number))
                bar = self.verticalScrollBar()
                bar.setValue(bar.value() + rect.top() - anchor_top)

    def _range_changed(self, _minimum: int, maximum: int) -> None:
        # Qt lays rows out again on its own schedule too (a row's height measured, a
        # delayed layout): while following, the end stays in view whatever moved it.
        if self.follow_end:
            self.verticalScrollBar().setValue(maximum)

    def measure_visible_from_bottom(self) -> None:
        """Measure the rows that fill the screen from the end (before the first paint)."""
        model = self.message_model
        delegate = self.message_delegate
        budget = self.viewport().height() + 200
        for number in range(model.rowCount() - 1, -1, -1):
            height, _ = delegate.measure(model.row(number), model)
            budget -= height
            if budget <= 0:
                break

    def request_measure(self) -> None:
        """Measure rows whose heights are still estimates, a few per event-loop turn,
        nearest the screen first (so rows are ready before scrolling reaches them)."""
        model = self.message_model
        delegate = self.message_delegate
        count = model.rowCount()
        first = self.indexAt(QPoint(4, 4)).row()
        last = self.indexAt(QPoint(4, self.viewport().height() - 4)).row()
        first = first if first >= 0 else count - 1
        last = last if last >= 0 else count - 1
        pending = [
            (0 if first <= n <= last else min(abs(n - first), abs(n - last)), n)
            for n in range(count)
            if delegate.known_height(model.row(n), model) is None
        ]
        pending.sort()
        self._measure_queue = [model.row(n).key for _, n in pending]
        if pending and not self._measure_timer.isActive():
            self._measure_timer.start()

    def _measure_slice(self) -> None:
        model = self.message_model
        delegate = self.message_delegate
        deadline = time.perf_counter() + MEASURE_SLICE_SECONDS
        changed = on_screen = False
        first = self.indexAt(QPoint(4, 4)).row()
        last = self.indexAt(QPoint(4, self.viewport().height() - 4)).row()
        while self._measure_queue:  # at least one row a slice, however busy the machine
            number = model.row_number(self._measure_queue.pop(0))
            if (
                number is not None
                and not model.is_streaming(model.row(number))
                and delegate.measure(model.row(number), model)[1]
            ):
                changed = True
                on_screen |= first < 0 or last < 0 or first <= number <= last
            if time.perf_counter() >= deadline:
                break
        if not self._measure_queue:
            self._measure_timer.stop()
        if on_screen or ((changed or self._layout_due) and not self._measure_queue):
            self._apply_due_layout(force=True)
        elif changed:
            self._layout_due = True
            if not self._layout_timer.isActive():
                self._layout_timer.start()

    def _apply_due_layout(self, *, force: bool = False) -> None:
        """Lay the rows out again for heights measured off screen (the rows on screen
        stay where they are)."""
        if not (force or self._layout_due):
            return
        self._layout_due = False
        self._layout_timer.stop()
        self.keep_position(lambda: None)

    # Qt overrides ------------------------------------------------------------------------

    def verticalScrollbarValueChanged(self, value: int) -> None:
        # Growing content leaves the value alone; a scroll away from the end (the user's,
        # or a jump to a message) moves it: following stops, and resumes at the end.
        self.follow_end = self.is_at_bottom() and not self.message_model.has_newer
        if self.message_delegate.selecting is not None:
            self._place_timer.start()  # once the rows are laid out
        # Not calling the base class: its fetchMore would fetch on every visible last row.
        self.fetch_near_edges()

    def resizeEvent(self, event: QResizeEvent) -> None:
        width = event.size().width()
        if width != self._last_width:
            self._last_width = width
            self.close_selection()  # its layout was for the old width
            self.keep_position(self.message_delegate.reset_width)
            self.request_measure()
        super().resizeEvent(event)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.FontChange):
            if self.message_delegate.selecting is not None:
                self.close_selection()
            self.message_delegate.reset_caches()
            self.keep_position(lambda: None)
            self.request_measure()
        super().changeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if self.message_model.rowCount() == 0 and self.placeholder:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                self.viewport().rect().adjusted(24, 24, -24, -24),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.placeholder,
            )
            painter.end()
        if self.message_delegate.selecting is not None:
            self._place_selection()
        self._place_card()
        self.painted.emit()

    def _hit(self, pos: QPoint) -> tuple[_Row, str, list[str]] | None:
        index = self.indexAt(pos)
        if not index.isValid():
            return None
        row = self.message_model.row(index.row())
        if row.message is None and row.key != NOTICE_KEY:
            return None
        local = pos - self.visualRect(index).topLeft()
        found = self.message_delegate.anchor_at(row, self.message_model, local)
        if found is None:
            return None
        return row, found[0], found[1]

    def action_tip_at(self, pos: QPoint) -> str | None:
        """The tooltip of the footer action at ``pos`` (viewport coordinates), if any."""
        hit = self._hit(pos)
        if hit is None or not hit[1].startswith("action:"):
            return None
        return ACTION_TIPS.get(hit[1].split(":", 1)[1])

    def viewportEvent(self, event: QEvent) -> bool:
        # The footer's links are painted, not widgets: their tooltips are shown from here.
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            tip = self.action_tip_at(event.pos())
            if tip:
                QToolTip.showText(event.globalPos(), tip, self.viewport())
                return True
        return super().viewportEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        # A press on a link (a code block's Copy, a footer action) is the link's: it must
        # not make the row current, which scrolls a tall message to its top.
        if event.button() == Qt.MouseButton.LeftButton and self._hit(event.position().toPoint()):
            event.accept()
            return
        value = self.verticalScrollBar().value()
        super().mousePressEvent(event)
        # Clicking into a message taller than the pane must not jump to its top either.
        self.verticalScrollBar().setValue(value)
        if event.button() != Qt.MouseButton.LeftButton:
            return
        # A click into a message opens its text for selection; the same press (and the
        # drag that follows it) selects in it.
        position = event.position().toPoint()
        index = self.indexAt(position)
        if not index.isValid() or not self.open_selection(index.row()):
            self.close_selection()
            return
        self.selector.setFocus(Qt.FocusReason.MouseFocusReason)
        if self.selector.geometry().contains(position):
            self._dragging_into_selector = True
            self._forward_to_selector(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        # Sideways (a horizontal swipe, or Shift+wheel) over a code block wider than the
        # message scrolls that block when code does not wrap.
        angle = event.angleDelta()
        sideways = angle.x() or (
            angle.y() if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 0
        )
        position = event.position().toPoint()
        index = self.indexAt(position)
        if sideways and index.isValid():
            row = self.message_model.row(index.row())
            local = position - self.visualRect(index).topLeft()
            if self.message_delegate.scroll_part(row, self.message_model, local, -sideways / 2):
                self.viewport().update(self.visualRect(index))
                event.accept()
                return
        super().wheelEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._dragging_into_selector and self.selector.isVisible():
            self._forward_to_selector(event)
            return
        hit = self._hit(event.position().toPoint())
        cursor = Qt.CursorShape.PointingHandCursor if hit else Qt.CursorShape.ArrowCursor
        self.viewport().setCursor(cursor)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._dragging_into_selector:
            self._dragging_into_selector = False
            if self.selector.isVisible():
                self._forward_to_selector(event)
            return
        if event.button() == Qt.MouseButton.LeftButton:
            hit = self._hit(event.position().toPoint())
            if hit is not None:
                row, href, code_blocks = hit
                self.activate_link(row.message.id if row.message else "", href, code_blocks)
                return
        super().mouseReleaseEvent(event)

    def activate_link(self, message_id: str, href: str, code_blocks: list[str]) -> None:
        """Follow a link of a message: a code block's Copy, a footer action, or a web link."""
        if href.startswith("copy:"):
            number = int(href.split(":", 1)[1])
            if 0 <= number < len(code_blocks):
                QGuiApplication.clipboard().setText(code_blocks[number])
                self.action_triggered.emit("copied-code", message_id)
        elif href.startswith("action:"):
            self.action_triggered.emit(href.split(":", 1)[1], message_id)
        elif href.startswith("attachment:"):
            # Opens in the in-window viewer (memory only); Save as is in the card's menu.
            self.action_triggered.emit("open-attachment:" + href.split(":", 1)[1], message_id)
        elif href.lower().startswith(("http://", "https://", "mailto:")):
            QDesktopServices.openUrl(QUrl(href))

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        index = self.indexAt(event.pos())
        if not index.isValid():
            index = self.currentIndex()
        if index.isValid():
            row = self.message_model.row(index.row())
            if row.message is not None:
                self.context_menu_requested.emit(event.globalPos(), row.message.id)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        index = self.currentIndex()
        if (
            index.isValid()
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_F2)
            and self.open_selection(index.row())
        ):
            # The current message's text, to select with Shift and the arrow keys.
            self.selector.setFocus(Qt.FocusReason.ShortcutFocusReason)
            event.accept()
            return
        if index.isValid() and event.matches(QKeySequence.StandardKey.Copy):
            row = self.message_model.row(index.row())
            if row.message is not None:
                self.action_triggered.emit("copy", row.message.id)
                return
        if event.key() == Qt.Key.Key_End and self.message_model.has_newer:
            # The newest message is not loaded: the chat's newest page replaces the window.
            self.newest_requested.emit()
            event.accept()
            return
        super().keyPressEvent(event)


# --- the widget ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Turn:
    chat_id: str
    stream: _Stream | None = None
    task: asyncio.Task[None] | None = None
    #: The chat's tier, and whether its answer is read aloud as it arrives.
    tier: Tier | None = None
    read_aloud: bool = False
    #: The speaker's feed of the answer being read as it streams.
    feed: AnswerFeed | None = None


class ChatViewWidget(QWidget):
    """One chat's messages and the turns that add to them."""

    chat_loaded = Signal(object)  # Chat, whenever the open chat's record is (re)read
    turn_started = Signal(object)  # TurnStarted of the open chat
    streaming_changed = Signal(bool)  # whether the open chat has a turn running
    edit_requested = Signal(str, str)  # message id, its text
    #: A search hit opened with ``open_chat(..., around=)``: its id, and whether it is on
    #: the thread shown (False: it is in another version; the newest messages are shown).
    hit_shown = Signal(str, bool)
    #: A send or edit failed before anything was saved: the text to give back to the
    #: composer, and the kind of error (``PolicyRefusedError``, ``ContextOverflowError``...).
    send_refused = Signal(str, str)
    #: The user asked for the fix a failure offers: "choose-model", "shorten", "resend"
    #: or "voice-settings".
    fix_requested = Signal(str)
    status_message = Signal(str)
    error_message = Signal(str)  # a failure: shown until dismissed
    activity = Signal()
    #: The files (``NewAttachment``) of a send refused before anything was saved.
    attachments_refused = Signal(list)
    files_dropped = Signal(list)  # Paths dropped on the messages: to attach

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session = session
        self.setObjectName("chatView")
        self.banner = QLabel(EPHEMERAL_BANNER)
        self.banner.setObjectName("ephemeralBanner")
        self.banner.setAccessibleName("Ephemeral chat notice")
        self.banner.setWordWrap(True)
        self.banner.setContentsMargins(12, 6, 12, 6)
        self.banner.setAutoFillBackground(True)
        self.banner.hide()
        self.list = MessageListView(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.list, 1)
        self.model = self.list.message_model
        self.model.older_requested.connect(self._load_older)
        self.model.newer_requested.connect(self._load_newer)
        self.list.newest_requested.connect(self.scroll_to_newest)
        self.list.action_triggered.connect(self._on_action)
        self.list.context_menu_requested.connect(self._show_menu)
        self.chat: Chat | None = None
        self._turns: dict[str, _Turn] = {}
        self._generation = 0
        self._reload_pending = False
        #: A pending reload may bring new messages (not only the chat's record changed).
        self._reload_messages = False
        self._repaint = QTimer(self)
        self._repaint.setInterval(REPAINT_MS)
        self._repaint.timeout.connect(self._flush_stream)
        self._painted_length = -1
        self._is_ephemeral = False
        self._wanted: str | None = None
        #: Longest answer to ask for (None: the model's own limit).
        self.max_tokens: int | None = None
        self.setAcceptDrops(True)
        self.list.message_delegate.thumbnail_wanted.connect(
            self._load_thumbnail, Qt.ConnectionType.QueuedConnection
        )
        self._thumbnails_loading: set[str] = set()
        #: Gives the window's speaker (made when first needed); None: no reading aloud.
        self._speaker_source: Callable[[], Speaker] | None = None
        self._speaker: Speaker | None = None

    # state -------------------------------------------------------------------------------

    @property
    def chat_id(self) -> str | None:
        """The chat shown (or being opened)."""
        return self._wanted

    def is_streaming(self, chat_id: str | None = None) -> bool:
        """Whether a turn is running in ``chat_id`` (default: the open chat)."""
        chat_id = chat_id or self.chat_id
        return chat_id is not None and chat_id in self._turns

    def clear(self) -> None:
        """Stop every turn and drop all messages and cached renderings."""
        for turn in list(self._turns.values()):
            self._close_feed(turn, finished=False)
            if turn.task is not None:
                turn.task.cancel()
        # Nothing of a cleared chat is heard any more (the window closes the speaker on
        # lock); what was read is forgotten here.
        if self._speaker is not None:
            self._speaker.stop()
        self._forget_speaker()
        delegate = self.list.message_delegate
        delegate.reading.clear()
        delegate.reading_errors.clear()
        self._turns.clear()
        self._generation += 1
        self._thumbnails_loading = set()  # loads still running are dropped when done
        self._wanted = None
        self._repaint.stop()
        self.chat = None
        self.model.clear()
        self.list.message_delegate.reset_caches()
        self._set_ephemeral(False)
        self.streaming_changed.emit(False)

    # opening and reloading ---------------------------------------------------------------

    def open_chat(self, chat_id: str | None, *, around: str | None = None) -> None:
        """Show ``chat_id``'s newest messages (None: show nothing); with ``around`` (a
        search hit), a window of the thread around that message instead, scrolled to it
        and made the current row (``hit_shown`` says whether it was on the thread)."""
        if chat_id == self._wanted and chat_id is not None and around is None:
            return
        same = chat_id is not None and chat_id == self._wanted == self.model.chat_id
        self._generation += 1
        self._wanted = chat_id
        if same:
            self.list.close_selection()  # its message may not be in the window
        else:
            self._painted_length = -1
            self._repaint.stop()
        if chat_id is None:
            self.chat = None
            self.model.clear()
            self._set_ephemeral(False)
            self.streaming_changed.emit(False)
            self.chat_loaded.emit(None)
            return
        self._load(chat_id, PAGE_SIZE, opening=not same, around=around)

    def scroll_to_newest(self) -> None:
        """Show the newest message (End, Ctrl+End): the chat's newest page is read first
        when a window around a search hit is shown."""
        if self.chat_id is None or self.model.chat_id != self.chat_id:
            return
        if self.model.has_newer:
            self._load(self.chat_id, PAGE_SIZE, opening=False, jump=True, current=True)
            return
        self.list.follow_end = True
        self.list.scrollToBottom()
        self._set_current_to_last()

    def _set_current_to_last(self) -> None:
        for number in range(self.model.rowCount() - 1, -1, -1):
            if self.model.row(number).message is not None:
                self.list.setCurrentIndex(self.model.index(number))
                return

    def _jump_to_newest(self) -> None:
        """Replace a window that does not reach the newest message by the newest page
        (before a turn adds to the chat: nothing new is put under an old window)."""
        if self.chat_id is not None and self.model.has_newer:
            self.list.close_selection()
            self._load(self.chat_id, PAGE_SIZE, opening=False, jump=True)

    def scroll_to_message(self, message_id: str) -> bool:
        """Scroll the loaded message ``message_id`` to the middle of the view and make it
        the current row (a search hit opened); False when it is not loaded."""
        number = self.model.row_number(message_id)
        if number is None:
            return False
        # Real heights for the rows that will fill the screen around it (a true place),
        # and no more: each costs a Markdown rendering before the first paint.
        delegate = self.list.message_delegate
        model = self.model
        height, _ = delegate.measure(model.row(number), model)
        need = max(0, (self.list.viewport().height() - height) // 2) + ROW_MARGIN_Y
        filled, near = 0, number - 1
        while near >= 0 and filled < need:
            filled += delegate.measure(model.row(near), model)[0]
            near -= 1
        filled, near = 0, number + 1
        while near < model.rowCount() and filled < need:
            filled += delegate.measure(model.row(near), model)[0]
            near += 1
        self.list.doItemsLayout()
        index = self.model.index(number)
        self.list.follow_end = False
        self.list.setCurrentIndex(index)
        self.list.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        self.list.request_measure()
        return True

    def reload(self, *, messages: bool = True) -> None:
        """Re-read the open chat (after a change), updating only the rows that differ;
        ``messages`` False: only the chat's record changed (title, settings, tier)."""
        self._reload_messages |= messages
        if self.chat_id is None or self._reload_pending:
            return
        self._reload_pending = True
        QTimer.singleShot(0, self._reload_now)

    def _reload_now(self) -> None:
        self._reload_pending = False
        messages, self._reload_messages = self._reload_messages, False
        if self.chat_id is not None:
            opening = self.model.chat_id != self.chat_id
            if not opening and self.model.has_newer:
                if messages:
                    # A window around a search hit: new messages belong at the newest
                    # end, which is not loaded; the newest page replaces the window.
                    self._jump_to_newest()
                else:
                    self._reload_chat_record()
                return
            loaded = len(self.model.messages) if not opening else 0
            self._load(self.chat_id, max(PAGE_SIZE, loaded), opening=opening)

    def _reload_chat_record(self) -> None:
        """Re-read only the open chat's record (the window shown stays as it is)."""
        chat_id = self.chat_id
        generation = self._generation
        if chat_id is None:
            return

        def done(chat: Chat) -> None:
            if generation != self._generation or chat.id != self.chat_id:
                return
            previous, self.chat = self.chat, chat
            self._set_ephemeral(chat.tier == Tier.EPHEMERAL)
            if _settings_of(chat) != _settings_of(previous):
                self.chat_loaded.emit(chat)

        tasks.start(self._session.service.chat(chat_id), on_done=done, on_error=self._on_load_error)

    def _load(
        self,
        chat_id: str,
        limit: int,
        *,
        opening: bool,
        around: str | None = None,
        jump: bool = False,
        current: bool = False,
    ) -> None:
        """Read the chat and show it: its newest ``limit`` messages, or the window around
        message ``around``; ``jump`` scrolls to the end (``current``: and makes the last
        message the current row)."""
        generation = self._generation
        with_length = chat_id in self._turns or (not opening and self.model._marker_at is not None)
        service = self._session.service

        def done(result: tuple[Chat, ThreadPage, int | None, dict[str, list[Attachment]]]) -> None:
            if generation != self._generation:
                return
            chat, page, length, files = result
            self.model.attachments = files
            self._show(chat, page, length, opening=opening, around=around, jump=jump)
            if current:
                self._set_current_to_last()

        async def read(
            reading: Awaitable[tuple[Chat, ThreadPage, int | None]],
        ) -> tuple[Chat, ThreadPage, int | None, dict[str, list[Attachment]]]:
            # The page and the attachments of the chat come together: no row grows later.
            chat, page, length = await reading
            return chat, page, length, await self._attachments_of(chat_id)

        if around is None:
            tasks.start(
                read(service.open_chat(chat_id, limit=limit, with_length=with_length)),
                on_done=done,
                on_error=self._on_load_error,
            )
            return

        async def read_around() -> tuple[Chat, ThreadPage, int | None]:
            half = limit // 2
            chat, page = await service.open_around(chat_id, around, older=half, newer=half)
            return chat, page, None

        tasks.start(read(read_around()), on_done=done, on_error=self._on_load_error)

    async def _attachments_of(self, chat_id: str) -> dict[str, list[Attachment]]:
        """The attachments of every message of ``chat_id`` (one query)."""
        return await self._session.service.attachments(chat_id)

    def _load_thumbnail(self, attachment_id: str) -> None:
        """Read an image attachment's bytes and make its thumbnail (in memory only)."""
        delegate = self.list.message_delegate
        if attachment_id in self._thumbnails_loading or delegate.has_thumbnail(attachment_id):
            return
        # Asked for (queued) before a lock or another chat: nothing to read any more.
        if not self._session.is_unlocked or self.attachment(attachment_id) is None:
            return
        loading = self._thumbnails_loading
        loading.add(attachment_id)
        service = self._session.service

        def done(data: bytes) -> None:
            loading.discard(attachment_id)
            if loading is not self._thumbnails_loading:
                return  # locked meanwhile (``clear``)
            image = QImage.fromData(data)
            if not image.isNull() and (
                image.width() > THUMB_MAX_PX or image.height() > THUMB_MAX_PX
            ):
                image = image.scaled(
                    THUMB_MAX_PX,
                    THUMB_MAX_PX,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            delegate.set_thumbnail(attachment_id, image)
            if not image.isNull():
                self.list.keep_position(lambda: None)  # the row is laid out with it
                self.list.viewport().update()

        def failed(error: BaseException) -> None:
            loading.discard(attachment_id)
            log.info("no thumbnail for an attachment: %s", type(error).__name__)
            delegate.set_thumbnail(attachment_id, None)

        tasks.start(
            service.attachment_data(attachment_id, max_bytes=THUMB_MAX_BYTES),
            on_done=done,
            on_error=failed,
        )

    def attachment(self, attachment_id: str) -> Attachment | None:
        """The loaded attachment ``attachment_id``."""
        for files in self.model.attachments.values():
            for file in files:
                if file.id == attachment_id:
                    return file
        return None

    def save_attachment(self, attachment_id: str) -> None:
        """Ask where to save a copy of an attachment, then save it there."""
        file = self.attachment(attachment_id)
        if file is None:
            return
        chosen = choose_save_path(self, file.name)
        if not chosen:
            return
        name = file.name

        def saved(_: None) -> None:
            self.status_message.emit(f"Saved {name}")

        def failed(error: BaseException) -> None:
            self.error_message.emit(
                f"Could not save {name}: {error} Choose another folder and try again."
            )

        tasks.start(
            self._session.service.save_attachment(attachment_id, Path(chosen)),
            on_done=saved,
            on_error=failed,
        )

    def open_attachment(self, attachment_id: str) -> AttachmentViewerDialog | None:
        """Show an attachment in a window of its own (an image, or the text read from the
        file), decrypted into memory only; returned for tests."""
        file = self.attachment(attachment_id)
        if file is None:
            return None
        dialog = AttachmentViewerDialog(file.name, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.save_requested.connect(functools.partial(self.save_attachment, attachment_id))
        session = self._session
        is_image = file.media_type.startswith("image/")

        async def read() -> bytes | str:
            data = await session.service.attachment_data(attachment_id, max_bytes=file.size)
            if is_image:
                return data
            from app.attachments import extract

            extracted = await session.runner.blocking(extract, file.name, data)
            return extracted.text

        def shown(content: bytes | str) -> None:
            if isinstance(content, bytes):
                dialog.show_image(QImage.fromData(content))
            else:
                dialog.show_text(content)

        def failed(error: BaseException) -> None:
            if isinstance(error, HushchatError):  # (a damaged file, say)
                log.info("attachment not shown: %s", type(error).__name__)
            else:
                log.warning("attachment not shown", exc_info=error)
            dialog.show_problem(
                f"{file.name} cannot be shown here: {error} Save a copy to open it elsewhere."
            )

        dialog.open()
        tasks.start_for(dialog, read(), shown, failed)
        return dialog

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if files_of(event.mimeData()):
            event.acceptProposedAction()
            return
        super().dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        files = files_of(event.mimeData())
        if files:
            event.acceptProposedAction()
            self.files_dropped.emit(files)
            return
        super().dropEvent(event)

    def _on_load_error(self, error: BaseException) -> None:
        self.error_message.emit(f"Could not read the chat: {error}")

    def _show(
        self,
        chat: Chat,
        page: ThreadPage,
        length: int | None,
        *,
        opening: bool,
        around: str | None = None,
        jump: bool = False,
    ) -> None:
        previous, self.chat = self.chat, chat
        self._set_ephemeral(chat.tier == Tier.EPHEMERAL)
        delegate = self.list.message_delegate
        # A window's last answer is not the chat's: nothing to regenerate there.
        delegate.last_regenerable = None if page.has_newer else _last_regenerable(page.messages)
        turn = self._turns.get(chat.id)
        hit_found: bool | None = None
        if opening or jump or around is not None:
            self.list.follow_end = True
            self.model.show_page(chat.id, page, thread_length=length)
            hit_found = around is not None and self.scroll_to_message(around)
            if not hit_found:
                self.list.follow_end = True
                self.list.measure_visible_from_bottom()
                self.list.doItemsLayout()
                self.list.scrollToBottom()
        else:

            def update() -> None:
                self.model.show_page(chat.id, page, thread_length=length)
                if turn is None and self.model.stream is not None:
                    # The turn ended: its saved answer replaces the streamed text in the
                    # same layout pass, so the row never shrinks to the empty message it
                    # was while streaming (that left the pane blank after Stop).
                    self.model.start_stream(None)

            self.list.keep_position(update)
        if turn is not None and turn.stream is not None:
            self.list.keep_position(lambda: self.model.start_stream(turn.stream))
            self._repaint.start()
        self.list.request_measure()
        if opening or _settings_of(chat) != _settings_of(previous):
            self.chat_loaded.emit(chat)
        if opening:
            self.streaming_changed.emit(turn is not None)
        if around is not None:
            self.hit_shown.emit(around, bool(hit_found))

    def _load_older(self, before: str) -> None:
        chat_id = self.model.chat_id
        if chat_id is None or chat_id != self._wanted:
            return
        generation = self._generation

        def done(page: ThreadPage) -> None:
            if generation != self._generation:
                self.model.older_fetch_failed()  # another chat or window: may fetch again
                return
            self.list.keep_position(lambda: self.model.add_older(chat_id, before, page))
            self.list.request_measure()

        def failed(error: BaseException) -> None:
            self.model.older_fetch_failed()
            self._on_load_error(error)

        tasks.start(
            self._session.service.older_messages(chat_id, before, limit=PAGE_SIZE),
            on_done=done,
            on_error=failed,
        )

    def _load_newer(self, after: str) -> None:
        """Append the page after ``after`` (the newest loaded message of a window)."""
        chat_id = self.model.chat_id
        if chat_id is None or chat_id != self._wanted:
            self.model.newer_fetch_failed()
            return
        generation = self._generation

        def done(page: ThreadPage) -> None:
            if generation != self._generation:
                self.model.newer_fetch_failed()
                return
            model = self.model
            # Rows go in below: those on screen stay where they are (never following
            # the end here: that would scroll on and fetch the next page at once).
            self.list.keep_position(lambda: model.add_newer(chat_id, after, page))
            delegate = self.list.message_delegate
            if not model.has_newer:
                delegate.last_regenerable = _last_regenerable(model.messages)
                if model.has_marker or not page.messages:
                    self.reload()  # the marker's place (or a thread that changed) is read
            self.list.request_measure()
            self.list.fetch_near_edges()

        def failed(error: BaseException) -> None:
            self.model.newer_fetch_failed()
            self._on_load_error(error)

        tasks.start(
            self._session.service.newer_messages(chat_id, after, limit=PAGE_SIZE),
            on_done=done,
            on_error=failed,
        )

    def on_chat_changed(self, change: ChatChanged) -> None:
        """A change from the service: refresh what it names, if it is this chat."""
        if change.chat_id != self.chat_id:
            return
        if isinstance(change, ChatDeleted | ChatPurged):
            self.open_chat(None)
        elif isinstance(change, MessagesChanged) and change.chat_id in self._turns:
            return  # the turn reloads when it starts and ends
        else:
            self.reload(messages=isinstance(change, MessagesChanged | ChatRestored))

    def _set_ephemeral(self, ephemeral: bool) -> None:
        if ephemeral == self._is_ephemeral:
            return
        self._is_ephemeral = ephemeral
        self.banner.setVisible(ephemeral)
        palette = self.list.palette() if ephemeral else self.style().standardPalette()
        if ephemeral:
            base = QColor(self.palette().color(QPalette.ColorRole.Base))
            tinted = _blend(base, EPHEMERAL_TINT, 0.10)
            palette.setColor(QPalette.ColorRole.Base, tinted)
            banner = self.banner.palette()
            banner.setColor(QPalette.ColorRole.Window, _blend(base, EPHEMERAL_TINT, 0.35))
            self.banner.setPalette(banner)
            self.list.setPalette(palette)
        else:
            self.list.setPalette(self.palette())

    def set_marks_unsynced(self, marks: bool) -> None:
        """While signed in to sync, the Ephemeral banner also says the chat is not synced."""
        self.banner.setText(EPHEMERAL_BANNER + (" Not synced." if marks else ""))

    def is_ephemeral_look(self) -> bool:
        return self._is_ephemeral

    # turns -------------------------------------------------------------------------------

    def send(self, text: str, *, attachments: Sequence[Any] = ()) -> bool:
        """Send ``text`` (and the ``NewAttachment`` files ``attachments``) in the open
        chat; False if a turn is already running there."""
        chat_id = self.chat_id
        if chat_id is None or chat_id in self._turns:
            return False
        self._jump_to_newest()
        files = list(attachments)
        service = self._session.service
        if files:
            self._run_turn(
                chat_id,
                lambda: service.send(chat_id, text, attachments=files, max_tokens=self.max_tokens),
                draft=text,
                files=files,
            )
        else:
            self._run_turn(
                chat_id,
                lambda: service.send(chat_id, text, max_tokens=self.max_tokens),
                draft=text,
            )
        return True

    def regenerate(self) -> bool:
        """A new version of the last answer of the open chat."""
        chat_id = self.chat_id
        if chat_id is None or chat_id in self._turns or not self.model.messages:
            return False
        self._jump_to_newest()
        self._run_turn(
            chat_id,
            lambda: self._session.service.regenerate(chat_id, max_tokens=self.max_tokens),
        )
        return True

    def edit(self, message_id: str, text: str) -> bool:
        """Save ``text`` as a new version of a message and answer it again."""
        chat_id = self.chat_id
        if chat_id is None or chat_id in self._turns:
            return False
        self._jump_to_newest()
        self._run_turn(
            chat_id,
            lambda: self._session.service.edit(message_id, text, max_tokens=self.max_tokens),
            draft=text,
        )
        return True

    def stop(self, chat_id: str | None = None) -> bool:
        """Stop the open chat's answer; what arrived is kept, marked stopped."""
        turn = self._turns.get(chat_id or self.chat_id or "")
        if turn is None or turn.task is None:
            return False
        turn.task.cancel()
        return True

    def _run_turn(
        self,
        chat_id: str,
        make: Callable[[], AsyncIterator[TurnEvent]],
        *,
        draft: str | None = None,
        files: list[Any] | None = None,
    ) -> None:
        """Run one turn; ``draft`` is what the user typed and ``files`` what they attached
        (both given back if it is refused)."""
        turn = _Turn(chat_id)
        chat = self.chat
        if chat is not None and chat.id == chat_id:
            turn.tier = chat.tier
            turn.read_aloud = bool(chat.params.read_aloud) and self._speaker_source is not None
        self._turns[chat_id] = turn
        if chat_id == self.chat_id:
            self.list.follow_end = True  # what was sent, and its answer, are shown
            self.model.clear_notice()

        async def consume() -> None:
            events = cast(AsyncGenerator[TurnEvent, None], make())
            async with contextlib.aclosing(events):
                async for event in events:
                    self._on_event(turn, event)

        def finished(_: object = None) -> None:
            self._end_turn(turn)

        def failed(error: BaseException) -> None:
            # Refused before anything was saved (the policy, a message that cannot fit, a
            # provider that cannot be set up): say so under the conversation, with the fix.
            self._end_turn(turn)
            kind = type(error).__name__
            actions = NOTICE_ACTIONS.get(kind, (TRY_AGAIN,))
            if draft is None:  # a regenerate: trying again is regenerating, not sending
                actions = tuple(("retry", label) if a == TRY_AGAIN[0] else (a, label)
                                for a, label in actions)  # fmt: skip
            if chat_id == self.chat_id:
                self.show_notice(_sentence(str(error)), actions)
            if files:
                self.attachments_refused.emit(files)
            self.send_refused.emit(draft or "", kind)

        turn.task = tasks.start(consume(), on_done=finished, on_error=failed)
        turn.task.add_done_callback(lambda task: finished() if task.cancelled() else None)
        if chat_id == self.chat_id:
            self.streaming_changed.emit(True)

    def _on_event(self, turn: _Turn, event: TurnEvent) -> None:
        current = turn.chat_id == self.chat_id
        if isinstance(event, TurnDelta):
            stream = turn.stream
            if stream is not None:
                stream.pieces.append(event.text)
                stream.length += len(event.text)
            if turn.feed is not None:
                turn.feed.add(event.text)
        elif isinstance(event, TurnReasoning):
            if turn.stream is not None:
                turn.stream.reasoning += len(event.text)
        elif isinstance(event, TurnStarted):
            turn.stream = _Stream(event.assistant_message_id)
            if turn.read_aloud:
                self._read_as_it_arrives(turn, event.assistant_message_id)
            if current:
                self.model.set_marker(event.dropped, None)
                self.turn_started.emit(event)
                self.reload()
                self._repaint.start()
        elif isinstance(event, TurnFinished):
            # A complete answer is read to its end; a stopped or failed one no further.
            self._close_feed(turn, finished=event.message.status is MessageStatus.COMPLETE)
            if event.error_kind:
                # Shown in the answer's own row, with the fix for its kind (_footer_html).
                self.list.message_delegate.error_kinds[event.message.id] = event.error_kind

    def _end_turn(self, turn: _Turn) -> None:
        self._close_feed(turn, finished=False)  # stopped, or failed before it finished
        if self._turns.get(turn.chat_id) is not turn:
            return
        del self._turns[turn.chat_id]
        if turn.chat_id == self.chat_id:
            # The streamed text stays on screen until the reload brings the saved answer
            # (see ``_show``); only then is the stream dropped.
            stream = self.model.stream
            saved = self.model.message(stream.message_id) if stream is not None else None
            if (
                stream is not None
                and saved is not None
                and saved.status is not MessageStatus.PARTIAL
                and saved.content == stream.text()
            ):
                self.list.keep_position(lambda: self.model.start_stream(None))
            else:
                self._flush_stream()
            self._repaint.stop()
            self.streaming_changed.emit(False)
            self._painted_length = -1
            self.reload()

    def _flush_stream(self) -> None:
        """Repaint the streaming answer if text arrived since the last repaint."""
        stream = self.model.stream
        if stream is None:
            return
        if stream.length == self._painted_length:
            return
        self._painted_length = stream.length
        stream.take()
        number = self.model.row_number(stream.message_id)
        if number is None:
            return
        model = self.model
        delegate = self.list.message_delegate
        row = model.row(number)
        at_bottom = self.list.follows_end()
        before = self.list.visualRect(model.index(number))
        height = delegate.layout(row, model).height
        if height != before.height():
            self.list.doItemsLayout()
            if at_bottom:
                self.list.scrollToBottom()
        rect = self.list.visualRect(model.index(number))
        self.list.viewport().update(delegate.growing_rect(row, model, rect))

    # message actions ---------------------------------------------------------------------

    def show_notice(
        self, text: str, actions: tuple[tuple[str, str], ...] = (), *, title: str = NOT_SENT
    ) -> None:
        """Say under the conversation why the last send failed (or ``title``: what else
        was refused), with ``actions`` to fix it."""
        self.list.follow_end = True
        self.list.keep_position(lambda: self.model.set_notice(text, actions, title=title))

    # reading aloud -----------------------------------------------------------------------

    def set_speaker_source(self, source: Callable[[], Speaker] | None) -> None:
        """Read aloud with the speaker ``source()`` gives (the window's, made when first
        needed); None: answers offer no reading aloud."""
        self._speaker_source = source
        delegate = self.list.message_delegate
        if delegate.can_read_aloud != (source is not None):
            delegate.can_read_aloud = source is not None
            self.list.keep_position(self.list.doItemsLayout)
            self.list.viewport().update()

    def _speaker_now(self) -> Speaker | None:
        """The window's speaker, its signals followed here (None: no reading aloud)."""
        if self._speaker_source is None:
            return None
        speaker = self._speaker_source()
        if speaker is not self._speaker:
            self._forget_speaker()
            speaker.state_changed.connect(self._reading_state_changed)
            speaker.failed.connect(self._reading_failed)
            self._speaker = speaker
        return speaker

    def _forget_speaker(self) -> None:
        speaker, self._speaker = self._speaker, None
        if speaker is not None:
            with contextlib.suppress(RuntimeError):  # deleted with the window's lock
                speaker.state_changed.disconnect(self._reading_state_changed)
                speaker.failed.disconnect(self._reading_failed)

    @property
    def reading_key(self) -> str | None:
        """The id of the answer being read aloud (None: none is)."""
        return self._speaker.speaking_key if self._speaker is not None else None

    def answer_to_read(self) -> Message | None:
        """The answer "Read aloud" reads: the one open for selection or that has the
        keyboard focus in the messages, else the open chat's last answer."""
        wanted = self.list.selected_message()
        if wanted is None and self.list.hasFocus():
            index = self.list.currentIndex()
            if index.isValid():
                row = self.model.row(index.row())
                wanted = row.message.id if row.message is not None else None
        message = self.model.message(wanted) if wanted else None
        if message is not None and message.role == "assistant":
            return message
        return self.model.last_assistant()

    def read_aloud(self, message_id: str | None = None) -> bool:
        """Read the answer ``message_id`` (None: ``answer_to_read``) aloud; the answer
        being read already stops instead. A speech engine the chat's tier refuses, or none
        set up, is said under the conversation. Returns whether reading started."""
        self.activity.emit()
        message = self.model.message(message_id) if message_id else self.answer_to_read()
        chat = self.chat
        if message is None or chat is None or message.role != "assistant":
            self.status_message.emit("There is no answer to read aloud here.")
            return False
        speaker = self._speaker_now()
        if speaker is None:
            return False
        if speaker.speaking_key == message.id:
            self.stop_reading()
            return False
        for running in self._turns.values():
            self._close_feed(running, finished=False)  # one answer is read at a time
        arriving = self._turns.get(chat.id)
        stream = arriving.stream if arriving is not None else None
        try:
            if arriving is not None and stream is not None and stream.message_id == message.id:
                # Still arriving: what came so far, then each delta as it comes.
                feed = speaker.begin_stream(message.id, chat.tier)
                feed.add(stream.text())
                arriving.feed = feed
            else:
                speaker.speak_text(message.id, chat.tier, message.content)
        except HushchatError as error:
            self._reading_refused(error)
            return False
        self._set_reading_error(message.id, None)
        return True

    def stop_reading(self) -> bool:
        """Stop reading aloud (an answer still arriving is not read further); returns
        whether something was being read."""
        for turn in self._turns.values():
            self._close_feed(turn, finished=False)
        speaker = self._speaker
        if speaker is None:
            return False
        reading = speaker.speaking_key is not None
        speaker.stop()
        return reading

    def _read_as_it_arrives(self, turn: _Turn, message_id: str) -> None:
        """The chat reads its answers aloud: feed this one to the speaker as it streams.
        A refused or missing engine is said once, under the conversation; the answer
        itself goes on."""
        turn.read_aloud = False
        speaker = self._speaker_now()
        if speaker is None or turn.tier is None:
            return
        for other in self._turns.values():
            self._close_feed(other, finished=False)
        try:
            turn.feed = speaker.begin_stream(message_id, turn.tier)
        except HushchatError as error:
            if turn.chat_id == self.chat_id:
                self._reading_refused(error)
            return
        self._set_reading_error(message_id, None)

    def _close_feed(self, turn: _Turn, *, finished: bool) -> None:
        feed, turn.feed = turn.feed, None
        if feed is None:
            return
        if finished:
            feed.end()
        else:
            feed.cancel()

    def _reading_refused(self, error: HushchatError) -> None:
        # The engine refused or missing: Settings, Voice is the fix (not for an answer
        # with nothing to read).
        fixable = isinstance(error, PolicyRefusedError | ConfigError)
        self.show_notice(
            _sentence(str(error)), (VOICE_SETTINGS,) if fixable else (), title=NOT_READ
        )

    def _reading_state_changed(self, key: str, state: str) -> None:
        delegate = self.list.message_delegate
        if state in ("preparing", "speaking"):
            if delegate.reading.get(key) == state:
                return
            known = key in delegate.reading
            delegate.reading[key] = state
            if known:
                return  # "Stop reading" either way: nothing to repaint
        elif delegate.reading.pop(key, None) is None:
            return
        self._repaint_row(key)

    def _reading_failed(self, key: str, message: str) -> None:
        for turn in self._turns.values():
            if turn.stream is not None and turn.stream.message_id == key:
                turn.feed = None  # the speaker gave up on it
        self.list.message_delegate.reading.pop(key, None)
        if self.model.message(key) is None:
            # Not shown here (another chat is open): the window's error banner says it.
            self.error_message.emit(f"The answer was not read aloud: {message}")
            return
        self._set_reading_error(key, message)

    def _set_reading_error(self, key: str, message: str | None) -> None:
        errors = self.list.message_delegate.reading_errors
        if errors.get(key) == message:
            return
        if message is None:
            errors.pop(key, None)
        else:
            errors[key] = message
        self._repaint_row(key)

    def _repaint_row(self, key: str) -> None:
        """Lay out and repaint the row of ``key`` (its footer changed)."""
        number = self.model.row_number(key)
        if number is None:
            return
        index = self.model.index(number)
        row = self.model.row(number)
        before = self.list.visualRect(index)
        height = self.list.message_delegate.layout(row, self.model).height
        if height != before.height():
            self.list.keep_position(self.list.doItemsLayout)
        self.list.viewport().update(self.list.visualRect(index))

    def _on_action(self, name: str, message_id: str) -> None:
        self.activity.emit()
        if name.startswith("save-attachment:"):
            self.save_attachment(name.split(":", 1)[1])
            return
        if name.startswith("open-attachment:"):
            self.open_attachment(name.split(":", 1)[1])
            return
        if name in ("choose-model", "shorten", "resend"):
            self.fix_requested.emit(name)
            return
        if name == "retry" and not message_id:  # a notice's "Try again" of a regenerate
            self.regenerate()
            return
        message = self.model.message(message_id)
        if name == "edit-question" and message is not None and message.parent_id:
            question = self.model.message(message.parent_id)
            if question is not None:
                self.edit_requested.emit(question.id, question.content)
            return
        if name == "copied-code":
            self.status_message.emit("Code copied")
            return
        if name == "stop":
            self.stop()
            return
        if name == "stop-reading":
            self.stop_reading()
            return
        if name == "voice-settings":
            self.fix_requested.emit(name)
            return
        if message is None:
            return
        if name == "read":
            self.read_aloud(message.id)
            return
        if name == "copy":
            QGuiApplication.clipboard().setText(message.content)
            self.status_message.emit("Message copied")
        elif name == "edit":
            self.edit_requested.emit(message.id, message.content)
        elif name in ("regenerate", "retry"):
            self.regenerate()
        elif name in ("previous", "next"):
            self.switch_version(message.id, -1 if name == "previous" else 1)
        elif name == "delete":
            self.delete_message(message.id)

    def switch_version(self, message_id: str, offset: int) -> None:
        """Show the previous (-1) or next (+1) version of a message."""
        if self.is_streaming():
            self.status_message.emit("Wait for the answer to finish, or stop it, first.")
            return
        tasks.start(
            self._session.service.switch_version(message_id, offset),
            on_error=self._on_action_error,
        )

    def delete_message(self, message_id: str, *, confirmed: bool = False) -> None:
        """Delete one message after asking (its replies stay in the thread)."""
        if self.is_streaming():
            self.status_message.emit("Wait for the answer to finish, or stop it, first.")
            return
        if not confirmed and not confirm(
            self, "Delete message", "Delete this message? This cannot be undone."
        ):
            return
        tasks.start(
            self._session.service.delete_message(message_id), on_error=self._on_action_error
        )

    def _on_action_error(self, error: BaseException) -> None:
        self.error_message.emit(str(error))

    def _show_menu(self, position: QPoint, message_id: str) -> None:
        menu = self.message_menu(message_id)
        if menu is not None:
            menu.exec(position)
            menu.deleteLater()

    def message_menu(self, message_id: str) -> QMenu | None:
        """The context menu of a loaded message (None: it is not loaded)."""
        message = self.model.message(message_id)
        if message is None:
            return None
        menu = QMenu(self)
        menu.addAction("Copy", lambda: self._on_action("copy", message_id))
        reading: QAction | None = None
        if self._speaker_source is not None and message.role == "assistant":
            if self.reading_key == message_id:
                reading = menu.addAction("Stop reading", self.stop_reading)
            else:
                reading = menu.addAction("Read aloud", lambda: self.read_aloud(message_id))
                reading.setShortcut(QKeySequence(READ_ALOUD_SHORTCUT))
            reading.setEnabled(bool(message.content.strip()))
        if message.role == "user":
            menu.addAction("Edit and resend…", lambda: self._on_action("edit", message_id))
        elif message.id == self.list.message_delegate.last_regenerable:
            menu.addAction("Regenerate", lambda: self._on_action("regenerate", message_id))
        if message.versions > 1:
            menu.addAction("Previous version", lambda: self._on_action("previous", message_id))
            menu.addAction("Next version", lambda: self._on_action("next", message_id))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self._on_action("delete", message_id))
        busy = self.is_streaming()
        for action in menu.actions()[1:]:
            if action is not reading:  # an answer can be heard while another arrives
                action.setEnabled(not busy)
        files = self.model.attachments.get(message_id, [])
        if files:
            menu.addSeparator()
        for file in files:
            label = "Save attachment as…" if len(files) == 1 else f"Save {file.name} as…"
            menu.addAction(f"Open {file.name}", functools.partial(self.open_attachment, file.id))
            menu.addAction(label, functools.partial(self.save_attachment, file.id))
        return menu


def _says_too_long(error: str) -> bool:
    """Whether a saved error says the context was too long (its kind is not saved)."""
    return re.search(r"context (window|size|length)", error, re.IGNORECASE) is not None


def _sentence(text: str) -> str:
    """An error's text as a sentence: capital first letter, full stop at the end."""
    text = text.strip()
    if not text:
        return "Something went wrong."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _settings_of(chat: Chat | None) -> tuple[Any, ...]:
    """What the settings panel and composer show of a chat (not its activity time)."""
    if chat is None:
        return ()
    return (chat.id, chat.title, chat.tier, chat.provider, chat.model, chat.system_prompt,
            chat.memory, chat.pinned)  # fmt: skip


def _last_regenerable(messages: list[Message]) -> str | None:
    if messages and messages[-1].role == "assistant":
        return messages[-1].id
    return None


def _blend(base: QColor, tint: QColor, amount: float) -> QColor:
    return QColor(
        int(base.red() * (1 - amount) + tint.red() * amount),
        int(base.green() * (1 - amount) + tint.green() * amount),
        int(base.blue() * (1 - amount) + tint.blue() * amount),
    )
