"""Read aloud in the window (issue 15): the answers' speaker button and Stop, the
shortcuts, auto-read per chat, refusals said in the chat, the speaker's lifecycle.

The speaker is ``tests.qt.fake_speaker.FakeSpeaker``: the window's ``Speaker`` interface
with the real tier policy and no audio (the real speaker has its own tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, QPoint, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMenu
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig, load_config
from app.session import Session
from app.store.models import ChatParams, Message, MessageStatus, Tier
from app.ui import main_window as main_window_module
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_view import NOT_READ, NOTICE_KEY, ChatViewWidget
from app.ui.help import shortcut_rows
from app.ui.main_window import MainWindow
from tests.peers.scripted_provider import ScriptedModel, endless, is_title_request
from tests.qt.conftest import QT_PASSPHRASE, closed_port_url, write_config
from tests.qt.drivers import WAIT, messages, press, send, shown_area, start_chat, wait_answer
from tests.qt.fake_speaker import ENGINES, FakeSpeaker

ANSWER = "The moon is about **384,400 km** away. It drifts off by 3.8 cm a year."

CLOUD_ONLY = """\
tts:
  - type: openai
    name: cloud-voices
    base_url: https://speech.example.com/v1
    locality: paid_cloud
"""


@pytest.fixture
def engines() -> str:
    """The ``tts:`` part of the test's config (a test module or test may override it)."""
    return ENGINES


@pytest.fixture
def qt_config(tmp_path: Path, engines: str) -> LoadedConfig:
    """The Qt tier's config (provider ``tiny`` answering from ``scripted_model``) with
    the speech engines of ``engines``."""
    return load_config(write_config(tmp_path / "config.yml", closed_port_url(), extra=engines), {})


@pytest.fixture
def scripted_model() -> ScriptedModel:
    return ScriptedModel(text=ANSWER, context_size=512)


@pytest.fixture
def speaker(unlocked_session: Session) -> Iterator[FakeSpeaker]:
    fake = FakeSpeaker(unlocked_session)
    yield fake
    fake.deleteLater()


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session, speaker: FakeSpeaker) -> Iterator[ChatAreaWidget]:
    for widget in shown_area(qtbot, unlocked_session):
        widget.set_speaker_source(lambda: speaker)
        yield widget


def footer(view: ChatViewWidget, message_id: str) -> str:
    number = view.model.row_number(message_id)
    assert number is not None
    return view.list.message_delegate.footer_text(view.model.row(number), view.model)


def link_point(view: ChatViewWidget, key: str, href: str) -> QPoint:
    """Where the link ``href`` of row ``key`` is painted (viewport coordinates)."""
    lst = view.list
    model = lst.message_model
    number = model.row_number(key)
    assert number is not None
    lst.scrollTo(model.index(number))
    rect = lst.visualRect(model.index(number))
    row = model.row(number)
    port = lst.viewport().rect()
    for y in range(max(rect.top(), 0), min(rect.bottom(), port.bottom()), 2):
        for x in range(rect.left(), rect.right(), 3):
            hit = lst.message_delegate.anchor_at(row, model, QPoint(x, y) - rect.topLeft())
            if hit is not None and hit[0] == href:
                return QPoint(x, y)
    raise AssertionError(f"no {href} link painted in row {key}")


def click_link(qtbot: QtBot, view: ChatViewWidget, key: str, href: str) -> None:
    qtbot.mouseClick(
        view.list.viewport(), Qt.MouseButton.LeftButton, pos=link_point(view, key, href)
    )


def menu_texts(menu: QMenu | None) -> list[str]:
    assert menu is not None
    return [action.text() for action in menu.actions() if not action.isSeparator()]


def streamed(view: ChatViewWidget) -> int:
    """Characters of the answer arriving (0: none yet)."""
    stream = view.model.stream
    return stream.length if stream is not None else 0


def notice(view: ChatViewWidget) -> tuple[str, str, list[str]] | None:
    row = view.model.notice
    if row is None:
        return None
    return row.title, row.text, [name for name, _label in row.actions]


# --- the speaker button ------------------------------------------------------------------------


