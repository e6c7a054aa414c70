"""A streaming answer is drawn block by block: each frame renders only its open last
block, and once the answer ends it is drawn exactly as the same text opened from the store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.session import Session
from app.store.models import Message, MessageStatus, ThreadPage
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_view import MessageListView, _blocks_of, _Stream
from app.ui.markdown import Chunk, render_markdown, split_blocks
from tests.peers.scripted_provider import ScriptedModel, answer
from tests.qt.drivers import shown_area

WAIT = 20_000

# Paragraphs, a list continuing over several deltas, a code fence opened late (its blank
# line must not end it), a table that is a paragraph until its delimiter row, math.
ANSWER = (
    "Here is the plan, explained in a sentence long enough to wrap once or twice.\n\n"
    "1. The first step\n2. The second step\n3. The third step\n\n"
    "Some code:\n\n"
    "```python\ndef square(x: int) -> int:\n\n    return x * x\n```\n\n"
    "| name | value |\n|------|-------|\n| a    | 1     |\n| b    | 2     |\n\n"
    "The area is $\\pi r^2$ and\n\n$$\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}$$\n\n"
    "- a bullet\n- another with `code`\n\n"
    "> a quote to end with\n\n"
)


def _message(content: str = "") -> Message:
    return Message(
        id="answer", chat_id="chat", parent_id=None, role="assistant", content=content,
        status=MessageStatus.PARTIAL, created_at=0.0,
    )  # fmt: skip


@pytest.fixture
def view(qtbot: QtBot) -> Iterator[MessageListView]:
    widget = MessageListView()
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    # (its width stays the same when the text grows taller than the view)
    widget.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
    widget.show()
    widget.message_model.show_page(
        "chat", ThreadPage([_message()], has_older=False), thread_length=1
    )
    yield widget


def _stream_to(view: MessageListView, stream: _Stream, text: str) -> list[Any]:
    """Let the stream show ``text`` and lay its row out (as a repaint does)."""
    stream.pieces[:] = [text]
    stream.length = len(text)
    stream.take()
    model = view.message_model
    return view.message_delegate.layout(model.row(0), model).parts


def test_blocks_of_a_chunk_cover_it_and_keep_an_open_fence() -> None:
    text = ANSWER * 3
    for chunk in split_blocks(text, soft_limit=200, hard_limit=260):
        blocks = _blocks_of(chunk)
        assert "\n".join(block.text for block in blocks) == chunk.text
        assert blocks[0].opens_in_fence == chunk.opens_in_fence
    # A blank line inside a code block does not start a new block.
    fenced = _blocks_of(Chunk("Intro\n\n```\na\n\nb\n```\n\nAfter"))
    assert [block.text for block in fenced] == ["Intro\n", "```\na\n\nb\n```\n", "After"]


def test_each_frame_renders_only_the_open_last_block(view: MessageListView) -> None:
    stream = _Stream("answer")
    view.message_model.start_stream(stream)
    documents: dict[str, Any] = {}
    for end in range(1, len(ANSWER) + 1, 7):
        text = ANSWER[:end]
        parts = _stream_to(view, stream, text)
        # Only the last block grows (the footer follows it); the blocks before it are
        # rendered once and reused.
        assert [part.is_growing for part in parts][-2:] == [True, False]
        assert sum(part.is_growing for part in parts) == 1
        last_block = _blocks_of(split_blocks(text)[-1])[-1]
        assert parts[-2].key[1] == last_block.text
        for part in parts:
            if not part.is_growing and part.key[0] == "block":
                assert documents.setdefault(part.key[1], part.document) is part.document
    # The code fence opened late holds its blank line and the code after it.
    fence = ANSWER.index("```python")
    parts = _stream_to(view, stream, ANSWER[: ANSWER.index("x * x", fence) + 5])
    assert parts[-2].is_growing and parts[-2].key[1].startswith("```python")
    assert "return x * x" in parts[-2].document.toPlainText()
    # The table is a paragraph until its delimiter row arrives, then a table.
    table = ANSWER.index("| name")
    parts = _stream_to(view, stream, ANSWER[: table + len("| name | value |\n")])
    assert parts[-2].document.toHtml().count("<table") == 0
    parts = _stream_to(view, stream, ANSWER[: table + len("| name | value |\n|------|---")])
    assert parts[-2].document.toHtml().count("<table") == 1


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session, size=(1000, 700))


def _drawn(area: ChatAreaWidget) -> list[tuple[Any, ...]]:
    view = area.chat_view.list
    model = view.message_model
    row = model.row(model.rowCount() - 1)
    return [
        (part.key[0], part.key[1], part.key[0] == "chunk" and part.key[3], part.document.toHtml())
        for part in view.message_delegate.layout(row, model).parts
    ]


def test_streamed_answer_ends_drawn_as_opened_from_the_store(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    text = ANSWER * 4  # several chunks
    pieces = [text[n : n + 5] for n in range(0, len(text), 5)]
    scripted_model.script = answer(*pieces, delay=0.001)
    area.new_chat()
    qtbot.waitUntil(lambda: area.chat_view.chat is not None, timeout=WAIT)
    chat = area.chat_view.chat
    assert chat is not None
    area.composer.editor.setPlainText("explain")
    area.composer.submit()
    view = area.chat_view

    def done() -> bool:
        shown = view.model.messages
        return (
            not view.is_streaming()
            and len(shown) == 2
            and shown[-1].status is MessageStatus.COMPLETE
            and view.model.stream is None
        )

    qtbot.waitUntil(done, timeout=WAIT)
    assert view.model.messages[-1].content == text

    def settled() -> bool:  # every chunk drawn whole and coloured (done when idle)
        drawn = [(kind, coloured) for kind, _, coloured, _ in _drawn(area) if kind != "footer"]
        return all(kind == "chunk" and coloured for kind, coloured in drawn)

    qtbot.waitUntil(settled, timeout=WAIT)
    streamed = _drawn(area)
    assert len(streamed) > 3  # the chunks and the footer
    # The same text opened from the store, with nothing cached.
    view.open_chat(None)
    view.list.message_delegate.reset_caches()
    QApplication.processEvents()
    view.open_chat(chat.id)
    qtbot.waitUntil(lambda: len(view.model.messages) == 2, timeout=WAIT)
    assert _drawn(area) == streamed


def test_a_completed_chunk_is_replaced_by_its_coloured_whole_when_idle(
    view: MessageListView,
) -> None:
    stream = _Stream("answer")
    view.message_model.start_stream(stream)
    text = ANSWER * 3
    chunks = split_blocks(text)
    assert len(chunks) > 1
    parts = _stream_to(view, stream, text)
    assert parts[0].key[0] == "block"  # not yet made whole
    delegate = view.message_delegate
    # Steps per chunk (its coloured HTML, its document, its picture, then shown), one at
    # a time while the answer streams: until the last, nothing changes on screen.
    for _ in range(3):
        delegate._highlight_slice()
        assert _stream_to(view, stream, text)[0].key[0] == "block"
    delegate._highlight_slice()
    parts = _stream_to(view, stream, text)
    assert parts[0].key[:2] == ("chunk", chunks[0].text) and parts[0].key[3]
    assert not parts[0].is_growing


def test_a_width_change_lays_documents_out_again_without_rendering_markdown(
    view: MessageListView, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A growing answer makes the view's scroll bar appear: every document is made again
    # at the new width, but the Markdown of the blocks already shown is not rendered again.
    stream = _Stream("answer")
    view.message_model.start_stream(stream)
    text = ANSWER + "Unique ending for this test.\n\n"
    before = _stream_to(view, stream, text)
    rendered: list[str] = []

    def counting(text: str, **options: Any) -> Any:
        rendered.append(text)
        return render_markdown(text, **options)

    monkeypatch.setattr("app.ui.chat_view.render_markdown", counting)
    view.resize(700, 700)
    QApplication.processEvents()
    after = _stream_to(view, stream, text)
    width = view.message_delegate.content_width()
    assert after[0].document.textWidth() == width != before[0].document.textWidth()
    assert [part.key[1] for part in after] == [part.key[1] for part in before]
    assert rendered == []
