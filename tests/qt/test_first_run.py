"""First run: create the vault, keep the recovery code, find and save a first provider."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig, load_config
from app.ui.main_window import MainWindow
from app.provider_setup import LocalServer
from app.vault.recovery_code import RecoveryCode
from tests.peers.llama_server import LlamaServer, free_port
from tests.qt.conftest import make_session

PASSPHRASE = "quiet orchard lantern seventy"


def test_first_run_creates_vault_and_adds_the_detected_server(
    qtbot: QtBot,
    qt_config: LoadedConfig,
    qt_profile: Path,
    llama_server: LlamaServer,
    window_settings: QSettings,
    tmp_path: Path,
) -> None:
    session = make_session(qt_config, qt_profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    window.show()
    assert window.current_page == "first_run"
    first_run = window.first_run
    assert first_run is not None

    fields = first_run.passphrase_fields
    fields.passphrase_edit.setText(PASSPHRASE)
    assert not first_run.create_button.isEnabled()
    fields.confirm_edit.setText(PASSPHRASE + "x")
    assert not first_run.create_button.isEnabled()
    assert "differ" in first_run.create_error.text()
    fields.confirm_edit.setText(PASSPHRASE)
    assert first_run.create_button.isEnabled()
    qtbot.waitUntil(lambda: fields.strength is not None, timeout=10_000)
    assert fields.meter.value() >= 3
    first_run.create_button.click()

    qtbot.waitUntil(lambda: first_run.currentWidget() is first_run.recovery_page, timeout=30_000)
    assert (qt_profile / "vault.json").exists()
    shown = first_run.recovery.code_view.toPlainText()
    RecoveryCode.parse(shown)  # a well-formed code, 4 lines of 4 groups
    assert len(shown.splitlines()) == 4
    assert fields.passphrase() == ""  # the passphrase left the widgets

    saved = tmp_path / "code.txt"
    first_run.recovery.save_to(saved)
    assert shown in saved.read_text(encoding="utf-8")
    assert saved.stat().st_mode & 0o077 == 0
    first_run.recovery.copy()
    assert not first_run.continue_button.isEnabled()
    first_run.recovery.stored_check.setChecked(True)
    assert first_run.continue_button.isEnabled()

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
    reloaded = load_config(qt_config.path, {})
    assert reloaded.config.default_llm == "llama-cpp"
    assert reloaded.config.llm("llama-cpp").model_name == "tiny-llama"
    assert session.config.config.default_llm == "llama-cpp"
    window.close()
    session.close()


def test_test_connection_shows_the_error(
    qtbot: QtBot, offline_config: LoadedConfig, qt_profile: Path, window_settings: QSettings
) -> None:
    session = make_session(offline_config, qt_profile)
    window = MainWindow(session, settings=window_settings)
    qtbot.addWidget(window)
    first_run = window.first_run
    assert first_run is not None
    first_run.local_servers = []
    first_run.show_provider_page()
    qtbot.waitUntil(lambda: first_run.detect_button.isEnabled(), timeout=5_000)
    assert "No local server" in first_run.detect_status.text(), first_run.detect_status.text()
    form = first_run.provider_form
    form.url_edit.setText(f"http://127.0.0.1:{free_port()}/v1")
    form.test_button.click()
    qtbot.waitUntil(lambda: "Could not connect" in form.result_label.text(), timeout=10_000)
    assert form.result_label.property("role") == "error"
    form.name_edit.clear()
    first_run.save_provider()
    assert "name" in first_run.provider_error.text()
    window.close()
    session.close()