def test_each_answer_has_a_speaker_button_that_becomes_stop_while_it_is_read(
    qtbot: QtBot, area: ChatAreaWidget, speaker: FakeSpeaker
) -> None:
    start_chat(qtbot, area)
    first = send(qtbot, area, "How far is the moon?")
    second = send(qtbot, area, "And the sun?")
    view = area.chat_view
    question = messages(area)[0]
    assert question.role == "user"
    assert "Read aloud" not in footer(view, question.id)
    for answer in (first, second):
        assert "Read aloud" in footer(view, answer.id)
        assert "Stop reading" not in footer(view, answer.id)
    # Its tooltip names the shortcut; the answer's menu has it too (keyboard users).
    point = link_point(view, first.id, "action:read")
    assert view.list.action_tip_at(point) == "Read this answer aloud (Ctrl+Shift+R)"
    menu = view.message_menu(first.id)
    assert menu is not None
    read = next(a for a in menu.actions() if a.text() == "Read aloud")
    assert read.shortcut() == QKeySequence("Ctrl+Shift+R")
    assert "Read aloud" not in menu_texts(view.message_menu(question.id))

    click_link(qtbot, view, first.id, "action:read")
    assert [(s.key, s.tier, s.entry.name, s.text) for s in speaker.spoken] == [
        (first.id, Tier.STANDARD, "kokoro", ANSWER)
    ]
    qtbot.waitUntil(lambda: "Stop reading" in footer(view, first.id), timeout=WAIT)
    assert "Read aloud" not in footer(view, first.id)
    assert "Read aloud" in footer(view, second.id)  # only the answer being read
    assert view.list.action_tip_at(link_point(view, first.id, "action:stop-reading")) == (
        "Stop reading aloud (Esc)"
    )
    assert "Stop reading" in menu_texts(view.message_menu(first.id))

    click_link(qtbot, view, first.id, "action:stop-reading")
    assert speaker.stops == 1 and speaker.speaking_key is None
    qtbot.waitUntil(lambda: "Read aloud" in footer(view, first.id), timeout=WAIT)

    # Another answer: the first stops; reading to its end turns Stop back.
    click_link(qtbot, view, second.id, "action:read")
    qtbot.waitUntil(lambda: "Stop reading" in footer(view, second.id), timeout=WAIT)
    speaker.finish()
    qtbot.waitUntil(lambda: "Read aloud" in footer(view, second.id), timeout=WAIT)


def test_a_failure_after_reading_started_is_said_at_that_answer(
    qtbot: QtBot, area: ChatAreaWidget, speaker: FakeSpeaker
) -> None:
    start_chat(qtbot, area)
    reply = send(qtbot, area, "How far is the moon?")
    view = area.chat_view
    assert view.read_aloud(reply.id)
    qtbot.waitUntil(lambda: "Stop reading" in footer(view, reply.id), timeout=WAIT)
    banner: list[str] = []
    area.error_message.connect(banner.append)
    speaker.fail("the speech server at http://127.0.0.1:8880/v1 did not answer; is it running?")
    qtbot.waitUntil(lambda: "Not read aloud: the speech server" in footer(view, reply.id))
    assert "Read aloud" in footer(view, reply.id)  # to try again
    assert banner == []  # said where it happened, not in the window's banner
    assert view.read_aloud(reply.id)
    qtbot.waitUntil(lambda: "Not read aloud" not in footer(view, reply.id), timeout=WAIT)


