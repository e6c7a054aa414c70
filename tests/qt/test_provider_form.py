"""The add-provider form: presets, models listed once the key is typed, errors inline as
one sentence, and API keys kept in the vault when no OS keychain answers (issue 12)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backends import fail
from pytestqt.qtbot import QtBot

from app.api_keys import keychain_account
from app.chat.service import TurnEvent
from app.provider_presets import preset_named
from app.tiers import Tier
from app.ui import provider_form
from app.ui.main_window import MainWindow
from app.ui.settings import ProviderDialog, SettingsDialog
from app.vault.keychain import KEYCHAIN_SERVICE
from providers import ConnectionFailedError, ProviderSpec
from tests.peers.scripted_provider import ScriptedModel, ScriptedProvider
from tests.qt.conftest import CONTEXT_SIZE, MemoryKeyring

API_KEY = "sk-typed-in-the-form-0123456789"
MODELS = ["model-a", "model-b", "model-c"]


class KeyRecordingModel(ScriptedModel):
    """The scripted model, recording the API key each provider was made with."""

    def __init__(self) -> None:
        super().__init__(context_size=CONTEXT_SIZE)
        self.keys: list[tuple[str, str | None]] = []

    def __call__(self, spec: ProviderSpec) -> ScriptedProvider:
        key = spec.api_key.get_secret_value() if spec.api_key is not None else None
        self.keys.append((spec.name, key))
        return super().__call__(spec)


@pytest.fixture
def scripted_model() -> KeyRecordingModel:
    return KeyRecordingModel()


class FakeServers:
    """Stands in for ``test_connection``: records (base_url, key) and lists ``MODELS``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.error: Exception | None = None

    async def __call__(self, entry: dict[str, Any], api_key: str | None = None) -> list[str]:
        self.calls.append((str(entry["base_url"]), api_key))
        if self.error is not None:
            raise self.error
        return list(MODELS)


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> FakeServers:
    fake = FakeServers()
    monkeypatch.setattr(provider_form, "test_connection", fake)
    return fake


@pytest.fixture
def settings(main_window: MainWindow) -> SettingsDialog:
    dialog = main_window.open_settings()
    assert dialog is not None
    return dialog


@pytest.fixture
def no_keychain(memory_keyring: MemoryKeyring) -> Iterator[None]:
    """keyring's "no backend" keyring, as on Linux without a Secret Service."""
    keyring.set_keyring(fail.Keyring())
    yield  # memory_keyring's exit puts the original backend back


def _idle(form: provider_form.ProviderFormWidget) -> bool:
    return not form.is_busy


def test_a_cloud_preset_lists_its_models_once_the_key_is_typed(
    qtbot: QtBot, settings: SettingsDialog, servers: FakeServers
) -> None:
    form = settings.add_provider().form
    form.choose_preset("groq")
    groq = preset_named("groq")
    assert form.name_edit.text() == "groq"
    assert form.url_edit.text() == groq.base_url
    assert form.type_combo.currentData() == "openai"
    assert form.locality_combo.currentData() == "paid_cloud"
    assert servers.calls == []  # nothing is asked before the key is there
    assert "API key" in form.result_label.text()

    qtbot.keyClicks(form.key_edit, API_KEY)  # typed letter by letter: one listing after
    qtbot.waitUntil(lambda: bool(servers.calls) and _idle(form), timeout=20_000)
    assert servers.calls == [(groq.base_url, API_KEY)]
    assert [form.model_combo.itemText(i) for i in range(form.model_combo.count())] == MODELS
    assert form.model_combo.currentText() == "model-a"
    assert "3 models" in form.result_label.text()


def test_a_local_preset_lists_its_models_at_once(
    qtbot: QtBot, settings: SettingsDialog, servers: FakeServers
) -> None:
    form = settings.add_provider().form
    form.choose_preset("jan")
    qtbot.waitUntil(lambda: bool(servers.calls) and _idle(form), timeout=20_000)
    assert servers.calls == [("http://127.0.0.1:1337/v1", None)]
    assert form.locality_combo.currentData() == "on_prem"
    # Another preset replaces the suggested name, but never one the user typed.
    form.name_edit.setText("my-box")
    form.choose_preset("vllm")
    qtbot.waitUntil(lambda: len(servers.calls) == 2 and _idle(form), timeout=20_000)
    assert form.name_edit.text() == "my-box"


def test_a_listing_error_is_one_sentence_inline(
    qtbot: QtBot, settings: SettingsDialog, servers: FakeServers
) -> None:
    servers.error = ConnectionFailedError(
        "could not connect to the OpenAI-compatible server at https://api.groq.com/openai/v1 "
        "(All connection attempts failed). Check that it is running and that `base_url` is "
        "right.",
        provider="test",
    )
    form = settings.add_provider().form
    form.choose_preset("groq")
    qtbot.keyClicks(form.key_edit, API_KEY)
    qtbot.waitUntil(lambda: bool(servers.calls) and _idle(form), timeout=20_000)
    text = form.result_label.text()
    assert text.startswith("Nothing answered at https://api.groq.com/openai/v1;"), text
    assert "`" not in text and "test:" not in text and ". " not in text
    assert form.result_label.property("role") == "error"


def test_a_successful_test_clears_a_stale_choose_a_model_error(
    qtbot: QtBot, settings: SettingsDialog, servers: FakeServers
) -> None:
    dialog = settings.add_provider()
    form = dialog.form
    form.name_edit.setText("box")
    form.url_edit.setText("http://127.0.0.1:8000/v1")
    dialog.save()
    assert "Choose a model" in dialog.error_label.text()
    qtbot.waitUntil(lambda: form.test_button.isEnabled(), timeout=20_000)
    form.test_button.click()
    qtbot.waitUntil(lambda: bool(servers.calls) and _idle(form), timeout=20_000)
    assert form.model_combo.currentText() == "model-a"
    assert dialog.error_label.text() == ""


