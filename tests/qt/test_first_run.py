"""First run: create the vault, keep the recovery code, save a first provider.

Detecting a local server and testing the connection over the wire are in
``test_window_llama.py``; here no local server answers and the provider is typed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig, load_config
from app.ui.main_window import MainWindow
from tests.peers.llama_server import free_port
from tests.peers.scripted_provider import ScriptedModel
from tests.qt.conftest import make_session
from tests.qt.drivers import create_vault_on_first_run

PASSPHRASE = "quiet orchard lantern seventy"


def test_first_run_creates_vault_and_saves_a_provider_typed_in(
    qtbot: QtBot,
    qt_config: LoadedConfig,
    qt_profile: Path,
    scripted_model: ScriptedModel,
    window_settings: QSettings,
    tmp_path: Path,
) -> None:
    session = make_session(qt_config, qt_profile, provider_factory=scripted_model)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    first_run = window.first_run
    assert first_run is not None
    create_vault_on_first_run(qtbot, window, PASSPHRASE, qt_profile, tmp_path)

    first_run.local_servers = []  # nothing to detect: the provider is typed in
    first_run.continue_button.click()
    assert first_run.currentWidget() is first_run.provider_page
    assert first_run.recovery.code_view.toPlainText() == ""
    qtbot.waitUntil(lambda: first_run.detect_button.isEnabled(), timeout=10_000)
    assert "No local server" in first_run.detect_status.text()
    form = first_run.provider_form
    url = f"http://127.0.0.1:{free_port()}/v1"
    form.name_edit.setText("my-llama")
    form.type_combo.setCurrentIndex(form.type_combo.findData("openai"))
    form.url_edit.setText(url)
    form.model_combo.setEditText("tiny-llama")

    with qtbot.waitSignal(window.unlocked, timeout=10_000):
        first_run.finish_button.click()
    assert window.current_page == "main"
    assert window.first_run is None
    reloaded = load_config(qt_config.path, {})
    assert reloaded.config.default_llm == "my-llama"
    assert reloaded.config.llm("my-llama").model_name == "tiny-llama"
    assert reloaded.config.llm("my-llama").base_url == url
    assert session.config.config.default_llm == "my-llama"
    window.close()
    session.close()


def test_test_connection_shows_the_error(
    qtbot: QtBot, qt_config: LoadedConfig, qt_profile: Path, window_settings: QSettings
) -> None:
    session = make_session(qt_config, qt_profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    first_run = window.first_run
    assert first_run is not None
    first_run.local_servers = []
    first_run.show_provider_page()
    qtbot.waitUntil(lambda: first_run.detect_button.isEnabled(), timeout=5_000)
    assert "No local server" in first_run.detect_status.text(), first_run.detect_status.text()
    form = first_run.provider_form
    url = f"http://127.0.0.1:{free_port()}/v1"
    form.url_edit.setText(url)
    form.test_button.click()
    qtbot.waitUntil(lambda: "Nothing answered" in form.result_label.text(), timeout=10_000)
    assert form.result_label.property("role") == "error"
    # One human sentence naming the URL: not "Could not connect: test: could not connect to
    # the ... Check that it is running and that `base_url` is right." (issue 12, item 11).
    text = form.result_label.text()
    assert text.startswith(f"Nothing answered at {url};"), text
    assert "`" not in text and "test:" not in text and text.count(". ") == 0
    form.name_edit.clear()
    first_run.save_provider()
    assert "name" in first_run.provider_error.text()
    window.close()
    session.close()


def test_a_weak_passphrase_is_refused_until_use_anyway(
    qtbot: QtBot, qt_config: LoadedConfig, qt_profile: Path, window_settings: QSettings
) -> None:
    session = make_session(qt_config, qt_profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    first_run = window.first_run
    assert first_run is not None
    fields = first_run.passphrase_fields
    fields.passphrase_edit.setText("qwerty123")
    fields.confirm_edit.setText("qwerty123")
    assert not fields.use_anyway_button.isVisibleTo(first_run)
    first_run.create_button.click()
    qtbot.waitUntil(lambda: "Weak passphrase" in first_run.create_error.text(), timeout=30_000)
    assert "Use this passphrase anyway" in first_run.create_error.text()  # the way out
    assert "qwerty123" not in first_run.create_error.text()
    assert fields.use_anyway_button.isVisibleTo(first_run)
    assert not (qt_profile / "vault.json").exists()
    assert first_run.create_button.isEnabled()

    fields.passphrase_edit.setText("qwerty1234")  # typing again withdraws the offer
    fields.passphrase_edit.setText("qwerty123")
    assert not fields.use_anyway_button.isVisibleTo(first_run)
    first_run.create_button.click()
    qtbot.waitUntil(lambda: fields.use_anyway_button.isVisibleTo(first_run), timeout=30_000)
    # The offer appears only once the form is usable again: a click on it while the
    # refused attempt still counted as busy was lost (the vault was never made).
    assert first_run.create_button.isEnabled()
    fields.use_anyway_button.click()
    qtbot.waitUntil(lambda: first_run.currentWidget() is first_run.recovery_page, timeout=30_000)
    assert (qt_profile / "vault.json").exists()
    window.close()
    session.close()


def test_detected_servers_are_counted_in_words_and_a_good_test_clears_the_error(
    qtbot: QtBot,
    qt_config: LoadedConfig,
    qt_profile: Path,
    window_settings: QSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.provider_setup import DEFAULT_LOCAL_SERVERS, DetectedServer
    from app.ui import provider_form

    async def models(entry: dict[str, Any], api_key: str | None = None) -> list[str]:
        return ["tiny-llama"]

    monkeypatch.setattr(provider_form, "test_connection", models)
    session = make_session(qt_config, qt_profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    first_run = window.first_run
    assert first_run is not None
    first_run.local_servers = []
    first_run.show_provider_page()
    qtbot.waitUntil(lambda: first_run.detect_button.isEnabled(), timeout=10_000)
    ollama, llama = DEFAULT_LOCAL_SERVERS[:2]
    first_run._detected([DetectedServer(llama, ())])
    assert first_run.detect_status.text().startswith("Found 1 local server;")
    first_run._detected([DetectedServer(ollama, ("a",)), DetectedServer(llama, ("b",))])
    assert first_run.detect_status.text().startswith("Found 2 local servers;")
    assert "(s)" not in first_run.detect_status.text()

    # "Choose a model" goes once a test has listed the models (it used to stay).
    form = first_run.provider_form
    form.set_entry({"provider_name": "box", "type": "openai", "base_url": llama.base_url})
    first_run.save_provider()
    assert "Choose a model" in first_run.provider_error.text()
    form.test_button.click()
    qtbot.waitUntil(lambda: form.model_combo.currentText() == "tiny-llama", timeout=10_000)
    assert first_run.provider_error.text() == ""
    window.close()
    session.close()