def test_read_aloud_reads_the_focused_answer_else_the_last_one(
    qtbot: QtBot, area: ChatAreaWidget, speaker: FakeSpeaker
) -> None:
    start_chat(qtbot, area)
    first = send(qtbot, area, "How far is the moon?")
    last = send(qtbot, area, "And the sun?")
    view = area.chat_view
    assert view.answer_to_read() == last  # nothing focused: the last answer
    number = view.model.row_number(first.id)
    assert number is not None
    view.list.setFocus(Qt.FocusReason.OtherFocusReason)
    qtbot.waitUntil(view.list.hasFocus)
    view.list.setCurrentIndex(view.model.index(number))
    assert view.answer_to_read() == first
    # A question focused: the last answer.
    view.list.setCurrentIndex(view.model.index(number - 1))
    assert view.answer_to_read() == last
    # The answer being read: reading it again stops it.
    view.list.setCurrentIndex(view.model.index(number))
    area.read_aloud()
    assert speaker.speaking_key == first.id
    area.read_aloud()
    assert speaker.speaking_key is None and speaker.stops == 1


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engines", [CLOUD_ONLY])
def test_a_tier_refusing_the_engine_is_said_in_the_chat_and_nothing_is_sent(
    qtbot: QtBot, area: ChatAreaWidget, speaker: FakeSpeaker
) -> None:
    start_chat(qtbot, area, "private")
    reply = send(qtbot, area, "How far is the moon?")
    view = area.chat_view
    assert not view.read_aloud(reply.id)
    assert speaker.spoken == []  # the cloud engine received nothing
    shown = notice(view)
    assert shown is not None
    title, text, actions = shown
    assert title == NOT_READ
    assert "cloud-voices" in text and "Private" in text
    assert actions == ["voice-settings"]
    assert "Read aloud" in footer(view, reply.id)  # the answer itself is as it was
    # The fix: Settings, Voice.
    pages: list[str] = []
    area.settings_requested.connect(pages.append)
    click_link(qtbot, view, NOTICE_KEY, "action:voice-settings")
    assert pages == ["voice"]


@pytest.mark.parametrize("engines", [""])
def test_no_engine_is_said_in_the_chat_with_where_to_add_one(
    qtbot: QtBot, area: ChatAreaWidget, speaker: FakeSpeaker
) -> None:
    start_chat(qtbot, area)
    reply = send(qtbot, area, "How far is the moon?")
    area.read_aloud()
    shown = notice(area.chat_view)
    assert shown is not None and shown[0] == NOT_READ
    assert "no speech engines are configured" in shown[1].lower()
    assert speaker.spoken == []
    assert reply.content == ANSWER


# --- auto-read --------------------------------------------------------------------------------


def test_auto_read_is_kept_with_the_chat_and_reads_each_answer_as_it_streams(
    qtbot: QtBot,
    area: ChatAreaWidget,
    speaker: FakeSpeaker,
    unlocked_session: Session,
    scripted_model: ScriptedModel,
    run_async: Callable[..., Any],
) -> None:
    chat_id = start_chat(qtbot, area)
    panel = area.settings_panel
    assert not panel.read_aloud.isChecked()
    panel.read_aloud.click()

    def kept() -> bool:
        chat = area.chat_view.chat
        return chat is not None and chat.params.read_aloud is True

    qtbot.waitUntil(kept, timeout=WAIT)
    stored = run_async(unlocked_session.service.chat(chat_id))
    assert stored.params == ChatParams(read_aloud=True)
    # Another chat does not read aloud; back in this one the box is ticked again.
    area.new_chat()
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and area.chat_view.chat.id != chat_id,
        timeout=WAIT,
    )
    assert not panel.read_aloud.isChecked()
    area.open_chat(chat_id)
    qtbot.waitUntil(panel.read_aloud.isChecked, timeout=WAIT)

    reply = send(qtbot, area, "How far is the moon?")
    assert len(speaker.spoken) == 1
    spoken = speaker.spoken[0]
    assert spoken.key == reply.id and spoken.tier == Tier.STANDARD
    assert spoken.feed is not None
    assert len(spoken.feed.deltas) > 3  # fed as it streamed, not at the end
    assert spoken.feed.text == reply.content == ANSWER
    assert spoken.feed.ended and not spoken.feed.cancelled
    # The model was not sent the setting (it is no model parameter).
    request = next(r for _name, r in reversed(scripted_model.requests) if not is_title_request(r))
    assert "read_aloud" not in repr(request) and "read aloud" not in repr(request).lower()

    panel.read_aloud.click()
    qtbot.waitUntil(lambda: not kept(), timeout=WAIT)
    send(qtbot, area, "And the sun?")
    assert len(speaker.spoken) == 1  # off: not read


