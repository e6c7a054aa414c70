"""The window against the real llama-server: what only the wire can show.

The rest of the Qt tier answers from a scripted model; these tests check that the same
widgets work over real HTTP: an answer streamed and titled by the tiny model, Stop ending
the generation at the server, the context marker from the server's own token counts and
refusals, and first-run detection of a local server and its connection test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig, load_config
from app.provider_setup import LocalServer
from app.session import Session
from app.store.models import DEFAULT_TITLE, MessageStatus
from app.ui.chat_area import ChatAreaWidget
from app.ui.main_window import MainWindow
from tests.peers.llama_server import CANCEL_LOG_PATTERN, LlamaServer, free_port
from tests.qt.conftest import close_session, make_session, unlock_new_vault, write_config
from tests.qt.drivers import (
    WAIT,
    create_vault_on_first_run,
    messages,
    send,
    shown_area,
    sidebar_title,
    start_chat,
    wait_answer,
)

pytestmark = pytest.mark.llama_server

ANSWER_TOKENS = 16
PASSPHRASE = "quiet orchard lantern seventy"


@pytest.fixture
def llama_session(
    llama_config: LoadedConfig, qt_profile: Path, run_async: Callable[..., Any]
) -> Iterator[Session]:
    """An unlocked session whose provider is the real llama-server."""
    session = make_session(llama_config, qt_profile)
    yield unlock_new_vault(session, run_async)
    close_session(session)


@pytest.fixture
def area(qtbot: QtBot, llama_session: Session) -> Iterator[ChatAreaWidget]:
    # Short answers: the tiny model on one thread is slow.
    yield from shown_area(qtbot, llama_session, max_tokens=ANSWER_TOKENS)


def test_new_chat_streams_answer_and_gets_a_title(qtbot: QtBot, area: ChatAreaWidget) -> None:
    chat_id = start_chat(qtbot, area)
    assert sidebar_title(area, chat_id) == DEFAULT_TITLE
    painted: list[int] = []
    area.chat_view.list.message_delegate.streaming_painted.connect(painted.append)
    answer = send(qtbot, area, "Tell me about zebrafish please")
    assert answer.status is MessageStatus.COMPLETE and answer.content
    assert answer.completion_tokens == ANSWER_TOKENS  # the server's own count
    assert painted, "the answer was painted while it streamed"
    shown = messages(area)
    assert [m.role for m in shown] == ["user", "assistant"]
    assert shown[0].content == "Tell me about zebrafish please"
    qtbot.waitUntil(lambda: sidebar_title(area, chat_id) != DEFAULT_TITLE, timeout=WAIT)
    assert area.composer.send_button.text() == "Send"


def test_stop_keeps_partial_answer_and_ends_the_generation(
    qtbot: QtBot, area: ChatAreaWidget, llama_server: LlamaServer
) -> None:
    start_chat(qtbot, area)
    area.chat_view.max_tokens = None  # context shift: streams until stopped
    log_offset = llama_server.log_offset()
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
    # Stop closed the HTTP stream, and the server stopped generating.
    assert llama_server.wait_for_log(CANCEL_LOG_PATTERN, after=log_offset, timeout=10)


def test_context_marker_on_small_model(qtbot: QtBot, area: ChatAreaWidget) -> None:
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


@pytest.fixture
def area_4096(
    qtbot: QtBot,
    llama_server: LlamaServer,
    qt_profile: Path,
    tmp_path: Path,
    run_async: Callable[..., Any],
) -> Iterator[ChatAreaWidget]:
    """The chat area over the real llama-server (n_ctx 512) configured for 4,096 tokens,
    as first-run detection used to leave it (issue 12, item 7)."""
    path = write_config(tmp_path / "config.yml", f"{llama_server.base_url}/v1")
    path.write_text(
        path.read_text(encoding="utf-8").replace("context_size: 512", "context_size: 4096"),
        encoding="utf-8",
    )
    session = unlock_new_vault(make_session(load_config(path, {}), qt_profile), run_async)
    yield from shown_area(qtbot, session, max_tokens=ANSWER_TOKENS)
    close_session(session)


def test_context_size_stated_by_the_server_wins_and_the_meter_says_so(
    qtbot: QtBot, area_4096: ChatAreaWidget
) -> None:
    area = area_4096
    start_chat(qtbot, area)
    composer = area.composer
    qtbot.waitUntil(lambda: composer.context_use is not None, timeout=WAIT)
    use = composer.context_use
    assert use is not None and use.window.size == 512 and use.window.source == "server"
    assert "of 512 tokens (reported by the server)" in composer.meter.text()
    before = use.total
    send(qtbot, area, "Tell me about zebrafish please")
    # The meter counts the answer once it is there.
    qtbot.waitUntil(
        lambda: composer.context_use is not None and composer.context_use.total > before + 16,
        timeout=WAIT,
    )
    # ~600 tokens fit the configured 4,096 but not the server's 512: not sent, and why.
    typed = "zebrafish " * 240
    composer.editor.setPlainText(typed)
    qtbot.keyClick(composer.editor, "\r")
    qtbot.waitUntil(lambda: "Shorten it by about" in composer.meter.text(), timeout=WAIT)
    assert "512 tokens (reported by the server)" in composer.meter.text()
    assert composer.editor.toPlainText() == typed
    assert len(messages(area)) == 2


def test_first_run_creates_vault_and_adds_the_detected_server(
    qtbot: QtBot,
    llama_config: LoadedConfig,
    qt_profile: Path,
    llama_server: LlamaServer,
    window_settings: QSettings,
    tmp_path: Path,
) -> None:
    session = make_session(llama_config, qt_profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    first_run = window.first_run
    assert first_run is not None
    create_vault_on_first_run(qtbot, window, PASSPHRASE, qt_profile, tmp_path)

    # Detection asks our llama-server and a closed "Ollama" port.
    first_run.local_servers = [
        LocalServer("Ollama", "ollama", "ollama", f"http://127.0.0.1:{free_port()}"),
        LocalServer("llama.cpp server", "llama-cpp", "openai", f"{llama_server.base_url}/v1"),
    ]
    first_run.continue_button.click()
    assert first_run.currentWidget() is first_run.provider_page
    assert first_run.recovery.code_view.toPlainText() == ""
    qtbot.waitUntil(lambda: first_run.detected_list.count() == 1, timeout=10_000)
    assert "llama.cpp server" in first_run.detected_list.item(0).text()
    form = first_run.provider_form
    assert form.url_edit.text() == f"{llama_server.base_url}/v1"
    assert form.model_combo.currentText() == "tiny-llama"

    form.test_button.click()
    qtbot.waitUntil(lambda: "Connected" in form.result_label.text(), timeout=10_000)
    assert "tiny-llama" in form.result_label.text()

    with qtbot.waitSignal(window.unlocked, timeout=10_000):
        first_run.finish_button.click()
    assert window.current_page == "main"
    assert window.first_run is None
    reloaded = load_config(llama_config.path, {})
    assert reloaded.config.default_llm == "llama-cpp"
    assert reloaded.config.llm("llama-cpp").model_name == "tiny-llama"
    assert session.config.config.default_llm == "llama-cpp"
    window.close()
    session.close()
