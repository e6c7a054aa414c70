"""Attachments in the window (issue 14): the composer's chips, cards in messages, save-as.

The chat service's attachment API (``check_attachments``, ``send(..., attachments=)``,
``attachments``, ``attachment_data``, ``save_attachment``) is replaced on the session's
service by small fakes that record what the window asks; the answers still come from
the scripted model through the real ``send``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import types
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
)
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from app.errors import UsageError
from app.session import Session
from app.store.models import Attachment, Message
from app.ui import chat_view as chat_view_module
from app.ui.attachments import AttachmentViewerDialog, human_size, png_bytes
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_view import BUBBLE_PAD, ROW_MARGIN_X
from tests.qt.drivers import WAIT, messages, send, shown_area, start_chat, wait_answer

try:
    from app.chat.attachments import NewAttachment
except ImportError:  # the service's half of issue 14 is not merged yet: its contract

    @dataclasses.dataclass(frozen=True)
    class NewAttachment:  # type: ignore[no-redef]
        name: str
        path: Path | None = None
        data: bytes | None = None

        @classmethod
        def from_path(cls, path: Path | str) -> NewAttachment:
            return cls(Path(path).name, path=Path(path))

        @classmethod
        def from_bytes(cls, name: str, data: bytes) -> NewAttachment:
            return cls(name, data=bytes(data))

    _module = types.ModuleType("app.chat.attachments")
    _module.NewAttachment = NewAttachment  # type: ignore[attr-defined]
    sys.modules["app.chat.attachments"] = _module


@dataclasses.dataclass(frozen=True)
class Check:
    """What ``check_attachments`` answers per file (the contract's AttachmentCheck)."""

    name: str
    size: int
    kind: str
    problem: str | None


class FakeAttachments:
    """The service's attachment API, recording what the window asks."""

    def __init__(self, session: Session) -> None:
        self.service = session.service
        self.real_send = session.service.send
        self.problems: dict[str, str] = {}
        self.checked: list[list[Any]] = []
        self.sent: list[tuple[str, list[Any]]] = []
        self.by_message: dict[str, list[Attachment]] = {}
        self.data: dict[str, bytes] = {}
        self.saved: list[tuple[str, Path]] = []
        self.refuse: str | None = None

    async def check_attachments(self, chat_id: str, files: Sequence[Any]) -> list[Check]:
        self.checked.append(list(files))
        return [Check(f.name, len(f.data or b""), "text", self.problems.get(f.name)) for f in files]

    async def send(
        self,
        chat_id: str,
        text: str,
        *,
        attachments: Sequence[Any] = (),
        max_tokens: int | None = None,
    ) -> AsyncIterator[Any]:
        if self.refuse:
            raise UsageError(self.refuse)
        self.sent.append((text, list(attachments)))
        async for event in self.real_send(chat_id, text, max_tokens=max_tokens):
            yield event

    async def attachments(self, chat_id: str) -> dict[str, list[Attachment]]:
        return dict(self.by_message)

    async def attachment_data(self, attachment_id: str, *, max_bytes: int) -> bytes:
        data = self.data[attachment_id]
        if len(data) > max_bytes:
            raise UsageError("too large")
        return data

    async def save_attachment(self, attachment_id: str, path: Path) -> None:
        self.saved.append((attachment_id, path))


@pytest.fixture
def fake(unlocked_session: Session, monkeypatch: pytest.MonkeyPatch) -> FakeAttachments:
    fake = FakeAttachments(unlocked_session)
    service = unlocked_session.service
    for name in ("check_attachments", "send", "attachments", "attachment_data"):
        monkeypatch.setattr(service, name, getattr(fake, name), raising=False)
    monkeypatch.setattr(service, "save_attachment", fake.save_attachment, raising=False)
    return fake


@pytest.fixture
def area(
    qtbot: QtBot, unlocked_session: Session, fake: FakeAttachments
) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session)


def chip_texts(area: ChatAreaWidget) -> list[tuple[str, str]]:
    return [(c.name_label.text(), c.size_label.text()) for c in area.composer.chips.chips()]


def make_files(tmp_path: Path) -> list[Path]:
    notes = tmp_path / "notes.txt"
    notes.write_text("x" * 2048)
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 " + b"y" * 100)
    return [notes, report]