def test_stopping_an_answer_stops_reading_it(
    qtbot: QtBot, area: ChatAreaWidget, speaker: FakeSpeaker, scripted_model: ScriptedModel
) -> None:
    start_chat(qtbot, area)
    area.settings_panel.read_aloud.click()
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and bool(area.chat_view.chat.params.read_aloud),
        timeout=WAIT,
    )
    scripted_model.script = endless()
    area.composer.editor.setPlainText("Talk forever")
    qtbot.keyClick(area.composer.editor, "\r")
    qtbot.waitUntil(
        lambda: bool(speaker.spoken) and len(speaker.spoken[0].feed.deltas) > 2,  # type: ignore[union-attr]
        timeout=WAIT,
    )
    feed = speaker.spoken[0].feed
    assert feed is not None
    qtbot.waitUntil(lambda: "Stop reading" in footer(area.chat_view, feed.key), timeout=WAIT)
    area.stop()
    wait_answer(qtbot, area, 2)
    assert feed.cancelled and not feed.ended
    assert speaker.speaking_key is None


@pytest.mark.parametrize("engines", [CLOUD_ONLY])
def test_auto_read_refused_is_said_once_and_the_answer_is_unaffected(
    qtbot: QtBot, area: ChatAreaWidget, speaker: FakeSpeaker
) -> None:
    start_chat(qtbot, area, "private")
    area.settings_panel.read_aloud.click()
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and bool(area.chat_view.chat.params.read_aloud),
        timeout=WAIT,
    )
    reply = send(qtbot, area, "How far is the moon?")
    assert reply.content == ANSWER  # streamed and saved as ever
    assert speaker.spoken == []
    shown = notice(area.chat_view)
    assert shown is not None and shown[0] == NOT_READ and "cloud-voices" in shown[1]
    rows = [area.chat_view.model.row(n).key for n in range(area.chat_view.model.rowCount())]
    assert rows.count(NOTICE_KEY) == 1  # said once, not for each piece of the answer


# --- the window -------------------------------------------------------------------------------


@pytest.fixture
def window_speakers(monkeypatch: pytest.MonkeyPatch) -> list[FakeSpeaker]:
    """Every speaker the window makes (fakes)."""
    made: list[FakeSpeaker] = []

    def make(session: Session, parent: QObject) -> FakeSpeaker:
        made.append(FakeSpeaker(session, parent))
        return made[-1]

    monkeypatch.setattr(main_window_module, "make_speaker", make)
    return made


def test_the_window_reads_with_ctrl_shift_r_stops_with_esc_and_closes_its_speaker_on_lock(
    qtbot: QtBot, main_window: MainWindow, window_speakers: list[FakeSpeaker]
) -> None:
    area = main_window.chat_area
    assert area is not None
    assert window_speakers == []  # no audio is set up before it is needed
    start_chat(qtbot, area)
    first: Message = send(qtbot, area, "How far is the moon?")
    last = send(qtbot, area, "And the sun?")
    assert first.id != last.id
    press(qtbot, main_window, "Ctrl+Shift+R")
    assert len(window_speakers) == 1
    speaker = window_speakers[0]
    assert speaker.speaking_key == last.id
    qtbot.waitUntil(lambda: "Stop reading" in footer(area.chat_view, last.id), timeout=WAIT)
    press(qtbot, main_window, "Esc")
    assert speaker.speaking_key is None and speaker.stops == 1
    qtbot.waitUntil(lambda: "Read aloud" in footer(area.chat_view, last.id), timeout=WAIT)
    # The menu's Stop reading does the same.
    press(qtbot, main_window, "Ctrl+Shift+R")
    assert speaker.speaking_key == last.id
    main_window.stop_reading_action.trigger()
    assert speaker.speaking_key is None

    # Both are in the Chat menu and in Help's list, with their keys.
    chat_menu = next(a.menu() for a in main_window.menuBar().actions() if a.text() == "&Chat")
    assert isinstance(chat_menu, QMenu)
    assert {main_window.read_aloud_action, main_window.stop_reading_action} <= set(
        chat_menu.actions()
    )
    rows = dict(shortcut_rows(main_window.all_actions()))
    assert rows["Read aloud"] == "Ctrl+Shift+R"
    assert rows["Stop reading"] == "Esc"
    assert rows["Stop answering"] == "Esc"

    # Locking closes the speaker; the next unlock makes a new one when needed.
    press(qtbot, main_window, "Ctrl+Shift+R")
    assert speaker.speaking_key == last.id
    assert main_window.lock(confirm=False)
    assert speaker.closed and speaker.speaking_key is None
    assert main_window.speaker is None
    main_window.unlock_page.passphrase_edit.setText(QT_PASSPHRASE)
    with qtbot.waitSignal(main_window.unlocked, timeout=10_000):
        main_window.unlock_page.unlock()
    assert len(window_speakers) == 1


