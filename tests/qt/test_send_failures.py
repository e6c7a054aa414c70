"""Send failures shown where the user looks (issue 12, items 2 and 3).

A send refused by the policy or too long for the model's context says why under the
conversation (or, for a draft that cannot fit, at the composer before sending) with the
action that fixes it; the typed text stays in the composer; the side panel shows the
state that refused it; the status bar is not where the reason goes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from pytestqt.qtbot import QtBot

from app.config import load_config
from app.session import Session
from app.store.models import MessageStatus
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_view import NOTICE_KEY
from providers import ServerError
from tests.peers.scripted_provider import ScriptedModel, answer, failing
from tests.qt.conftest import closed_port_url, write_config
from tests.qt.drivers import WAIT, messages, shown_area, start_chat, wait_answer


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session)


@pytest.fixture
def status(area: ChatAreaWidget) -> list[str]:
    shown: list[str] = []
    area.status_message.connect(shown.append)
    return shown


def notice_text(area: ChatAreaWidget) -> str:
    notice = area.chat_view.model.notice
    return notice.text if notice is not None else ""


def notice_actions(area: ChatAreaWidget) -> list[str]:
    notice = area.chat_view.model.notice
    return [name for name, _label in notice.actions] if notice is not None else []


def notice_is_painted(area: ChatAreaWidget) -> bool:
    view = area.chat_view.list
    model = view.message_model
    number = model.row_number(NOTICE_KEY)
    if number is None:
        return False
    rect = view.visualRect(model.index(number))
    return rect.intersects(view.viewport().rect()) and rect.height() > 20


def type_and_send(qtbot: QtBot, area: ChatAreaWidget, text: str) -> None:
    area.composer.editor.setPlainText(text)
    qtbot.keyClick(area.composer.editor, "\r")


# --- item 2: the policy ---------------------------------------------------------------------


def test_policy_refusal_keeps_the_text_and_says_why_in_the_chat(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, tmp_path: Path,
    status: list[str],
) -> None:  # fmt: skip
    start_chat(qtbot, area, "private")
    assert area.settings_panel.provider_allowed("tiny")
    # The provider is re-labelled as a cloud one in Settings while the chat is open.
    relabelled = write_config(tmp_path / "cloud.yml", closed_port_url())
    text = relabelled.read_text(encoding="utf-8").replace(
        "    max_retries: 0\n", "    max_retries: 0\n    locality: paid_cloud\n"
    )
    relabelled.write_text(text, encoding="utf-8")
    unlocked_session.apply_config(load_config(relabelled, {}))
    typed = "A private question I took a while to write"
    type_and_send(qtbot, area, typed)
    qtbot.waitUntil(lambda: bool(notice_text(area)), timeout=WAIT)
    # The reason under the conversation, with the fix; nothing was saved.
    assert "cloud" in notice_text(area).lower() or "on-prem" in notice_text(area)
    assert notice_actions(area) == ["choose-model"]
    qtbot.waitUntil(lambda: notice_is_painted(area), timeout=WAIT)
    assert messages(area) == []
    # The text is back in the composer.
    assert area.composer.editor.toPlainText() == typed
    # The side panel and the composer show the state that refused it, without a chat switch.
    assert not area.settings_panel.provider_allowed("tiny")
    assert area.composer.is_blocked and area.composer.reason.isVisible()
    assert not any("refused" in line.lower() or "cloud" in line.lower() for line in status)
    # The fix is a link in the notice: it opens the chat's model picker.
    view = area.chat_view.list
    model = view.message_model
    number = model.row_number(NOTICE_KEY)
    assert number is not None
    rect = view.visualRect(model.index(number))
    target = None
    for y in range(rect.top(), rect.bottom(), 2):
        for x in range(rect.left(), rect.right(), 4):
            hit = view.message_delegate.anchor_at(
                model.row(number), model, QPoint(x, y) - rect.topLeft()
            )
            if hit is not None and hit[0] == "action:choose-model":
                target = QPoint(x, y)
                break
        if target is not None:
            break
    assert target is not None, "the notice has a Choose another model link"
    fixes: list[str] = []
    area.chat_view.fix_requested.connect(fixes.append)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=target)
    assert fixes == ["choose-model"]
    qtbot.waitUntil(lambda: area.settings_panel.providers.view().isVisible(), timeout=WAIT)
    area.settings_panel.providers.hidePopup()


# --- item 3: a message longer than the context ----------------------------------------------


def test_a_draft_that_cannot_fit_is_not_sent_and_the_meter_says_why(
    qtbot: QtBot, area: ChatAreaWidget, status: list[str]
) -> None:
    start_chat(qtbot, area)
    composer = area.composer
    qtbot.waitUntil(lambda: composer.context_use is not None, timeout=WAIT)
    assert composer.meter.isVisible()
    assert "512 tokens (configured)" in composer.meter.text()
    typed = "a long paste " * 300  # ~3,900 bytes: far over the 512-token context
    type_and_send(qtbot, area, typed)
    qtbot.wait(200)
    assert composer.editor.toPlainText() == typed, "the text stays"
    assert messages(area) == [] and not area.chat_view.is_streaming()
    assert "Shorten it by about" in composer.meter.text()
    assert composer.choose_model.isVisible()
    assert status == []


def test_a_message_the_service_refuses_as_too_long_is_given_back_with_the_fix(
    qtbot: QtBot, area: ChatAreaWidget, status: list[str]
) -> None:
    # Before the meter knows the chat (or when the chat changed meanwhile) the service's
    # own check refuses: the question is not added, the reason shows in the chat.
    start_chat(qtbot, area)
    qtbot.waitUntil(lambda: area.composer.context_use is not None, timeout=WAIT)
    area.composer.set_context(None)
    typed = "a long paste " * 300
    type_and_send(qtbot, area, typed)
    qtbot.waitUntil(lambda: bool(notice_text(area)), timeout=WAIT)
    assert "Shorten it by about" in notice_text(area)
    assert notice_actions(area) == ["shorten", "choose-model"]
    assert messages(area) == []
    assert area.composer.editor.toPlainText() == typed
    assert status == []
    # Shortened, it is sent; the notice goes.
    area.composer.editor.setPlainText("a short question")
    qtbot.keyClick(area.composer.editor, "\r")
    wait_answer(qtbot, area, 2)
    assert area.chat_view.model.notice is None


def test_a_server_refusal_shows_in_place_of_the_answer_with_the_fix(
    qtbot: QtBot, area: ChatAreaWidget, status: list[str]
) -> None:
    # The scripted model counts a token per byte (as the tiny llama-server model does):
    # ~1,500 bytes pass our estimate but not the server.
    start_chat(qtbot, area)
    qtbot.waitUntil(lambda: area.composer.context_use is not None, timeout=WAIT)
    type_and_send(qtbot, area, "word " * 300)
    answer_row = wait_answer(qtbot, area, 2)
    assert answer_row.status is MessageStatus.ERROR
    view = area.chat_view.list
    model = view.message_model
    layout = view.message_delegate.layout(model.row(model.rowCount() - 1), model)
    footer = layout.parts[-1].document.toPlainText()
    assert "context size (1504 tokens, context 512)" in footer
    assert "Shorten the question" in footer and "Choose another model" in footer
    assert status == []


def test_a_provider_error_is_shown_in_the_answer_not_the_status_bar(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel, status: list[str]
) -> None:
    scripted_model.script = failing(ServerError("the server fell over", provider="tiny"))
    start_chat(qtbot, area)
    type_and_send(qtbot, area, "please fail")
    failed = wait_answer(qtbot, area, 2)
    assert failed.status is MessageStatus.ERROR
    assert status == []
    scripted_model.script = answer("fine now")


def test_sending_clears_the_composer_as_an_undoable_edit(
    qtbot: QtBot, area: ChatAreaWidget
) -> None:
    start_chat(qtbot, area)
    type_and_send(qtbot, area, "keep me around")
    wait_answer(qtbot, area, 2)
    assert area.composer.editor.toPlainText() == ""
    area.composer.editor.undo()
    assert area.composer.editor.toPlainText() == "keep me around"


def test_a_first_message_whose_chat_cannot_be_made_comes_back_with_the_reason(
    qtbot: QtBot,
    area: ChatAreaWidget,
    status: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing open: the first message starts a chat; when that fails (a full disk), the
    reason is shown in a dialog, not the status bar, and the message is back in the box."""
    from PySide6.QtWidgets import QMessageBox

    from app.store.chats import StorageError

    async def refuse(*_args: object, **_kwargs: object) -> None:
        raise StorageError("The disk is full: free some space.")

    monkeypatch.setattr(area._session.service, "create_chat", refuse)
    shown: list[str] = []
    monkeypatch.setattr(
        QMessageBox, "warning", lambda _parent, _title, text, *_rest: shown.append(text)
    )
    assert area.chat_view.chat_id is None
    area.composer.editor.setPlainText("a first question worth keeping")
    area.composer.submit()
    qtbot.waitUntil(lambda: bool(shown), timeout=WAIT)
    assert "The disk is full" in shown[0]
    assert area.composer.editor.toPlainText() == "a first question worth keeping"
    assert not any("disk" in line for line in status)
