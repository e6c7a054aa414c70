"""The chat area over a scripted model: send, stream, stop, versions, edit, delete, undo,
search, tiers and the policy, Ephemeral chats, the context marker. No peer is needed;
``test_window_llama.py`` runs send, stream and stop against the real llama-server."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig, load_config
from app.session import Session
from app.store.models import DEFAULT_TITLE, MessageStatus, Tier
from app.ui import chat_view, tasks
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_settings import PROVIDER_ROLE
from providers import ProviderSpec
from tests.peers.scripted_provider import DEFAULT_TITLE as DEFAULT_MODEL_TITLE
from tests.peers.scripted_provider import ScriptedModel, ScriptedProvider, endless
from tests.qt.conftest import (
    close_session,
    closed_port_url,
    make_session,
    unlock_new_vault,
    write_config,
)
from tests.qt.drivers import (
    WAIT,
    messages,
    send,
    shown_area,
    sidebar_title,
    start_chat,
    wait_answer,
)


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session)


# --- send, stream, title -------------------------------------------------------------------


def test_new_chat_streams_answer_and_gets_a_title(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    chat_id = start_chat(qtbot, area)
    assert sidebar_title(area, chat_id) == DEFAULT_TITLE
    painted: list[int] = []
    area.chat_view.list.message_delegate.streaming_painted.connect(painted.append)
    answer = send(qtbot, area, "Tell me about zebrafish please")
    assert answer.status is MessageStatus.COMPLETE and answer.content == scripted_model.text
    assert painted, "the answer was painted while it streamed"
    shown = messages(area)
    assert [m.role for m in shown] == ["user", "assistant"]
    assert shown[0].content == "Tell me about zebrafish please"
    qtbot.waitUntil(lambda: sidebar_title(area, chat_id) != DEFAULT_TITLE, timeout=WAIT)
    assert sidebar_title(area, chat_id) == DEFAULT_MODEL_TITLE
    assert area.composer.send_button.text() == "Send"


def test_first_message_without_open_chat_starts_one(qtbot: QtBot, area: ChatAreaWidget) -> None:
    assert area.chat_view.chat_id is None
    area.composer.editor.setPlainText("hello there")
    area.composer.submit()
    qtbot.waitUntil(lambda: area.chat_view.chat is not None, timeout=WAIT)
    wait_answer(qtbot, area, 2)
    assert area.sidebar.model.rowCount() == 1


def test_stop_keeps_partial_answer(
    qtbot: QtBot, area: ChatAreaWidget, scripted_model: ScriptedModel
) -> None:
    start_chat(qtbot, area)
    scripted_model.script = endless()  # streams until stopped
    area.composer.editor.setPlainText("go on forever")
    area.composer.submit()
    view = area.chat_view
    qtbot.waitUntil(lambda: view.model.stream is not None and view.model.stream.length > 20)
    assert area.composer.send_button.text() == "Stop"
    area.stop()
    answer = wait_answer(qtbot, area, 2)
    assert answer.status is MessageStatus.STOPPED
    assert answer.content
    assert area.composer.send_button.text() == "Send"


def test_regenerate_and_switch_versions(qtbot: QtBot, area: ChatAreaWidget) -> None:
    start_chat(qtbot, area)
    first = send(qtbot, area, "a question")
    area.regenerate()
    qtbot.waitUntil(lambda: messages(area)[-1].versions == 2, timeout=WAIT)
    second = wait_answer(qtbot, area, 2)
    assert (second.version, second.versions) == (2, 2) and second.id != first.id
    area.chat_view._on_action("previous", second.id)
    qtbot.waitUntil(lambda: messages(area)[-1].id == first.id, timeout=WAIT)
    assert (messages(area)[-1].version, messages(area)[-1].versions) == (1, 2)
    area.chat_view._on_action("next", first.id)
    qtbot.waitUntil(lambda: messages(area)[-1].id == second.id, timeout=WAIT)


def test_edit_and_resend(qtbot: QtBot, area: ChatAreaWidget) -> None:
    start_chat(qtbot, area)
    send(qtbot, area, "the original question")
    question = messages(area)[0]
    area.chat_view._on_action("edit", question.id)
    assert area.composer.editing_message_id == question.id
    assert area.composer.editor.toPlainText() == "the original question"
    area.composer.editor.setPlainText("the edited question")
    qtbot.keyClick(area.composer.editor, "\r")
    qtbot.waitUntil(lambda: messages(area)[0].content == "the edited question", timeout=WAIT)
    wait_answer(qtbot, area, 2)
    edited = messages(area)[0]
    assert (edited.version, edited.versions) == (2, 2)
    assert area.composer.editing_message_id is None


def test_delete_message(
    qtbot: QtBot, area: ChatAreaWidget, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(chat_view, "confirm", lambda _w, _t, text: asked.append(text) or True)
    start_chat(qtbot, area)
    answer = send(qtbot, area, "delete my answer")
    area.chat_view._on_action("delete", answer.id)
    qtbot.waitUntil(lambda: len(messages(area)) == 1, timeout=WAIT)
    assert messages(area)[0].role == "user" and asked


def test_delete_chat_undo_then_purge(
    qtbot: QtBot,
    area: ChatAreaWidget,
    unlocked_session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_view, "confirm", lambda *_: True)
    chat_id = start_chat(qtbot, area)
    sidebar = area.sidebar
    sidebar.delete(chat_id)
    qtbot.waitUntil(lambda: sidebar.model.row_of(chat_id) is None, timeout=WAIT)
    assert sidebar.undo_bar.isVisible()
    assert area.chat_view.chat_id is None
    qtbot.mouseClick(sidebar.undo_bar.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: sidebar.model.row_of(chat_id) is not None, timeout=WAIT)
    assert not sidebar.undo_bar.isVisible()

    sidebar.undo_seconds = 0.3
    sidebar.delete(chat_id)
    qtbot.waitUntil(lambda: sidebar.model.row_of(chat_id) is None, timeout=WAIT)
    # Purged for good: the row is gone from the store, not just hidden.
    store = unlocked_session.library.store(Tier.STANDARD)
    runner = unlocked_session.runner
    qtbot.waitUntil(lambda: not runner.db_sync(store.has_chat, chat_id), timeout=WAIT)
    assert not sidebar.undo_bar.isVisible()


def test_search_shows_snippets(qtbot: QtBot, area: ChatAreaWidget) -> None:
    chat_id = start_chat(qtbot, area)
    send(qtbot, area, "my favourite animal is the axolotl of Mexico")
    area.focus_search()
    qtbot.keyClicks(area.sidebar.search, "axolotl")
    results = area.sidebar.results
    qtbot.waitUntil(lambda: results.rowCount() > 0, timeout=WAIT)
    hit = results.hit(0)
    assert hit.chat_id == chat_id and "[axolotl]" in hit.snippet
    assert area.sidebar.stack.currentWidget() is area.sidebar.result_list
    area.sidebar.search.clear()
    assert area.sidebar.stack.currentWidget() is area.sidebar.list


def test_context_marker_on_small_model(qtbot: QtBot, area: ChatAreaWidget) -> None:
    # The scripted model counts a token per byte and refuses a prompt over its 512-token
    # context, as the tiny llama-server model does.
    start_chat(qtbot, area)
    area.chat_view.max_tokens = 40
    model = area.chat_view.model

    def markers() -> list[str]:
        return [model.row(n).text for n in range(model.rowCount()) if model.row(n).message is None]

    for turn in range(10):  # the tiny model's tokens are about one byte each
        send(qtbot, area, f"message {turn}: a moderately long line about many things")
        if markers():
            break
    assert markers() and "not sent to the model" in markers()[0]
    assert "did not fit" in area.settings_panel.context_note.text()
    assert area.settings_panel.context.maximum() == 512
    # The marker sits right above the oldest message that was sent.
    rows = [model.row(n) for n in range(model.rowCount())]
    marker_at = next(n for n, row in enumerate(rows) if row.message is None)
    dropped = int(markers()[0].split()[0])
    assert marker_at == dropped


# --- tiers and the policy ------------------------------------------------------------------


@pytest.fixture
def cloud_config(tmp_path: Path) -> LoadedConfig:
    path = tmp_path / "cloud.yml"
    path.write_text(
        "default_llm: tiny\n"
        "llms:\n"
        "  - provider_name: tiny\n"
        "    type: openai\n"
        f"    base_url: {closed_port_url()}\n"
        "    model_name: tiny-llama\n"
        "    context_size: 512\n"
        "    max_retries: 0\n"
        "  - provider_name: cloud\n"
        "    type: openai\n"
        "    base_url: https://api.example.com/v1\n"
        "    model_name: big-model\n"
        "    locality: paid_cloud\n"
        "ui:\n"
        "  auto_lock_minutes: 0\n",
        encoding="utf-8",
    )
    return load_config(path, {})


@pytest.fixture
def cloud_session(
    cloud_config: LoadedConfig,
    qt_profile: Path,
    scripted_model: ScriptedModel,
    run_async: Callable[..., Any],
) -> Iterator[Session]:
    session = make_session(cloud_config, qt_profile, provider_factory=scripted_model)
    yield unlock_new_vault(session, run_async)
    close_session(session)


@pytest.fixture
def cloud_area(qtbot: QtBot, cloud_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, cloud_session)


def test_private_tier_disables_cloud_providers(qtbot: QtBot, cloud_area: ChatAreaWidget) -> None:
    area = cloud_area
    chat_id = start_chat(qtbot, area)
    panel = area.settings_panel
    assert panel.provider_allowed("tiny") and panel.provider_allowed("cloud")
    assert not panel.forbidden.isVisible()
    panel.move_to(Tier.PRIVATE)
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and area.chat_view.chat.tier == Tier.PRIVATE,
        timeout=WAIT,
    )
    assert panel.provider_allowed("tiny") and not panel.provider_allowed("cloud")
    row = panel.providers.findData("cloud", PROVIDER_ROLE)
    assert "on-prem" in panel.providers.itemData(row, Qt.ItemDataRole.ToolTipRole)
    assert panel.forbidden.isVisible() and "on-prem" in panel.forbidden.text()
    qtbot.waitUntil(lambda: area.sidebar.model.row_of(chat_id) is not None)
    tier_row = area.sidebar.model.row_of(chat_id)
    assert tier_row is not None
    assert area.sidebar.model.summary(tier_row).tier == Tier.PRIVATE


def test_composer_blocked_when_tier_forbids_the_model(
    qtbot: QtBot, cloud_area: ChatAreaWidget, cloud_session: Session
) -> None:
    area = cloud_area
    start_chat(qtbot, area)
    chat = area.chat_view.chat
    assert chat is not None
    tasks.start(cloud_session.service.update(chat.id, provider="cloud"))
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and area.chat_view.chat.provider == "cloud",
        timeout=WAIT,
    )
    assert not area.composer.is_blocked
    # Moving a cloud chat to Private is refused, and the reason is shown (not as a
    # passing status-bar line: as an error that stays until dismissed).
    shown: list[str] = []
    area.error_message.connect(shown.append)
    area.settings_panel.move_to(Tier.PRIVATE)
    qtbot.waitUntil(lambda: any("refused" in text for text in shown), timeout=WAIT)


# --- Ephemeral -----------------------------------------------------------------------------


def _snapshot(profile: Path) -> dict[str, str]:
    return {
        str(path.relative_to(profile)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(profile.rglob("*"))
        if path.is_file()
    }


def test_ephemeral_chat_leaves_nothing_on_disk(
    qtbot: QtBot, area: ChatAreaWidget, qt_profile: Path, tmp_path: Path
) -> None:
    before = _snapshot(qt_profile)
    outside_before = {p for p in tmp_path.rglob("*") if p.is_file()}
    chat_id = start_chat(qtbot, area, "ephemeral")
    assert area.has_ephemeral_chats()
    assert area.chat_view.banner.isVisible()
    assert "Ephemeral" in area.chat_view.banner.text()
    assert area.settings_panel.keep_button.isVisible()
    sentinel = "SENTINEL-ephemeral-3f9c1d"
    send(qtbot, area, f"remember {sentinel}")
    qtbot.waitUntil(lambda: sidebar_title(area, chat_id) != DEFAULT_TITLE, timeout=WAIT)
    assert _snapshot(qt_profile) == before
    new_files = {p for p in tmp_path.rglob("*") if p.is_file()} - outside_before
    for path in [*qt_profile.rglob("*"), *new_files]:
        if path.is_file():
            assert sentinel.encode() not in path.read_bytes(), path
    area.clear()
    assert not area.has_ephemeral_chats()


def test_ephemeral_chat_can_be_kept(qtbot: QtBot, area: ChatAreaWidget) -> None:
    chat_id = start_chat(qtbot, area, "ephemeral")
    area.settings_panel.move_to(Tier.STANDARD)
    qtbot.waitUntil(
        lambda: area.chat_view.chat is not None and area.chat_view.chat.tier == Tier.STANDARD,
        timeout=WAIT,
    )
    assert not area.chat_view.banner.isVisible()
    qtbot.waitUntil(lambda: not area.has_ephemeral_chats(), timeout=WAIT)
    assert area.sidebar.model.row_of(chat_id) is not None


# --- lock ----------------------------------------------------------------------------------


def test_clear_drops_all_content(qtbot: QtBot, area: ChatAreaWidget) -> None:
    from tests.qt.conftest import widget_texts

    start_chat(qtbot, area)
    send(qtbot, area, "a secret about pelicans")
    area.composer.editor.setPlainText("an unsent pelican draft")
    area.clear()
    assert not any("pelican" in text for text in widget_texts(area))
    assert area.sidebar.model.rowCount() == 0 and area.chat_view.model.rowCount() == 0


# --- the chat settings panel's context meter -----------------------------------------------


class StatingProvider(ScriptedProvider):
    """A scripted provider whose server states a 512-token context (as llama.cpp's n_ctx)."""

    async def context_length(self, model: str | None = None) -> int | None:
        return 512


@pytest.fixture
def area_4096(
    qtbot: QtBot, tmp_path: Path, qt_profile: Path, run_async: Callable[..., Any]
) -> Iterator[ChatAreaWidget]:
    """The chat area over a model configured for 4,096 tokens whose server says 512."""
    path = write_config(tmp_path / "config.yml", closed_port_url())
    path.write_text(
        path.read_text(encoding="utf-8").replace("context_size: 512", "context_size: 4096"),
        encoding="utf-8",
    )
    model = ScriptedModel()

    def factory(spec: ProviderSpec) -> StatingProvider:
        return StatingProvider(spec, model.local_answer)

    session = make_session(load_config(path, {}), qt_profile, provider_factory=factory)
    unlock_new_vault(session, run_async)
    yield from shown_area(qtbot, session, max_tokens=40)
    close_session(session)


def test_settings_panel_meter_counts_against_the_size_the_server_states(
    qtbot: QtBot, area_4096: ChatAreaWidget
) -> None:
    area = area_4096
    start_chat(qtbot, area)
    panel = area.settings_panel
    send(qtbot, area, "Tell me about zebrafish please")
    qtbot.waitUntil(lambda: panel.context.maximum() == 512, timeout=WAIT)
    assert panel.context.format().endswith("of 512 tokens")
    assert "512 tokens (reported by the server)" in panel.context.toolTip()


# --- a send right after a new chat opened ----------------------------------------------------


def test_send_at_once_in_a_new_chat_is_answered(qtbot: QtBot, area: ChatAreaWidget) -> None:
    area.new_chat()
    area.composer.editor.setPlainText("hello right away")
    qtbot.keyClick(area.composer.editor, "\r")  # before the new chat is even created
    answer = wait_answer(qtbot, area, 2)
    assert answer.status is MessageStatus.COMPLETE
    assert messages(area)[0].content == "hello right away"


def test_send_in_a_chat_opened_while_another_answers_is_sent(
    qtbot: QtBot,
    area: ChatAreaWidget,
    unlocked_session: Session,
    scripted_model: ScriptedModel,
    run_async: Callable[..., Any],
) -> None:
    """Chat A streams; chat B is opened and, before its page is read (the database thread
    is busy with other work), the user sends there: the message must go out, not wait
    behind A's "Stop" state until B's page arrives."""
    first = start_chat(qtbot, area)
    scripted_model.script = endless()  # the first chat's answer streams until stopped
    area.composer.editor.setPlainText("go on forever")
    area.composer.submit()
    view = area.chat_view
    qtbot.waitUntil(lambda: view.model.stream is not None and view.model.stream.length > 20)
    scripted_model.script = scripted_model.local_answer  # later requests answer at once
    second = run_async(unlocked_session.service.create_chat(Tier.STANDARD)).id
    busy = threading.Event()
    release = threading.Event()

    def background_work() -> None:  # what else is queued on the database thread
        busy.set()
        release.wait(WAIT / 1000)

    unlocked_session.runner._db.submit(background_work)
    assert busy.wait(WAIT / 1000)
    try:
        area.open_chat(second)
        area.composer.editor.setPlainText("hello right away")
        qtbot.keyClick(area.composer.editor, "\r")
        assert area.composer.editor.toPlainText() == "", "the message was sent"
        assert view.is_streaming(second)
    finally:
        release.set()
    answer = wait_answer(qtbot, area, 2)
    assert answer.status is MessageStatus.COMPLETE and view.chat_id == second
    assert view.is_streaming(first), "answered while the other chat still streams"
    view.stop(first)
    qtbot.waitUntil(lambda: not view.is_streaming(first), timeout=WAIT)