def test_esc_still_stops_an_answer_that_is_arriving(
    qtbot: QtBot,
    main_window: MainWindow,
    window_speakers: list[FakeSpeaker],
    scripted_model: ScriptedModel,
) -> None:
    area = main_window.chat_area
    assert area is not None
    start_chat(qtbot, area)
    scripted_model.script = endless()
    area.composer.editor.setPlainText("Talk forever")
    qtbot.keyClick(area.composer.editor, "\r")
    qtbot.waitUntil(lambda: streamed(area.chat_view) > 0, timeout=WAIT)
    press(qtbot, main_window, "Esc")
    stopped = wait_answer(qtbot, area, 2)
    assert stopped.status is MessageStatus.STOPPED
    assert window_speakers == []


def test_auto_read_survives_locking_the_profile(
    qtbot: QtBot, main_window: MainWindow, window_speakers: list[FakeSpeaker]
) -> None:
    area = main_window.chat_area
    assert area is not None
    chat_id = start_chat(qtbot, area)
    area.settings_panel.read_aloud.click()
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and bool(area.chat_view.chat.params.read_aloud),
        timeout=WAIT,
    )
    assert main_window.lock(confirm=False)
    assert not area.settings_panel.read_aloud.isChecked()
    main_window.unlock_page.passphrase_edit.setText(QT_PASSPHRASE)
    with qtbot.waitSignal(main_window.unlocked, timeout=10_000):
        main_window.unlock_page.unlock()
    area.open_chat(chat_id)
    qtbot.waitUntil(area.settings_panel.read_aloud.isChecked, timeout=WAIT)
    reply = send(qtbot, area, "How far is the moon?")
    speaker = window_speakers[-1]
    assert speaker.spoken[-1].key == reply.id
    feed = speaker.spoken[-1].feed
    assert feed is not None and feed.text == ANSWER and feed.ended


def test_read_aloud_on_an_answer_still_arriving_reads_it_as_it_comes(
    qtbot: QtBot, area: ChatAreaWidget, speaker: FakeSpeaker, scripted_model: ScriptedModel
) -> None:
    start_chat(qtbot, area)
    scripted_model.script = endless()
    area.composer.editor.setPlainText("Talk forever")
    qtbot.keyClick(area.composer.editor, "\r")
    qtbot.waitUntil(lambda: streamed(area.chat_view) > 20, timeout=WAIT)
    area.read_aloud()  # the last answer is the one arriving
    (spoken,) = speaker.spoken
    feed = spoken.feed
    assert feed is not None and len(feed.text) > 20  # what had arrived, at once
    before = len(feed.text)
    qtbot.waitUntil(lambda: len(feed.text) > before + 20, timeout=WAIT)  # then the rest
    stream = area.chat_view.model.stream
    assert stream is not None and stream.text().startswith(feed.text)
    area.stop_reading()
    assert feed.cancelled and speaker.speaking_key is None
    fed = len(feed.text)
    qtbot.waitUntil(lambda: streamed(area.chat_view) > fed + 20, timeout=WAIT)
    assert len(feed.text) == fed  # nothing more after Stop reading; the answer goes on
    assert area.chat_view.is_streaming()
    area.stop()
    wait_answer(qtbot, area, 2)
