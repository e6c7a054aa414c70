"""The chat settings panel: model parameters with "Default", and the model list following
config changes (issue 12, item 6)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from app.session import Session
from app.store.models import ChatParams
from app.ui import tasks
from app.ui.chat_area import ChatAreaWidget
from app.ui.chat_settings import PROVIDER_ROLE, format_stop_sequences, parse_stop_sequences
from tests.peers.scripted_provider import ScriptedModel, is_title_request
from tests.qt.drivers import WAIT, send, settle, shown_area, start_chat


@pytest.fixture
def area(qtbot: QtBot, unlocked_session: Session) -> Iterator[ChatAreaWidget]:
    yield from shown_area(qtbot, unlocked_session)


def test_a_provider_added_in_settings_appears_in_the_open_chats_model_list(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session
) -> None:
    start_chat(qtbot, area)
    panel = area.settings_panel
    assert panel.providers.findData("second", PROVIDER_ROLE) < 0
    # What Settings, Providers does on Save (app/ui/settings.py): the session saves the
    # entry and applies the new config; the open chat is not switched.
    saved = tasks.start(
        unlocked_session.save_provider(
            {
                "provider_name": "second",
                "type": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "model_name": "other-model",
            }
        )
    )
    qtbot.waitUntil(saved.done, timeout=WAIT)
    qtbot.waitUntil(lambda: panel.providers.findData("second", PROVIDER_ROLE) >= 0, timeout=WAIT)
    assert panel.provider_allowed("second")
    # The open chat keeps its own model.
    assert panel.providers.currentData(PROVIDER_ROLE) == "tiny"


def test_parameters_start_at_default_and_edits_are_saved_and_sent(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session, scripted_model: ScriptedModel
) -> None:
    chat_id = start_chat(qtbot, area)
    panel = area.settings_panel
    rows = {row.name: row for row in panel._param_rows}
    assert all(row.default.isChecked() for row in rows.values())
    assert not panel.temperature.isEnabled()
    assert "the server's own" in rows["temperature"].default.toolTip()
    assert panel.temperature.text() == "server default"  # no number the server may not use
    assert panel.context_length.value() == 512  # the config entry's context size
    assert "512" in rows["context_size"].default.toolTip()  # the config entry's context size
    assert panel.shown_params() == ChatParams()

    qtbot.mouseClick(rows["temperature"].default, Qt.MouseButton.LeftButton)
    assert panel.temperature.isEnabled()
    assert panel.temperature.value() == pytest.approx(0.8)  # a starting value of one's own
    panel.temperature.setValue(0.25)
    rows["max_tokens"].default.setChecked(False)
    panel.max_tokens.setValue(6)
    rows["stop"].default.setChecked(False)
    panel.stop_sequences.setText("###, \\n\\n")
    panel.stop_sequences.editingFinished.emit()
    expected = ChatParams(temperature=0.25, max_tokens=6, stop=("###", "\n\n"))

    def saved() -> bool:
        chat = area.chat_view.chat
        return chat is not None and chat.id == chat_id and chat.params == expected

    qtbot.waitUntil(saved, timeout=WAIT)
    answer = send(qtbot, area, "Tell me about zebrafish")
    _name, request = next(r for r in scripted_model.requests if not is_title_request(r[1]))
    assert (request.temperature, request.max_tokens, request.stop) == (0.25, 6, ["###", "\n\n"])
    assert len(answer.content.encode("utf-8")) <= 6  # the scripted model's tokens are bytes
    settle(qtbot, unlocked_session)


def test_ticking_default_again_gives_the_value_back_to_the_provider(
    qtbot: QtBot, area: ChatAreaWidget, unlocked_session: Session
) -> None:
    chat_id = start_chat(qtbot, area)
    saved = tasks.start(unlocked_session.service.update(chat_id, params=ChatParams(top_p=0.5)))
    qtbot.waitUntil(saved.done, timeout=WAIT)
    panel = area.settings_panel
    rows = {row.name: row for row in panel._param_rows}
    qtbot.waitUntil(lambda: not rows["top_p"].default.isChecked(), timeout=WAIT)
    assert panel.top_p.value() == pytest.approx(0.5)
    rows["top_p"].default.setChecked(True)
    assert not panel.top_p.isEnabled()

    def back_to_default() -> bool:
        chat = area.chat_view.chat
        return chat is not None and chat.params == ChatParams()

    qtbot.waitUntil(back_to_default, timeout=WAIT)


def test_each_parameter_has_an_accessible_name_and_a_label_shortcut(area: ChatAreaWidget) -> None:
    panel = area.settings_panel
    for row in panel._param_rows:
        assert row.editor.accessibleName()
        assert row.default.accessibleName().startswith("Use the provider's default")
    buddies = {
        label.buddy(): label.text()
        for label in panel.params_box.findChildren(QLabel)
        if label.buddy() is not None
    }
    for row in panel._param_rows:
        assert "&" in buddies[row.editor]  # Alt+letter focuses the field


@pytest.mark.parametrize(
    ("text", "sequences"),
    [
        ("", ()),
        ("###", ("###",)),
        ("###, </s>", ("###", "</s>")),
        ("\\n\\n, User:", ("\n\n", "User:")),
        ("a\\,b, c\\\\d", ("a,b", "c\\d")),
        (" , ,x", ("x",)),
    ],
)
def test_stop_sequences_are_typed_on_one_line(text: str, sequences: tuple[str, ...]) -> None:
    assert parse_stop_sequences(text) == sequences
    assert parse_stop_sequences(format_stop_sequences(sequences)) == sequences