def _add_cloud(qtbot: QtBot, settings: SettingsDialog, place: str = "") -> ProviderDialog:
    dialog = settings.add_provider()
    form = dialog.form
    form.choose_preset("openai")
    form.key_edit.setText(API_KEY)
    form.model_combo.setEditText("gpt-example")
    form.key_place_combo.setCurrentIndex(form.key_place_combo.findData(place))
    return dialog


def _config_text(main_window: MainWindow) -> str:
    path = main_window.session.config.path
    assert path is not None
    return path.read_text(encoding="utf-8")


def test_without_a_keychain_the_key_is_kept_in_the_vault_and_used(
    qtbot: QtBot,
    main_window: MainWindow,
    settings: SettingsDialog,
    no_keychain: None,
    scripted_model: KeyRecordingModel,
    run_async: Callable[..., Any],
    qt_profile: Path,
) -> None:
    dialog = _add_cloud(qtbot, settings)
    with qtbot.waitSignal(dialog.accepted, timeout=20_000):
        dialog.save()
    qtbot.waitUntil(lambda: settings.provider_list.count() == 2, timeout=10_000)
    text = _config_text(main_window)
    assert "api_key: vault" in text and API_KEY not in text
    stored = [
        p for p in qt_profile.rglob("*") if p.is_file() and API_KEY.encode() in p.read_bytes()
    ]
    assert stored == []  # encrypted in standard.db, not in the clear anywhere

    # A request of a chat on that provider carries the key read back from the vault.
    session = main_window.session
    session.api_keys.forget()
    chat = run_async(session.service.create_chat(Tier.STANDARD, provider="openai"))

    async def send() -> list[TurnEvent]:
        return [event async for event in session.service.send(chat.id, "hello")]

    run_async(send(), timeout=30_000)
    assert ("openai", API_KEY) in scripted_model.keys


def test_choosing_the_missing_keychain_is_one_clear_sentence_in_a_roomy_form(
    qtbot: QtBot, main_window: MainWindow, settings: SettingsDialog, no_keychain: None
) -> None:
    dialog = _add_cloud(qtbot, settings, "keychain")
    dialog.show()
    qtbot.waitExposed(dialog)
    heights = {edit: edit.height() for edit in (dialog.form.name_edit, dialog.form.url_edit)}
    width = dialog.width()
    dialog.save()
    qtbot.waitUntil(lambda: dialog.error_label.text() != "", timeout=20_000)
    qtbot.waitUntil(lambda: dialog.buttons.isEnabled(), timeout=20_000)
    text = dialog.error_label.text()
    assert text == (
        "This computer has no OS keychain to keep the API key in; keep it in the vault instead."
    )
    assert dialog.error_label.wordWrap()
    qtbot.wait(50)  # let the layout settle (no timing is asserted)
    assert dialog.width() <= max(width, dialog.minimumSizeHint().width())
    for edit, height in heights.items():
        assert edit.height() >= min(height, edit.minimumSizeHint().height())
    assert "keychain" not in _config_text(main_window).split("openai")[-1]


def test_a_stored_key_moves_when_the_place_changes(
    qtbot: QtBot,
    main_window: MainWindow,
    settings: SettingsDialog,
    memory_keyring: MemoryKeyring,
    run_async: Callable[..., Any],
) -> None:
    dialog = _add_cloud(qtbot, settings, "keychain")
    with qtbot.waitSignal(dialog.accepted, timeout=20_000):
        dialog.save()
    account = (KEYCHAIN_SERVICE, keychain_account("openai"))
    assert base64.b64decode(memory_keyring.passwords[account]).decode() == API_KEY

    settings.provider_list.setCurrentRow(1)
    edit = settings.edit_provider()
    assert edit is not None
    assert edit.form.key_place() == "keychain"
    edit.form.key_place_combo.setCurrentIndex(edit.form.key_place_combo.findData("vault"))
    with qtbot.waitSignal(edit.accepted, timeout=20_000):
        edit.save()
    assert account not in memory_keyring.passwords
    entry = main_window.session.config.config.llm("openai")
    assert entry.api_key == "vault"
    main_window.session.api_keys.forget()
    assert run_async(main_window.session.api_keys.resolve(entry)) == API_KEY


def test_testing_an_edited_provider_uses_its_stored_key_for_its_own_server_only(
    qtbot: QtBot, settings: SettingsDialog, servers: FakeServers, no_keychain: None
) -> None:
    dialog = _add_cloud(qtbot, settings)
    with qtbot.waitSignal(dialog.accepted, timeout=20_000):
        dialog.save()
    servers.calls.clear()
    settings.provider_list.setCurrentRow(1)
    edit = settings.edit_provider()
    assert edit is not None
    form = edit.form
    assert form.key_place() == "vault" and form.api_key() is None
    form.test_button.click()
    qtbot.waitUntil(lambda: bool(servers.calls) and _idle(form), timeout=20_000)
    assert servers.calls == [("https://api.openai.com/v1", API_KEY)]
    form.url_edit.setText("https://elsewhere.example/v1")
    form.test_button.click()
    qtbot.waitUntil(lambda: len(servers.calls) == 2 and _idle(form), timeout=20_000)
    assert servers.calls[1] == ("https://elsewhere.example/v1", None)  # never sent elsewhere