def drop_on(widget: Any, paths: list[Path]) -> bool:
    """Drag ``paths`` over ``widget`` and drop them (the handlers, as a drag calls them:
    a drop sent without a drag in progress never reaches a widget); whether the drag
    was accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(
        QPoint(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    enter.ignore()
    widget.dragEnterEvent(enter)
    drop = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    widget.dropEvent(drop)
    return enter.isAccepted()


# --- the composer --------------------------------------------------------------------------


def test_attach_button_opens_the_dialog_and_shows_chips(
    qtbot: QtBot, area: ChatAreaWidget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_files(tmp_path)
    monkeypatch.setattr(
        QFileDialog,
        "getOpenFileNames",
        lambda *args, **kwargs: ([str(p) for p in files], ""),
    )
    button = area.composer.attach_button
    assert button.accessibleName() == "Attach files"
    assert "Ctrl+Shift+A" in button.toolTip()
    assert button.shortcut().toString() == "Ctrl+Shift+A"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert chip_texts(area) == [("notes.txt", "2.0 kB"), ("report.pdf", "109 bytes")]
    assert area.composer.chips.isVisible()
    names = [c.remove_button.accessibleName() for c in area.composer.chips.chips()]
    assert names == ["Remove notes.txt", "Remove report.pdf"]
    assert [a.path for a in area.composer.attachments()] == files


def test_chips_are_removed_by_button_and_by_keyboard(
    qtbot: QtBot, area: ChatAreaWidget, tmp_path: Path
) -> None:
    area.composer.add_files(make_files(tmp_path))
    first, second = area.composer.chips.chips()
    qtbot.mouseClick(first.remove_button, Qt.MouseButton.LeftButton)
    assert chip_texts(area) == [("report.pdf", "109 bytes")]
    second.setFocus()
    qtbot.keyClick(second, Qt.Key.Key_Delete)
    assert chip_texts(area) == []
    assert not area.composer.chips.isVisible()
    area.composer.add_files(make_files(tmp_path)[:1])
    (chip,) = area.composer.chips.chips()
    chip.remove_button.setFocus()
    qtbot.keyClick(chip.remove_button, Qt.Key.Key_Space)
    assert chip_texts(area) == []


def test_many_chips_never_widen_the_composer(
    qtbot: QtBot, area: ChatAreaWidget, tmp_path: Path
) -> None:
    width = area.composer.minimumSizeHint().width()
    paths = []
    for number in range(12):
        path = tmp_path / f"a-rather-long-file-name-of-the-quarterly-report-{number}.txt"
        path.write_text("x")
        paths.append(path)
    area.composer.add_files(paths)
    assert len(chip_texts(area)) == 12
    assert area.composer.chips.minimumSizeHint().width() < 200
    assert area.composer.minimumSizeHint().width() <= max(width, 420)
    chip = area.composer.chips.chips()[0]
    assert chip.name_label.text() != chip.name  # elided; the whole name is its tooltip
    assert chip.toolTip() == chip.name


def test_files_dropped_on_the_composer_or_the_chat_are_attached(
    qtbot: QtBot, area: ChatAreaWidget, tmp_path: Path
) -> None:
    notes, report = make_files(tmp_path)
    assert drop_on(area.composer, [notes])
    assert chip_texts(area) == [("notes.txt", "2.0 kB")]
    assert drop_on(area.chat_view, [report])
    assert [name for name, _ in chip_texts(area)] == ["notes.txt", "report.pdf"]
    # Into the editor itself: attached, not typed in as a path.
    drop_mime = QMimeData()
    drop_mime.setUrls([QUrl.fromLocalFile(str(notes))])
    area.composer.editor.insertFromMimeData(drop_mime)
    assert len(chip_texts(area)) == 3
    assert area.composer.editor.toPlainText() == ""


def test_a_pasted_image_is_attached_as_png_in_memory(qtbot: QtBot, area: ChatAreaWidget) -> None:
    image = QImage(40, 30, QImage.Format.Format_ARGB32)
    image.fill(QColor("red"))
    QGuiApplication.clipboard().setImage(image)
    editor = area.composer.editor
    editor.setFocus()
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().mimeData().hasImage(), timeout=WAIT)
    qtbot.keyClick(editor, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: len(area.composer.attachments()) == 1, timeout=WAIT)
    (attachment,) = area.composer.attachments()
    assert attachment.name == "pasted-image-1.png"
    assert attachment.path is None
    assert attachment.data.startswith(b"\x89PNG")
    assert QImage.fromData(attachment.data).size() == image.size()
    assert chip_texts(area) == [("pasted-image-1.png", human_size(len(attachment.data)))]
    area.composer.add_image(image)
    assert area.composer.attachments()[1].name == "pasted-image-2.png"


def test_a_problem_from_the_check_blocks_send_with_its_reason(
    qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments, tmp_path: Path
) -> None:
    start_chat(qtbot, area)
    fake.problems["report.pdf"] = "this model does not accept images"
    area.composer.add_files(make_files(tmp_path))
    composer = area.composer
    qtbot.waitUntil(lambda: not composer.send_button.isEnabled(), timeout=WAIT)
    assert "report.pdf: this model does not accept images" in composer.reason.text()
    assert composer.reason.isVisible()
    bad = composer.chips.chips()[1]
    assert bad.toolTip() == "this model does not accept images"
    assert bad.problem == "this model does not accept images"
    composer.editor.setPlainText("look")
    composer.submit()
    assert fake.sent == []  # not sent
    qtbot.mouseClick(bad.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(composer.send_button.isEnabled, timeout=WAIT)
    assert not composer.reason.isVisible()


def test_send_passes_the_attachments_and_clears_the_chips(
    qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments, tmp_path: Path
) -> None:
    start_chat(qtbot, area)
    files = make_files(tmp_path)
    area.composer.add_files(files)
    qtbot.waitUntil(lambda: len(fake.checked) >= 1, timeout=WAIT)
    qtbot.waitUntil(area.composer.send_button.isEnabled, timeout=WAIT)
    area.composer.editor.setPlainText("summarise these")
    qtbot.keyClick(area.composer.editor, "\r")
    wait_answer(qtbot, area, 2)
    assert len(fake.sent) == 1
    text, sent = fake.sent[0]
    assert text == "summarise these"
    assert [a.path for a in sent] == files
    assert area.composer.attachments() == []
    assert not area.composer.chips.isVisible()


def test_a_refused_send_gives_the_chips_and_text_back(
    qtbot: QtBot, area: ChatAreaWidget, fake: FakeAttachments, tmp_path: Path
) -> None:
    start_chat(qtbot, area)
    files = make_files(tmp_path)
    area.composer.add_files(files)
    qtbot.waitUntil(lambda: len(fake.checked) >= 1, timeout=WAIT)
    fake.refuse = "the file is too large; attach a smaller one"
    area.composer.editor.setPlainText("read this")
    qtbot.keyClick(area.composer.editor, "\r")
    qtbot.waitUntil(lambda: len(area.composer.attachments()) == 2, timeout=WAIT)
    assert [a.path for a in area.composer.attachments()] == files
    assert area.composer.editor.toPlainText() == "read this"
    assert messages(area) == []


# --- messages -------------------------------------------------------------------------------


def attachment(message: Message, id_: str, name: str, media_type: str, size: int) -> Attachment:
    return Attachment(
        id=id_,
        message_id=message.id,
        chat_id=message.chat_id,
        name=name,
        media_type=media_type,
        size=size,
        sha256="0" * 64,
        position=0,
        created_at=time.time(),
    )


def files_part(area: ChatAreaWidget, message_id: str) -> Any:
    view = area.chat_view.list
    model = view.message_model
    number = model.row_number(message_id)
    assert number is not None
    for part in view.message_delegate.layout(model.row(number), model).parts:
        if part.key and part.key[0] == "files":
            return part
    return None


def test_cards_thumbnail_open_on_click_and_save_as(
    qtbot: QtBot,
    area: ChatAreaWidget,
    fake: FakeAttachments,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start_chat(qtbot, area)
    send(qtbot, area, "hello")
    question = messages(area)[0]
    picture = QImage(600, 300, QImage.Format.Format_ARGB32)
    picture.fill(QColor("blue"))
    fake.data = {"a1": b"%PDF-1.4 report", "a2": png_bytes(picture)}
    fake.by_message = {
        question.id: [
            attachment(question, "a1", "report.pdf", "application/pdf", 15),
            attachment(question, "a2", "photo.png", "image/png", len(fake.data["a2"])),
        ]
    }
    area.chat_view.reload()
    delegate = area.chat_view.list.message_delegate
    qtbot.waitUntil(lambda: delegate.has_thumbnail("a2"), timeout=WAIT)
    qtbot.waitUntil(lambda: "thumb:a2" in files_part(area, question.id).key[1], timeout=WAIT)
    part = files_part(area, question.id)
    text = part.document.toPlainText()
    assert "report.pdf" in text and "PDF, 15 bytes" in text and "photo.png" in text
    thumb = part.document.resource(1, QUrl("thumb:a2"))  # 1: an image resource
    assert thumb.width() == 240 and thumb.height() == 120
    accessible = area.chat_view.model.data(
        area.chat_view.model.index(0), Qt.ItemDataRole.AccessibleTextRole
    )
    assert "Attachments: report.pdf (15 bytes), photo.png" in accessible
    area.chat_view.list.viewport().grab()  # painted without error

    # A click on the report's card opens it in the window's viewer; it saves nothing.
    target = tmp_path / "saved.pdf"
    asked: list[str] = []

    def choose(_parent: Any, name: str) -> str:
        asked.append(name)
        return str(target)

    monkeypatch.setattr(chat_view_module, "choose_save_path", choose)
    view = area.chat_view.list
    model = view.message_model
    number = model.row_number(question.id)
    assert number is not None
    view.scrollTo(model.index(number))
    qtbot.waitUntil(lambda: view.visualRect(model.index(number)).top() >= 0, timeout=WAIT)
    document = part.document
    block = document.begin()
    while block.isValid() and "report.pdf" not in block.text():
        block = block.next()
    assert block.isValid()
    box = document.documentLayout().blockBoundingRect(block)
    rect = view.visualRect(model.index(number))
    point = QPoint(
        rect.left() + ROW_MARGIN_X + BUBBLE_PAD + int(box.left()) + 30,
        rect.top() + part.top + int(box.center().y()),
    )
    assert view.viewport().rect().contains(point)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=point)
    qtbot.waitUntil(lambda: bool(area.chat_view.findChildren(AttachmentViewerDialog)), timeout=WAIT)
    (viewer,) = area.chat_view.findChildren(AttachmentViewerDialog)
    assert viewer.name == "report.pdf" and viewer.isVisible()
    assert asked == [] and fake.saved == []
    # Its Save as saves a copy where the user chose.
    viewer.save_button.click()
    qtbot.waitUntil(lambda: bool(fake.saved), timeout=WAIT)
    assert asked == ["report.pdf"]
    assert fake.saved == [("a1", target)]
    viewer.close()
    qtbot.waitUntil(lambda: not area.chat_view.findChildren(AttachmentViewerDialog), timeout=WAIT)

    # The message's menu (right click, or the Menu key) offers the same per file.
    menu = area.chat_view.message_menu(question.id)
    assert menu is not None
    actions = {action.text(): action for action in menu.actions() if action.text()}
    assert "Save report.pdf as\u2026" in actions
    actions["Save photo.png as\u2026"].trigger()
    menu.deleteLater()
    qtbot.waitUntil(lambda: len(fake.saved) == 2, timeout=WAIT)
    assert asked == ["report.pdf", "photo.png"]
    assert fake.saved[1] == ("a2", target)

    # Locking drops the decrypted thumbnails with the rest.
    area.clear()
    assert not delegate.has_thumbnail("a2")
    assert area.chat_view.model.attachments == {}


def test_an_answer_shows_its_sources(
    qtbot: QtBot,
    area: ChatAreaWidget,
    unlocked_session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Sourced(Message):
        sources: tuple[str, ...] = ()

    service = unlocked_session.service
    real_open = service.open_chat

    async def open_chat(chat_id: str, **kwargs: Any) -> Any:
        chat, page, length = await real_open(chat_id, **kwargs)
        shown = [
            Sourced(
                **{
                    f.name: getattr(m, f.name)
                    for f in dataclasses.fields(Message)
                    if f.name != "sources"
                },
                sources=("report.pdf, p. 3", "notes.txt"),
            )
            if m.role == "assistant"
            else m
            for m in page.messages
        ]
        return chat, dataclasses.replace(page, messages=shown), length

    monkeypatch.setattr(service, "open_chat", open_chat)
    start_chat(qtbot, area)
    answer = send(qtbot, area, "what does the report say?")
    qtbot.waitUntil(lambda: files_part(area, answer.id) is not None, timeout=WAIT)
    text = files_part(area, answer.id).document.toPlainText()
    assert "Sources: report.pdf, p. 3; notes.txt" in text
    assert files_part(area, messages(area)[0].id) is None  # the question has none


# --- with the real chat service -----------------------------------------------------------


@pytest.fixture
def real_area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session)


def test_a_file_sent_with_the_real_service_shows_as_a_card_and_saves(
    qtbot: QtBot, real_area: ChatAreaWidget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    area = real_area
    start_chat(qtbot, area)
    notes = tmp_path / "notes.txt"
    notes.write_text("The meeting is on Tuesday.\n")
    area.composer.add_files([notes])
    qtbot.waitUntil(area.composer.send_button.isEnabled, timeout=WAIT)
    area.composer.editor.setPlainText("when is the meeting?")
    qtbot.keyClick(area.composer.editor, "\r")
    wait_answer(qtbot, area, 2)
    assert area.composer.attachments() == []
    question = messages(area)[0]
    qtbot.waitUntil(lambda: files_part(area, question.id) is not None, timeout=WAIT)
    assert "notes.txt" in files_part(area, question.id).document.toPlainText()
    (file,) = area.chat_view.model.attachments[question.id]
    target = tmp_path / "copy.txt"
    monkeypatch.setattr(chat_view_module, "choose_save_path", lambda _p, _n: str(target))
    area.chat_view.save_attachment(file.id)
    qtbot.waitUntil(target.exists, timeout=WAIT)
    assert target.read_text() == "The meeting is on Tuesday.\n"
