"""The sidebar: every chat by recent activity (pinned first), search, and chat actions.

``ChatListModel`` holds ``ChatSummary`` rows and is updated row by row from the
service's ``ChatChanged`` notifications (a rename moves nothing, a new message
moves one row to the top). The search box shows full-text hits with their
snippets in a second list. Deleting a chat hides it at once and offers Undo for
``undo_seconds``; after that the chat is purged for good.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QKeyEvent,
    QPainter,
    QPalette,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.events import ChatChanged, ChatDeleted, ChatPurged
from app.session import Session
from app.store.models import ChatSummary, SearchHit, Tier
from app.ui import chat_view, tasks
from app.ui.markdown import snippet_html

__all__ = ["ChatListModel", "SearchResultModel", "SidebarWidget"]

log = logging.getLogger(__name__)

TIER_LABELS = {Tier.STANDARD: "Standard", Tier.PRIVATE: "Private", Tier.EPHEMERAL: "Ephemeral"}
TIER_COLORS = {
    Tier.STANDARD: QColor(120, 126, 135),
    Tier.PRIVATE: QColor(38, 162, 105),
    Tier.EPHEMERAL: QColor(200, 140, 20),
}
SEARCH_DELAY_MS = 200
FIRST_PAGE = 150  # chats shown before the rest of a long list is read
DISPLAY_ROLE = int(Qt.ItemDataRole.DisplayRole)
EDIT_ROLE = int(Qt.ItemDataRole.EditRole)
SUMMARY_ROLE = int(Qt.ItemDataRole.UserRole) + 10
ROW_MIN_WIDTH = 120  # a chat row's width hint: the badge and a few letters of the title
NOT_SYNCED = "Not synced: Ephemeral chats never leave this computer."


def _choose_save_path(parent: QWidget, title: str, suggested: str, filter_: str) -> str:
    path, _ = QFileDialog.getSaveFileName(parent, title, suggested, filter_)
    return path


choose_save_path: Callable[[QWidget, str, str, str], str] = _choose_save_path


def _order(summary: ChatSummary) -> tuple[bool, float]:
    return (not summary.pinned, -summary.updated_at)


class ChatListModel(QAbstractListModel):
    """Chats, pinned first, then most recently active first."""

    rename_requested = Signal(str, str)
    ID_ROLE: ClassVar[int] = int(Qt.ItemDataRole.UserRole) + 1
    TIER_ROLE: ClassVar[int] = int(Qt.ItemDataRole.UserRole) + 2
    PINNED_ROLE: ClassVar[int] = int(Qt.ItemDataRole.UserRole) + 3

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[ChatSummary] = []
        #: Whether Ephemeral rows say "not synced" (the profile is signed in to sync).
        self.marks_unsynced = False

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def set_marks_unsynced(self, marks: bool) -> None:
        """Say "not synced" on Ephemeral rows (while signed in to sync) or not."""
        if marks == self.marks_unsynced:
            return
        self.marks_unsynced = marks
        if self._rows:
            self.dataChanged.emit(
                self.index(0),
                self.index(len(self._rows) - 1),
                [Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole],
            )

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        chat = self._rows[index.row()]
        if role == SUMMARY_ROLE:
            return chat
        if role in (DISPLAY_ROLE, EDIT_ROLE):
            return chat.title
        unsynced = self.marks_unsynced and chat.tier == Tier.EPHEMERAL
        if role == Qt.ItemDataRole.AccessibleTextRole:
            pinned = ", pinned" if chat.pinned else ""
            mark = ", not synced" if unsynced else ""
            return f"{chat.title}, {TIER_LABELS[chat.tier]} chat{pinned}{mark}"
        if role == Qt.ItemDataRole.ToolTipRole:
            mark = f"\n{NOT_SYNCED}" if unsynced else ""
            return f"{chat.title}\n{TIER_LABELS[chat.tier]} chat{mark}"
        if role == self.ID_ROLE:
            return chat.id
        if role == self.TIER_ROLE:
            return chat.tier
        if role == self.PINNED_ROLE:
            return chat.pinned
        return None

    def setData(
        self,
        index: QModelIndex | QPersistentModelIndex,
        value: Any,
        role: int = Qt.ItemDataRole.EditRole,
    ) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        title = " ".join(str(value).split())
        chat = self._rows[index.row()]
        if not title or title == chat.title:
            return False
        self.rename_requested.emit(chat.id, title)
        return True

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable

    # reading -----------------------------------------------------------------------------

    def summary(self, row: int) -> ChatSummary:
        return self._rows[row]

    def row_of(self, chat_id: str) -> int | None:
        for number, chat in enumerate(self._rows):
            if chat.id == chat_id:
                return number
        return None

    def chat_ids(self) -> list[str]:
        return [chat.id for chat in self._rows]

    def has_tier(self, tier: Tier) -> bool:
        return any(chat.tier == tier for chat in self._rows)

    # changing ----------------------------------------------------------------------------

    def set_chats(self, chats: list[ChatSummary]) -> None:
        self.beginResetModel()
        self._rows = sorted(chats, key=_order)
        self.endResetModel()

    def clear(self) -> None:
        self.set_chats([])

    def extend_chats(self, chats: list[ChatSummary]) -> None:
        """Show the full list ``chats`` whose start is already shown (rows are added, so
        the selection and scroll position stay); anything else replaces the rows."""
        ordered = sorted(chats, key=_order)
        shown = len(self._rows)
        if [c.id for c in ordered[:shown]] != [c.id for c in self._rows]:
            self.set_chats(ordered)
            return
        if len(ordered) > shown:
            self.beginInsertRows(QModelIndex(), shown, len(ordered) - 1)
            self._rows.extend(ordered[shown:])
            self.endInsertRows()

    def upsert(self, chat: ChatSummary) -> None:
        """Add or update one chat, moving its row to where its order puts it."""
        old = self.row_of(chat.id)
        target = bisect.bisect_left(self._rows, _order(chat), key=_order)
        if old is not None and old < target:
            target -= 1  # the row leaves its old place above the new one
        if old is None:
            self.beginInsertRows(QModelIndex(), target, target)
            self._rows.insert(target, chat)
            self.endInsertRows()
            return
        if target != old:
            destination = target if target < old else target + 1
            self.beginMoveRows(QModelIndex(), old, old, QModelIndex(), destination)
            del self._rows[old]
            self._rows.insert(target, chat)
            self.endMoveRows()
        else:
            self._rows[old] = chat
        index = self.index(target)
        self.dataChanged.emit(index, index)

    def remove(self, chat_id: str) -> None:
        number = self.row_of(chat_id)
        if number is not None:
            self.beginRemoveRows(QModelIndex(), number, number)
            del self._rows[number]
            self.endRemoveRows()


class SearchResultModel(QAbstractListModel):
    """Full-text hits: the chat's title and a snippet with the matches in bold."""

    HIT_ROLE: ClassVar[int] = int(Qt.ItemDataRole.UserRole) + 1

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._hits: list[SearchHit] = []

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._hits)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._hits):
            return None
        hit = self._hits[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            snippet = hit.snippet.replace("[", "").replace("]", "")
            return f"{hit.chat_title}: {snippet}"
        if role == self.HIT_ROLE:
            return hit
        return None

    def hit(self, row: int) -> SearchHit:
        return self._hits[row]

    def set_hits(self, hits: list[SearchHit]) -> None:
        self.beginResetModel()
        self._hits = list(hits)
        self.endResetModel()


# --- delegates -----------------------------------------------------------------------------


def _paint_background(painter: QPainter, option: QStyleOptionViewItem, widget: QWidget) -> None:
    style = widget.style()
    style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, widget)


