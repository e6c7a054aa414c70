"""A chat's row changing in place repaints that row; the long chat list is not laid out
again (that cost tens of milliseconds of the UI thread with thousands of chats, as an
answer started)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QApplication, QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from app.store.models import ChatSummary, Tier
from app.ui.sidebar import ChatItemDelegate, ChatListModel, ChatListView

CHATS = 2000


class CountingModel(ChatListModel):
    """Counts ``rowCount`` calls: Qt makes two per row when it lays the list out."""

    calls = 0

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        CountingModel.calls += 1
        return super().rowCount(parent)


class RecordingDelegate(ChatItemDelegate):
    titles: list[str] = []  # noqa: RUF012

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        RecordingDelegate.titles.append(index.data())
        super().paint(painter, option, index)


def _summary(number: int, title: str = "", updated: float | None = None) -> ChatSummary:
    return ChatSummary(
        f"chat{number}", title or f"Chat {number}", Tier.STANDARD, False,
        updated if updated is not None else 10_000.0 - number,
    )  # fmt: skip


def test_a_row_changed_in_place_is_repainted_without_laying_the_list_out(qtbot: QtBot) -> None:
    model = CountingModel()
    view = ChatListView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.setItemDelegate(RecordingDelegate(view))
    view.setUniformItemSizes(True)
    view.resize(300, 600)
    view.show()
    model.set_chats([_summary(n) for n in range(CHATS)])
    qtbot.waitUntil(lambda: view.verticalScrollBar().maximum() > 0)
    QApplication.processEvents()

    CountingModel.calls = 0
    RecordingDelegate.titles.clear()
    model.upsert(_summary(0, "Renamed", updated=20_000.0))  # stays the first row
    view.scrollTo(model.index(0))
    qtbot.waitUntil(lambda: "Renamed" in RecordingDelegate.titles)
    assert CountingModel.calls < CHATS / 10

    # A row that moves is still laid out where it belongs.
    model.upsert(_summary(5, updated=30_000.0))
    QApplication.processEvents()
    assert model.row_of("chat5") == 0
    assert view.visualRect(model.index(0)).top() < view.visualRect(model.index(1)).top()
    assert view.indexAt(view.visualRect(model.index(0)).center()).row() == 0
