"""The message list with a scripted model: paging, coalesced streaming, links, errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication, QTextCursor, QTextDocument, QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.config import load_config
from app.session import Session
from app.store.models import MessageStatus, Tier
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_view import BUBBLE_PAD, ROW_MARGIN_X
from providers import ServerError
from tests.benchmarks.bench_chat_ui import bulk_chat
from tests.peers.scripted_provider import ScriptedModel, answer, endless, failing
from tests.qt.conftest import (
    close_session,
    closed_port_url,
    make_session,
    unlock_new_vault,
    write_config,
)
from tests.qt.drivers import shown_area

WAIT = 20_000


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session, size=(1100, 700))


def open_new_chat(qtbot: QtBot, area: ChatAreaWidget) -> str:
    area.new_chat()
    qtbot.waitUntil(lambda: area.chat_view.chat is not None, timeout=WAIT)
    chat = area.chat_view.chat
    assert chat is not None
    return chat.id


def send_and_wait(qtbot: QtBot, area: ChatAreaWidget, text: str) -> None:
    count = len(area.chat_view.model.messages)
    area.composer.editor.setPlainText(text)
    area.composer.submit()

    def done() -> bool:
        shown = area.chat_view.model.messages
        return (
            not area.chat_view.is_streaming()
            and len(shown) >= count + 2
            and shown[-1].status is not MessageStatus.PARTIAL
        )

    qtbot.waitUntil(done, timeout=WAIT)


def test_long_chat_opens_at_its_newest_page_and_pages_back(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    store = unlocked_session.library.store(Tier.STANDARD)
    chat_id = run_async(unlocked_session.runner.db(bulk_chat, store, 1000))
    view = area.chat_view
    area.open_chat(chat_id)
    qtbot.waitUntil(lambda: view.model.rowCount() == 100, timeout=WAIT)
    assert view.model.has_older
    assert view.model.messages[-1].content.startswith("Here is what I found about **item 999")
    qtbot.waitUntil(view.list.is_at_bottom)
    # Scrolling to the top fetches the page before, keeping the shown rows in place.
    bar = view.list.verticalScrollBar()
    bar.setValue(0)
    top_key = view.model.row(view.list.indexAt(QPoint(4, 4)).row()).key
    qtbot.waitUntil(lambda: view.model.rowCount() >= 200, timeout=WAIT)
    index = view.list.indexAt(QPoint(4, 4))
    assert view.model.row(index.row()).key == top_key
    assert bar.value() > 0


def test_streaming_is_repainted_in_batches(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    pieces = [f"word{n} " for n in range(400)]
    scripted_model.script = answer(*pieces, delay=0.001)
    open_new_chat(qtbot, area)
    painted: list[int] = []
    area.chat_view.list.message_delegate.streaming_painted.connect(painted.append)
    send_and_wait(qtbot, area, "stream please")
    assert area.chat_view.model.messages[-1].content == "".join(pieces)
    assert painted and len(set(painted)) < len(pieces) / 4  # coalesced, not one per delta
    assert painted == sorted(painted)


def test_code_copy_link_copies_the_block(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    scripted_model.script = answer("Try this:\n\n```python\nprint('copied')\n```\n")
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "code please")
    view = area.chat_view.list
    model = view.message_model
    row_number = model.rowCount() - 1
    row = model.row(row_number)

    def coloured() -> bool:  # the streamed code is highlighted once the answer is done
        parts = view.message_delegate.layout(row, model).parts
        return all(part.key[3] for part in parts if part.key[0] == "chunk")

    qtbot.waitUntil(coloured, timeout=WAIT)
    rect = view.visualRect(model.index(row_number))
    target = None
    for y in range(rect.top(), rect.bottom(), 2):
        for x in range(rect.left(), rect.right(), 4):
            local = QPoint(x, y) - rect.topLeft()
            hit = view.message_delegate.anchor_at(row, model, local)
            if hit is not None and hit[0] == "copy:0":
                target = QPoint(x, y)
                break
        if target is not None:
            break
    assert target is not None, "the code block has a Copy link"
    QGuiApplication.clipboard().clear()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=target)
    assert QGuiApplication.clipboard().text() == "print('copied')\n"


def test_raw_html_in_model_output_is_shown_as_text(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    hostile = "<script>alert(1)</script> <img src='https://tracker.example/p.png'> done"
    scripted_model.script = answer(hostile)
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "be hostile")
    view = area.chat_view.list
    model = view.message_model
    row = model.row(model.rowCount() - 1)
    layout = view.message_delegate.layout(row, model)
    text = "".join(part.document.toPlainText() for part in layout.parts)
    assert "<script>alert(1)</script>" in text
    assert "<img src='https://tracker.example/p.png'>" in text


def test_failed_answer_shows_error_inline_and_retry_answers_again(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    scripted_model.script = failing(
        ServerError("the server fell over", provider="local"), "partial "
    )
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "please fail")
    failed = area.chat_view.model.messages[-1]
    assert failed.status is MessageStatus.ERROR and failed.error
    view = area.chat_view.list
    layout = view.message_delegate.layout(view.message_model.row(1), view.message_model)
    footer = layout.parts[-1].document.toPlainText()
    assert "Retry" in footer and "fell over" in footer
    scripted_model.script = answer("better now")
    area.chat_view._on_action("retry", failed.id)
    qtbot.waitUntil(lambda: area.chat_view.model.messages[-1].content == "better now", timeout=WAIT)
    assert area.chat_view.model.messages[-1].versions == 2


def test_send_key_ctrl_enter(qtbot: QtBot, area: ChatAreaWidget) -> None:
    composer = area.composer
    composer.set_send_key("ctrl_enter")
    sent: list[str] = []
    composer.submitted.connect(sent.append)
    composer.editor.setPlainText("line one")
    composer.editor.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClick(composer.editor, Qt.Key.Key_Return)
    assert not sent and "\n" in composer.editor.toPlainText()
    qtbot.keyClick(composer.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert sent and sent[0].startswith("line one")
    composer.set_send_key("enter")
    composer.editor.setPlainText("two")
    composer.editor.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClick(composer.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert len(sent) == 1 and composer.editor.toPlainText() == "two\n"


def test_keyboard_navigation_between_chats(qtbot: QtBot, area: ChatAreaWidget) -> None:
    first = open_new_chat(qtbot, area)
    area.new_chat()
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and area.chat_view.chat.id != first,
        timeout=WAIT,
    )
    second = area.chat_view.chat_id
    qtbot.waitUntil(lambda: area.sidebar.model.rowCount() == 2, timeout=WAIT)
    area.select_next_chat()
    qtbot.waitUntil(lambda: area.chat_view.chat_id == first, timeout=WAIT)
    area.select_previous_chat()
    qtbot.waitUntil(lambda: area.chat_view.chat_id == second, timeout=WAIT)


def test_export_markdown_and_json(
    qtbot: QtBot, area: ChatAreaWidget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from app.ui import sidebar

    chat_id = open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "export me")
    markdown = tmp_path / "chat.md"
    monkeypatch.setattr(sidebar, "choose_save_path", lambda *_: str(markdown))
    area.sidebar.export(chat_id, "markdown")
    qtbot.waitUntil(markdown.exists, timeout=WAIT)
    assert "export me" in markdown.read_text(encoding="utf-8")
    exported = tmp_path / "chat.json"
    area.sidebar.export(chat_id, "json", path=str(exported))
    qtbot.waitUntil(exported.exists, timeout=WAIT)
    data = json.loads(exported.read_text(encoding="utf-8"))
    assert data["chats"][0]["messages"][0]["content"] == "export me"


def test_screenshot_of_a_conversation_is_not_blank(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel, tmp_path: Path
) -> None:
    scripted_model.script = answer(
        "Here is a table and some code:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "```python\ndef hello() -> str:\n    return 'hi'\n```\n"
    )
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "show me **markdown**")
    qtbot.wait(50)
    image = area.grab().toImage()
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)
    }
    assert len(colours) > 10
    image.save(str(tmp_path / "chat-area.png"))


def test_rename_and_pin_update_just_that_row(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    first = open_new_chat(qtbot, area)
    area.new_chat()
    qtbot.waitUntil(lambda: area.sidebar.model.rowCount() == 2, timeout=WAIT)
    model = area.sidebar.model
    assert model.summary(0).id != first  # the newer chat is on top
    area.sidebar.rename(first, "  My   renamed chat ")

    def title() -> str | None:
        row = model.row_of(first)
        return None if row is None else model.summary(row).title

    qtbot.waitUntil(lambda: title() == "My renamed chat", timeout=WAIT)
    area.sidebar.set_pinned(first, True)
    qtbot.waitUntil(lambda: model.summary(0).pinned, timeout=WAIT)
    assert model.summary(0).id == first
    menu = area.sidebar.chat_menu(model.summary(0))
    assert "Unpin" in [action.text() for action in menu.actions()]


def test_system_prompt_and_memory_are_saved(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, run_async: Callable[..., Any]
) -> None:
    chat_id = open_new_chat(qtbot, area)
    panel = area.settings_panel
    panel.system_prompt.setPlainText("Answer like a pirate.")
    panel.memory.setPlainText("The user's parrot is called Polly.")
    qtbot.waitUntil(
        lambda: run_async(unlocked_session.service.chat(chat_id)).memory.endswith("Polly."),
        timeout=WAIT,
    )
    chat = run_async(unlocked_session.service.chat(chat_id))
    assert chat.system_prompt == "Answer like a pirate."


def test_composer_says_why_it_cannot_send(qtbot: QtBot, area: ChatAreaWidget) -> None:
    from app.config import parse_config
    from app.store.models import Chat, TitleSource
    from app.ui.chat_settings import sending_blocked_reason

    config = parse_config(
        "default_llm: cloud\nllms:\n"
        "  - {provider_name: cloud, type: openai, base_url: 'https://api.example.com/v1',\n"
        "     model_name: big, locality: paid_cloud}\n",
        "test",
        {},
    )
    private = Chat("c1", "t", TitleSource.USER, Tier.PRIVATE, "", "", None, None, False,
                   None, 0.0, 0.0)  # fmt: skip
    reason = sending_blocked_reason(config, private)
    assert "on-prem" in reason
    assert sending_blocked_reason(config, None) == ""  # a Standard chat may use it
    assert "No model" in sending_blocked_reason(parse_config("llms: []\n", "t", {}), None)
    area.composer.set_blocked(reason)
    assert area.composer.reason.isVisible() and not area.composer.send_button.isEnabled()
    area.composer.editor.setPlainText("hello")
    sent: list[str] = []
    area.composer.submitted.connect(sent.append)
    area.composer.submit()
    assert not sent


# --- issue 12: Stop, code blocks, Copy -----------------------------------------------------


def _visible_rows(area: ChatAreaWidget) -> list[int]:
    """Rows that have pixels inside the viewport."""
    view = area.chat_view.list
    port = view.viewport().rect()
    return [
        number
        for number in range(view.message_model.rowCount())
        if view.visualRect(view.message_model.index(number)).intersects(port)
    ]


def _stop_after(qtbot: QtBot, area: ChatAreaWidget, characters: int) -> None:
    chat_view = area.chat_view
    known = {message.id for message in chat_view.model.messages}
    area.composer.submit()

    def streamed() -> bool:
        stream = chat_view.model.stream
        return stream is not None and stream.message_id not in known and stream.length > characters

    qtbot.waitUntil(streamed, timeout=WAIT)
    area.stop()

    def stopped() -> bool:
        shown = chat_view.model.messages
        return (
            not chat_view.is_streaming()
            and bool(shown)
            and shown[-1].status is MessageStatus.STOPPED
        )

    qtbot.waitUntil(stopped, timeout=WAIT)
    qtbot.wait(300)  # let the reload and measuring after the turn settle


@pytest.mark.parametrize("characters", [6000, 300])
def test_pane_shows_the_stopped_answer_at_the_bottom(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel, characters: int
) -> None:
    # Issue 12, item 4: after Stop a long answer left the pane blank, a short one sat at the
    # top with most of the pane blank below.
    open_new_chat(qtbot, area)
    for number in range(4):
        scripted_model.script = answer(f"answer {number} " + "words " * 80)
        send_and_wait(qtbot, area, f"question {number}")
    scripted_model.script = endless("more words ", delay=0.002)
    area.composer.editor.setPlainText("go on")
    _stop_after(qtbot, area, characters)
    view = area.chat_view.list
    model = view.message_model
    last = model.rowCount() - 1
    rect = view.visualRect(model.index(last))
    port = view.viewport().rect()
    assert last in _visible_rows(area), "the stopped answer is on screen"
    assert view.is_at_bottom()
    # The answer ends at the bottom of the pane, not above a blank area.
    assert abs(rect.bottom() - port.bottom()) <= 2 * view.verticalScrollBar().singleStep()
    assert rect.height() == view.message_delegate.layout(model.row(last), model).height


def test_long_code_lines_wrap_inside_the_message(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    # Issue 12, item 5: long code lines were cut off at the message's edge.
    long_line = "result = compute(" + ", ".join(f"argument_{n}" for n in range(60)) + ")"
    scripted_model.script = answer(f"Here:\n\n```python\n{long_line}\n```\n")
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "long code please")
    view = area.chat_view.list
    model = view.message_model
    delegate = view.message_delegate
    layout = delegate.layout(model.row(model.rowCount() - 1), model)
    width = delegate.content_width()
    for part in layout.parts:
        assert part.document.size().width() <= width + 1, "nothing is drawn past the edge"
    text = "".join(part.document.toPlainText() for part in layout.parts)
    assert "argument_59)" in text


def test_copy_on_a_code_block_keeps_the_view_still(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    # Issue 12, item 5: Copy on a code block jumped the view to the top of the message.
    prose = "\n\n".join(f"Paragraph {n}: " + "words " * 40 for n in range(30))
    scripted_model.script = answer(f"{prose}\n\n```python\nprint('copied')\n```\n\nThe end.")
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "a long answer with code at the end")
    view = area.chat_view.list
    model = view.message_model
    number = model.rowCount() - 1
    row = model.row(number)
    qtbot.waitUntil(
        lambda: all(
            part.key[3]
            for part in view.message_delegate.layout(row, model).parts
            if part.key[0] == "chunk"
        ),
        timeout=WAIT,
    )
    # The question above was the current row (clicked or reached with the keyboard).
    view.setCurrentIndex(model.index(number - 1))
    view.scrollToBottom()
    qtbot.wait(100)
    rect = view.visualRect(model.index(number))
    assert rect.top() < 0, "the message is taller than the pane and its top is off screen"
    target = None
    port = view.viewport().rect()
    for y in range(max(rect.top(), 0), min(rect.bottom(), port.bottom()), 2):
        for x in range(rect.left(), rect.right(), 4):
            hit = view.message_delegate.anchor_at(row, model, QPoint(x, y) - rect.topLeft())
            if hit is not None and hit[0] == "copy:0":
                target = QPoint(x, y)
                break
        if target is not None:
            break
    assert target is not None, "the code block's Copy link is on screen"
    before = view.verticalScrollBar().value()
    QGuiApplication.clipboard().clear()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=target)
    assert QGuiApplication.clipboard().text() == "print('copied')\n"
    qtbot.wait(100)
    assert view.verticalScrollBar().value() == before


def test_code_blocks_scroll_sideways_when_set_to(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    # ui.code_blocks: scroll - a long line is not wrapped; the block scrolls sideways.
    long_line = "result = compute(" + ", ".join(f"argument_{n}" for n in range(60)) + ")"
    scripted_model.script = answer(f"Here:\n\n```python\n{long_line}\n```\n")
    view = area.chat_view.list
    delegate = view.message_delegate
    delegate.wrap_code = False
    delegate.reset_caches()
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "long code please")
    model = view.message_model
    number = model.rowCount() - 1
    row = model.row(number)
    width = delegate.content_width()
    wide = [p for p in delegate.layout(row, model).parts if p.document.size().width() > width]
    assert wide, "the code block keeps its long line"
    part = wide[0]
    rect = view.visualRect(model.index(number))
    inside = rect.topLeft() + QPoint(ROW_MARGIN_X + BUBBLE_PAD + 40, part.top + 8)
    qtbot.waitUntil(lambda: view.visualRect(model.index(number)).contains(inside), timeout=WAIT)
    before = view.verticalScrollBar().value()
    event = QWheelEvent(
        QPointF(inside), QPointF(view.viewport().mapToGlobal(inside)), QPoint(0, 0),
        QPoint(0, -240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.ShiftModifier,
        Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QApplication.sendEvent(view.viewport(), event)
    assert delegate._offsets.get(part.key, 0.0) > 0, "the block scrolled sideways"
    assert view.verticalScrollBar().value() == before, "the list did not move"
    assert view.grab().isNull() is False  # painting a scrolled block works


def test_code_blocks_setting_is_read_from_the_config(
    qtbot: QtBot, tmp_path: Path, qt_profile: Path, run_async: Callable[..., Any]
) -> None:
    path = write_config(tmp_path / "config.yml", closed_port_url(), extra="  code_blocks: scroll\n")
    session = unlock_new_vault(make_session(load_config(path, {}), qt_profile), run_async)
    try:
        widget = ChatAreaWidget(session)
        assert widget.chat_view.list.message_delegate.wrap_code is False
        widget.deleteLater()
    finally:
        close_session(session)


def test_answer_shows_its_stats_line_and_a_question_none(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    # Issue 12, "Answer stats": time to first token, tokens, tokens/s and model under
    # each answer, in its footer (and in its accessible text).
    scripted_model.script = answer("Some ", "words ", "here.", delay=0.01)
    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "stats please")
    view = area.chat_view.list
    model = view.message_model
    delegate = view.message_delegate
    question, reply = model.row(model.rowCount() - 2), model.row(model.rowCount() - 1)
    assert reply.message is not None and reply.message.role == "assistant"
    footer = delegate.footer_text(reply, model)
    assert "Regenerate" in footer
    assert "3 tokens in " in footer and "time to first token" in footer
    assert "tokens/s" in footer
    accessible = model.data(model.index(model.rowCount() - 1), Qt.ItemDataRole.AccessibleTextRole)
    assert "3 tokens in " in accessible
    assert "tokens/s" not in delegate.footer_text(question, model)
    asked = model.data(model.index(model.rowCount() - 2), Qt.ItemDataRole.AccessibleTextRole)
    assert "tokens" not in asked
    # A narrow row elides the line instead of wrapping it.
    area.resize(420, 700)
    qtbot.waitUntil(lambda: delegate.content_width() < 300, timeout=WAIT)
    stats_line = delegate.footer_text(reply, model).splitlines()[-1]
    assert stats_line.endswith("\u2026")


def _line_starts(document: QTextDocument) -> list[tuple[str, int]]:
    """(block text, start) of every laid-out line of ``document``."""
    starts = []
    block = document.begin()
    while block.isValid():
        layout = block.layout()
        for number in range(layout.lineCount()):
            starts.append((block.text(), layout.lineAt(number).textStart()))
        block = block.next()
    return starts


def _breaks_mid_word(text: str, start: int) -> bool:
    return 0 < start < len(text) and text[start - 1].isalnum() and text[start].isalnum()


@pytest.mark.parametrize("width", [160, 240])
def test_narrow_messages_break_lines_between_words(qtbot: QtBot, width: int) -> None:
    # Issue 12, item 8: at 700 px (a ~150 px column) links, table cells ("pandas.read_csv(
    # chun / ksize=...)") and code lines broke in the middle of words.
    from app.store.models import Message, ThreadPage
    from app.ui.chat_view import MessageListView

    view = MessageListView()
    qtbot.addWidget(view)
    view.resize(width + 2 * (ROW_MARGIN_X + BUBBLE_PAD), 500)
    view.show()
    delegate = view.message_delegate
    qtbot.waitUntil(lambda: delegate.content_width() == width, timeout=WAIT)
    text = (
        "Read the documentation at https://pandas.pydata.org/docs/user_guide/io.html "
        "before reading large files in pieces with the chunksize parameter.\n\n"
        "| function | use |\n|---|---|\n"
        "| pandas.read_csv(chunksize=1000) | reads a file in chunks of rows |\n\n"
        "```python\nfor chunk in pandas.read_csv(path, chunksize=1000): process(chunk)\n```\n"
    )
    message = Message("m1", "c1", None, "assistant", text, MessageStatus.COMPLETE, 0.0)
    view.message_model.show_page("c1", ThreadPage([message], False), thread_length=None)
    model = view.message_model
    layout = delegate.layout(model.row(0), model)
    chunks = [part for part in layout.parts if part.key[0] == "chunk"]
    assert chunks
    for part in chunks:
        for line_text, start in _line_starts(part.document):
            assert not _breaks_mid_word(line_text, start), (line_text[:start], line_text[start:])
    # A table wider than the message keeps its words and scrolls sideways (not cut off).
    for part in chunks:
        if part.document.size().width() > width + 1:
            assert "pandas.read_csv(chunksize=1000)" in part.document.toPlainText()
            point = QPoint(ROW_MARGIN_X + BUBBLE_PAD + 4, part.top + 4)
            assert delegate.scroll_part(model.row(0), model, point, 40.0)
    # A single word longer than the whole line is broken where the line ends (the only
    # mid-word break): nothing is drawn past the message's edge.
    token = "x" * 200
    long_word = Message("m2", "c1", "m1", "user", f"hash {token} end", MessageStatus.COMPLETE, 1.0)
    view.message_model.show_page("c1", ThreadPage([message, long_word], False), thread_length=None)
    parts = delegate.layout(model.row(1), model).parts
    assert all(part.document.size().width() <= width + 1 for part in parts)
    assert token in "".join(part.document.toPlainText() for part in parts).replace("\n", "")


def test_a_message_that_could_not_be_deleted_says_so_until_dismissed(
    qtbot: QtBot, area: ChatAreaWidget, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.store.chats import StorageError

    open_new_chat(qtbot, area)
    send_and_wait(qtbot, area, "a question to keep")
    message_id = area.chat_view.model.messages[0].id

    async def refuse(*_args: object, **_kwargs: object) -> None:
        raise StorageError("The disk is full: free some space, then try again.")

    monkeypatch.setattr(area._session.service, "delete_message", refuse)
    errors: list[str] = []
    statuses: list[str] = []
    area.error_message.connect(errors.append)
    area.status_message.connect(statuses.append)
    area.chat_view.delete_message(message_id, confirmed=True)
    qtbot.waitUntil(lambda: bool(errors), timeout=10_000)
    assert "disk is full" in errors[0]
    assert not any("disk" in text for text in statuses)
    assert area.chat_view.model.messages[0].id == message_id


def test_no_full_garbage_collection_while_an_answer_streams(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    """A full collection walks every object (70-100 ms with long chats loaded): it waits
    while an answer streams, and comes back when the answer ends (app.gc_policy)."""
    import gc

    from app import gc_policy

    thresholds = gc.get_threshold()
    scripted_model.script = endless()
    open_new_chat(qtbot, area)
    area.composer.editor.setPlainText("stream until stopped")
    area.composer.submit()
    qtbot.waitUntil(area.chat_view.is_streaming, timeout=10_000)
    assert gc_policy.streaming_deferred()
    assert gc.get_threshold()[2] > thresholds[2]
    area.chat_view.stop()
    qtbot.waitUntil(lambda: not area.chat_view.is_streaming(), timeout=10_000)
    assert not gc_policy.streaming_deferred()
    assert gc.get_threshold() == thresholds