def _text_color(option: QStyleOptionViewItem) -> QColor:
    state = option.state
    palette: QPalette = option.palette
    if state & QStyle.StateFlag.State_Selected:
        return palette.color(QPalette.ColorRole.HighlightedText)
    return palette.color(QPalette.ColorRole.Text)


class ChatItemDelegate(QStyledItemDelegate):
    """Title (elided), a tier badge and a pin mark, all in one line.

    Painting is on the scrolling path of thousands of rows: fonts, metrics and badge
    sizes are computed once per font, and the row's summary is read with one call.
    """

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self._font_key = ""
        self._badge_font = QFont()
        self._badge_sizes: dict[Tier, tuple[int, int]] = {}

    def _fonts(self, font: QFont) -> None:
        key = font.key()
        if key == self._font_key:
            return
        self._font_key = key
        self._badge_font = QFont(font)
        self._badge_font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        metrics = QFontMetrics(self._badge_font)
        self._badge_sizes = {
            tier: (metrics.horizontalAdvance(label) + 10, metrics.height() + 2)
            for tier, label in TIER_LABELS.items()
        }

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        metrics = QFontMetrics(option.font)
        # Narrow: rows take the list's width, the title elides (a wider hint made a
        # narrow sidebar scroll sideways and cut the tier badge off).
        return QSize(ROW_MIN_WIDTH, metrics.lineSpacing() + 14)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        view = self.parent()
        assert isinstance(view, QWidget)
        chat: ChatSummary = index.data(SUMMARY_ROLE)
        font: QFont = option.font
        self._fonts(font)
        _paint_background(painter, option, view)
        rect = QRect(option.rect).adjusted(10, 0, -8, 0)
        painter.save()
        width, height = self._badge_sizes[chat.tier]
        badge = QRectF(rect.right() - width, rect.center().y() - height / 2, width, height)
        color = TIER_COLORS[chat.tier]
        fill = QColor(color)
        fill.setAlpha(40)
        if option.state & QStyle.StateFlag.State_Selected:
            # On the highlight, an opaque pill in the highlighted-text colour with the
            # highlight colour as text stays readable in light and dark themes alike.
            fill = option.palette.color(QPalette.ColorRole.HighlightedText)
            color = option.palette.color(QPalette.ColorRole.Highlight)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(color)
        painter.setBrush(fill)
        painter.drawRoundedRect(badge, height / 2, height / 2)
        painter.setFont(self._badge_font)
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, TIER_LABELS[chat.tier])
        text_rect = QRect(rect)
        text_rect.setRight(int(badge.left()) - 6)
        title = f"\N{PUSHPIN} {chat.title}" if chat.pinned else chat.title
        painter.setFont(font)
        painter.setPen(_text_color(option))
        painter.drawText(
            text_rect,
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            option.fontMetrics.elidedText(title, Qt.TextElideMode.ElideRight, text_rect.width()),
        )
        painter.restore()


class SearchHitDelegate(QStyledItemDelegate):
    """The hit's chat title, then its snippet with the matched words in bold."""

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        metrics = QFontMetrics(option.font)
        return QSize(200, 3 * metrics.lineSpacing() + 14)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        view = self.parent()
        assert isinstance(view, QWidget)
        self.initStyleOption(option, index)
        option.text = ""
        _paint_background(painter, option, view)
        hit: SearchHit = index.data(SearchResultModel.HIT_ROLE)
        rect = QRect(option.rect).adjusted(10, 5, -8, -5)
        font = QFont(option.font)
        bold = QFont(font)
        bold.setBold(True)
        metrics = QFontMetrics(bold)
        painter.save()
        color = _text_color(option)
        painter.setPen(color)
        painter.setFont(bold)
        title_rect = QRect(rect.left(), rect.top(), rect.width(), metrics.lineSpacing())
        painter.drawText(
            title_rect,
            Qt.AlignmentFlag.AlignLeft,
            metrics.elidedText(hit.chat_title, Qt.TextElideMode.ElideRight, rect.width()),
        )
        document = QTextDocument()
        document.setDocumentMargin(0)
        document.setDefaultFont(font)
        document.setDefaultStyleSheet(f"body {{ color: {color.name()}; }}")
        document.setHtml(f"<body>{snippet_html(' '.join(hit.snippet.split()))}</body>")
        document.setTextWidth(rect.width())
        painter.translate(rect.left(), rect.top() + metrics.lineSpacing() + 2)
        clip = QRectF(0, 0, rect.width(), rect.height() - metrics.lineSpacing() - 2)
        painter.setClipRect(clip)
        document.drawContents(painter, clip)
        painter.restore()


# --- the widget ----------------------------------------------------------------------------


class ChatListView(QListView):
    """The chat list: rows of one height, so a changed row is only repainted.

    ``QListView`` lays every row out again when any row's data changes; with thousands
    of chats that took 10-40 ms of the UI thread each time a chat was touched (every
    sent message), a visible hitch as an answer starts. Rows of uniform size cannot
    move when their data changes; inserts, removals and moves are still laid out."""

    def dataChanged(
        self,
        top_left: QModelIndex | QPersistentModelIndex,
        bottom_right: QModelIndex | QPersistentModelIndex,
        roles: Sequence[int] = (),
    ) -> None:
        if not self.uniformItemSizes():
            super().dataChanged(top_left, bottom_right, roles)
            return
        QAbstractItemView.dataChanged(self, top_left, bottom_right, roles)


class UndoBarWidget(QFrame):
    """ "Chat deleted — Undo" for a few seconds."""

    undo_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("undoBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.button = QPushButton("Undo", self)
        self.button.setAccessibleName("Undo delete")
        self.button.clicked.connect(self.undo_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)
        self.hide()


class SidebarWidget(QWidget):
    """Chat list, search and New Chat; renames, pins, moves, exports and deletes chats."""

    chat_selected = Signal(str)  # chat id
    #: A search hit was opened: chat id, and the matched message's id ("" for a title).
    hit_opened = Signal(str, str)
    new_chat_requested = Signal(str)  # tier value
    status_message = Signal(str)
    error_message = Signal(str)  # a failure: shown until dismissed
    activity = Signal()

    undo_seconds = 10.0

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._session = session
        self.setObjectName("sidebar")
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search chats")
        self.search.setAccessibleName("Search chats")
        self.search.setClearButtonEnabled(True)
        self.new_button = QToolButton(self)
        self.new_button.setText("New Chat")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.new_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        new_menu = QMenu(self.new_button)
        new_menu.addAction("New Standard chat", lambda: self.new_chat_requested.emit("standard"))
        new_menu.addAction("New Private chat", lambda: self.new_chat_requested.emit("private"))
        new_menu.addAction("New Ephemeral chat", lambda: self.new_chat_requested.emit("ephemeral"))
        self.new_button.setMenu(new_menu)
        self.new_button.clicked.connect(lambda: self.new_chat_requested.emit("standard"))

        self.model = ChatListModel(self)
        self.model.rename_requested.connect(self.rename)
        self.list = ChatListView(self)
        self.list.setObjectName("chatList")
        self.list.setAccessibleName("Chats")
        self.list.setModel(self.model)
        self.list.setItemDelegate(ChatItemDelegate(self.list))
        self.list.setUniformItemSizes(True)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.SelectedClicked
        )
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._show_menu)
        self.list.selectionModel().currentChanged.connect(self._current_changed)

        self.results = SearchResultModel(self)
        self.result_list = QListView(self)
        self.result_list.setObjectName("searchResults")
        self.result_list.setAccessibleName("Search results")
        self.result_list.setModel(self.results)
        self.result_list.setItemDelegate(SearchHitDelegate(self.result_list))
        self.result_list.setUniformItemSizes(True)
        self.result_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.result_list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.result_list.activated.connect(self._open_hit)
        self.result_list.clicked.connect(self._open_hit)
        # Down from the search field into the hits, Enter opens one, Up/Esc go back.
        self.search.installEventFilter(self)
        self.result_list.installEventFilter(self)
        self.no_results = QLabel("No chat contains that.", self)
        self.no_results.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.list)
        self.stack.addWidget(self.result_list)

        self.undo_bar = UndoBarWidget(self)
        self.undo_bar.undo_clicked.connect(self.undo_delete)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.search, 1)
        top.addWidget(self.new_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.no_results)
        layout.addWidget(self.undo_bar)
        self.no_results.hide()

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self._run_search)
        self.search.textChanged.connect(self._search_changed)
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.setTimerType(Qt.TimerType.PreciseTimer)  # never before the window ends
        self._undo_timer.timeout.connect(self._undo_expired)
        self._deleted: list[str] = []  # chats whose undo is still offered
        self._pending: set[str] = set()
        self._generation = 0
        self._selecting = False
        self.current_chat_id: str | None = None

    # loading -----------------------------------------------------------------------------

    def load(self, on_loaded: Callable[[], None] | None = None) -> None:
        """Read every chat (after unlock): the first screenful at once, then the rest."""
        generation = self._generation

        async def read() -> None:
            service = self._session.service
            first = await service.list_chats(limit=FIRST_PAGE)
            if generation != self._generation:
                return
            self.model.set_chats(first)
            if self.current_chat_id is not None:
                self.select_chat(self.current_chat_id)
            if len(first) < FIRST_PAGE:
                return
            chats = await service.list_chats()
            if generation == self._generation:
                self.model.extend_chats(chats)

        def done(_: None) -> None:
            if on_loaded is not None and generation == self._generation:
                on_loaded()

        tasks.start(
            read(),
            on_done=done,
            on_error=lambda error: self.error_message.emit(f"Could not list chats: {error}"),
        )

    def clear(self) -> None:
        """Drop every title, snippet and pending undo (on lock)."""
        self._generation += 1
        self._search_timer.stop()
        self._undo_timer.stop()
        self._deleted.clear()
        self._pending.clear()
        self.undo_bar.hide()
        self.model.clear()
        self.results.set_hits([])
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        self.stack.setCurrentWidget(self.list)
        self.no_results.hide()
        self.current_chat_id = None

    def on_chat_changed(self, change: ChatChanged) -> None:
        """Update just the row a change names."""
        chat_id = change.chat_id
        if isinstance(change, ChatDeleted | ChatPurged):
            self.model.remove(chat_id)
            return
        if chat_id in self._pending:
            return
        self._pending.add(chat_id)
        generation = self._generation
        QTimer.singleShot(0, self, lambda: self._refresh(chat_id, generation))

    def _refresh(self, chat_id: str, generation: int) -> None:
        self._pending.discard(chat_id)
        # Cleared (locked, another profile) since the change was seen: nothing to ask.
        if generation != self._generation or not self._session.is_unlocked:
            return

        def done(summary: ChatSummary | None) -> None:
            if generation != self._generation:
                return
            if summary is None:
                self.model.remove(chat_id)
                return
            self.model.upsert(summary)
            if chat_id == self.current_chat_id:
                self.select_chat(chat_id)

        tasks.start(self._session.service.summary(chat_id), on_done=done)

    # selection ---------------------------------------------------------------------------

    def select_chat(self, chat_id: str | None) -> None:
        """Highlight ``chat_id`` without asking to open it again."""
        self.current_chat_id = chat_id
        number = self.model.row_of(chat_id) if chat_id else None
        self._selecting = True
        try:
            if number is None:
                self.list.selectionModel().clearSelection()
                self.list.setCurrentIndex(QModelIndex())
            else:
                index = self.model.index(number)
                self.list.setCurrentIndex(index)
                self.list.scrollTo(index)
        finally:
            self._selecting = False

    def select_offset(self, offset: int) -> None:
        """Open the chat ``offset`` rows below (positive) or above the current one."""
        count = self.model.rowCount()
        if count == 0:
            return
        current = self.model.row_of(self.current_chat_id) if self.current_chat_id else None
        target = 0 if current is None else max(0, min(count - 1, current + offset))
        chat_id = self.model.summary(target).id
        if chat_id != self.current_chat_id:
            self.select_chat(chat_id)
            self.chat_selected.emit(chat_id)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._selecting or not current.isValid():
            return
        chat_id = self.model.summary(current.row()).id
        self.activity.emit()
        if chat_id != self.current_chat_id:
            self.current_chat_id = chat_id
            self.chat_selected.emit(chat_id)

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    # search ------------------------------------------------------------------------------

    def _search_changed(self, text: str) -> None:
        self.activity.emit()
        if text.strip():
            self._search_timer.start()
        else:
            self._search_timer.stop()
            self.results.set_hits([])
            self.stack.setCurrentWidget(self.list)
            self.no_results.hide()

    def _run_search(self) -> None:
        query = self.search.text()
        generation = self._generation

        def done(hits: list[SearchHit]) -> None:
            if generation != self._generation or self.search.text() != query:
                return
            self.results.set_hits(hits)
            self.stack.setCurrentWidget(self.result_list)
            self.no_results.setVisible(not hits)

        tasks.start(
            self._session.service.search(query),
            on_done=done,
            on_error=lambda error: self.error_message.emit(f"Search failed: {error}"),
        )

    def _open_hit(self, index: QModelIndex) -> None:
        if index.isValid():
            hit = self.results.hit(index.row())
            self.activity.emit()
            self.select_chat(hit.chat_id)
            self.chat_selected.emit(hit.chat_id)
            self.hit_opened.emit(hit.chat_id, hit.message_id or "")

    def _showing_hits(self) -> bool:
        return self.stack.currentWidget() is self.result_list and self.results.rowCount() > 0

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Search by keyboard: in the field, Down moves into the hits (or the chats), Enter
        opens the first hit, Esc clears the search; in the hits, Enter opens one, Up on
        the first and Esc go back to the field."""
        if event.type() != QEvent.Type.KeyPress or not isinstance(event, QKeyEvent):
            return False
        if event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            return False
        key = event.key()
        enter = key in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if watched is self.search:
            if key == Qt.Key.Key_Down:
                view = self.result_list if self._showing_hits() else self.list
                if view.model().rowCount() == 0:
                    return False
                view.setFocus(Qt.FocusReason.TabFocusReason)
                current = view.currentIndex()
                view.setCurrentIndex(current if current.isValid() else view.model().index(0, 0))
                return True
            if enter and self._showing_hits():
                current = self.result_list.currentIndex()
                self._open_hit(current if current.isValid() else self.results.index(0))
                return True
            if key == Qt.Key.Key_Escape and self.search.text():
                self.search.clear()  # back to the chat list
                return True
        elif watched is self.result_list:
            if enter:
                self._open_hit(self.result_list.currentIndex())
                return True
            first = self.result_list.currentIndex().row() <= 0
            if key == Qt.Key.Key_Escape or (key == Qt.Key.Key_Up and first):
                self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
                return True
        return False

    # chat actions ------------------------------------------------------------------------

    def _show_menu(self, position: QPoint) -> None:
        index = self.list.indexAt(position)
        if not index.isValid():
            return
        chat = self.model.summary(index.row())
        menu = self.chat_menu(chat)
        menu.exec(self.list.viewport().mapToGlobal(position))

    def chat_menu(self, chat: ChatSummary) -> QMenu:
        """The context menu of one chat (built here so tests can trigger its actions)."""
        menu = QMenu(self)
        number = self.model.row_of(chat.id)
        rename = menu.addAction("Rename")
        if number is not None:
            index = self.model.index(number)
            rename.triggered.connect(lambda: self.list.edit(index))
        menu.addAction(
            "Unpin" if chat.pinned else "Pin", lambda: self.set_pinned(chat.id, not chat.pinned)
        )
        move = menu.addMenu("Move to")
        move.setObjectName("moveMenu")
        for tier in (Tier.STANDARD, Tier.PRIVATE):
            label = TIER_LABELS[tier]
            if chat.tier == Tier.EPHEMERAL:
                label = f"Keep as {label} chat"
            action = move.addAction(label, functools.partial(self.move_chat, chat.id, tier))
            action.setEnabled(tier != chat.tier)
        export = menu.addMenu("Export")
        export.addAction("Markdown…", lambda: self.export(chat.id, "markdown"))
        export.addAction("JSON…", lambda: self.export(chat.id, "json"))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self.delete(chat.id))
        return menu

    def _run(self, coro: Any, done_message: str = "") -> None:
        def done(_: object) -> None:
            if done_message:
                self.status_message.emit(done_message)

        tasks.start(coro, on_done=done, on_error=lambda e: self.error_message.emit(str(e)))

    def rename(self, chat_id: str, title: str) -> None:
        self.activity.emit()
        self._run(self._session.service.rename(chat_id, title))

    def set_pinned(self, chat_id: str, pinned: bool) -> None:
        self.activity.emit()
        self._run(self._session.service.update(chat_id, pinned=pinned))

    def move_chat(self, chat_id: str, tier: Tier) -> None:
        self.activity.emit()
        self._run(self._session.service.move(chat_id, tier), f"Moved to {TIER_LABELS[tier]}")

    def export(self, chat_id: str, fmt: str, path: str | None = None) -> None:
        """Export one chat as Markdown or JSON to a file the user picks."""
        self.activity.emit()
        number = self.model.row_of(chat_id)
        title = self.model.summary(number).title if number is not None else "chat"
        suffix, filter_ = (
            (".md", "Markdown (*.md)") if fmt == "markdown" else (".json", "JSON (*.json)")
        )
        safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip() or "chat"
        if path is None:
            path = choose_save_path(self, "Export chat", safe + suffix, filter_)
        if not path:
            return
        target = Path(path)
        service = self._session.service
        if fmt == "markdown":
            job = service.export_to_file([chat_id], "md", target)
        else:
            job = service.export_to_file([chat_id], "json", target)
        self._run(job, f"Exported to {target.name}")

    def delete(self, chat_id: str, *, confirmed: bool = False) -> None:
        """Delete a chat after asking; Undo is offered for ``undo_seconds``."""
        self.activity.emit()
        number = self.model.row_of(chat_id)
        title = self.model.summary(number).title if number is not None else "this chat"
        if not confirmed and not chat_view.confirm(
            self, "Delete chat", f"Delete “{title}”? You can undo this for a few seconds."
        ):
            return

        def done(_: object) -> None:
            self._deleted.append(chat_id)
            self.undo_bar.label.setText(f"Deleted “{title}”.")
            self.undo_bar.show()
            self._undo_timer.start(int(self.undo_seconds * 1000))

        tasks.start(
            self._session.service.delete_chat(chat_id),
            on_done=done,
            on_error=lambda e: self.error_message.emit(str(e)),
        )

    def undo_delete(self) -> None:
        """Bring back the most recently deleted chat."""
        self.activity.emit()
        if not self._deleted:
            return
        chat_id = self._deleted.pop()
        if not self._deleted:
            self.undo_bar.hide()
            self._undo_timer.stop()
        self._run(self._session.service.undo_delete(chat_id), "Chat restored")

    def _undo_expired(self) -> None:
        self.undo_bar.hide()
        self._deleted.clear()
        self._run(self._session.service.purge_deleted(older_than=self.undo_seconds))
