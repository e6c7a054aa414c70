"""Settings, Voice (issue 15): the engines with where they run, the voice list from the
engine (loaded in the background), rate, a test phrase, saving to the config file, and
"Add system voices" when no engine is set up. The window's speaker is a fake
(``tests.qt.fake_speaker``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import QObject
from PySide6.QtGui import QImage
from pytestqt.qtbot import QtBot

from app.config import LoadedConfig, load_config
from app.errors import ConfigError
from app.session import Session
from app.tiers import Tier
from app.ui import main_window as main_window_module
from app.ui.main_window import MainWindow
from app.ui.settings import SettingsDialog
from app.ui.voice_settings import TEST_KEY, TEST_PHRASE
from tests.qt.conftest import closed_port_url, write_config
from tests.qt.drivers import WAIT
from tests.qt.fake_speaker import ENGINES, FakeSpeaker

KOKORO_VOICES = ["af_heart", "af_bella", "am_adam", "bf_emma"]


@pytest.fixture
def engines() -> str:
    return ENGINES


@pytest.fixture
def qt_config(tmp_path: Path, engines: str) -> LoadedConfig:
    return load_config(write_config(tmp_path / "config.yml", closed_port_url(), extra=engines), {})


@pytest.fixture
def speakers(monkeypatch: pytest.MonkeyPatch) -> list[FakeSpeaker]:
    made: list[FakeSpeaker] = []

    def make(session: Session, parent: QObject) -> FakeSpeaker:
        speaker = FakeSpeaker(session, parent)
        speaker.voice_lists["kokoro"] = list(KOKORO_VOICES)
        made.append(speaker)
        return speaker

    monkeypatch.setattr(main_window_module, "make_speaker", make)
    return made


@pytest.fixture
def settings(main_window: MainWindow, speakers: list[FakeSpeaker]) -> SettingsDialog:
    assert speakers == []
    dialog = main_window.open_settings("voice")
    assert dialog is not None
    return dialog


def config_text(window: MainWindow) -> str:
    path = window.session.config.path
    assert path is not None
    return path.read_text(encoding="utf-8")


def test_the_page_lists_the_engines_and_the_voices_of_the_chosen_one(
    qtbot: QtBot, settings: SettingsDialog, speakers: list[FakeSpeaker]
) -> None:
    page = settings.voice_page
    assert settings.tabs.currentWidget() is page
    assert page.stack.currentWidget() is page.form_page
    labels = [page.engine_combo.itemText(i) for i in range(page.engine_combo.count())]
    assert labels == [
        "kokoro — OpenAI-compatible (on-prem)",
        "cloud-voices — OpenAI-compatible (paid cloud)",
    ]
    assert page.engine_combo.currentData() == "kokoro"  # default_tts
    assert page.voice_combo.currentText() == "af_heart"
    assert page.rate_spin.value() == 1.0
    assert (page.rate_spin.minimum(), page.rate_spin.maximum()) == (0.25, 4.0)
    assert page.voices_state.text() == "Loading voices…"  # until the engine answers
    qtbot.waitUntil(lambda: page.voice_combo.count() == len(KOKORO_VOICES), timeout=WAIT)
    assert [page.voice_combo.itemText(i) for i in range(page.voice_combo.count())] == KOKORO_VOICES
    assert page.voice_combo.currentText() == "af_heart"  # what was set stays
    assert "4 voices" in page.voices_state.text()
    assert len(speakers) == 1 and speakers[0].voices_asked == ["kokoro"]

    # An engine that cannot list them: said on the page; a name can still be typed.
    speakers[0].voice_lists["cloud-voices"] = ConfigError(
        "tts cloud-voices: the API key is not set; add it in the config file"
    )
    page.engine_combo.setCurrentIndex(1)
    qtbot.waitUntil(lambda: "Voices not listed" in page.voices_state.text(), timeout=WAIT)
    assert "API key is not set" in page.voices_state.text()
    assert page.voice_combo.isEditable()


def test_opening_settings_on_another_page_sets_up_no_speaker(
    main_window: MainWindow, speakers: list[FakeSpeaker]
) -> None:
    dialog = main_window.open_settings("attachments")
    assert dialog is not None
    assert speakers == []
    dialog.close()


def test_saving_writes_the_default_engine_its_voice_and_rate(
    qtbot: QtBot, settings: SettingsDialog, main_window: MainWindow
) -> None:
    page = settings.voice_page
    page.engine_combo.setCurrentIndex(1)
    page.voice_combo.setEditText("nova")
    page.rate_spin.setValue(1.5)
    with qtbot.waitSignal(settings.config_changed, timeout=WAIT):
        page.save_button.click()
    text = config_text(main_window)
    assert "# Kokoro-FastAPI on this computer" in text  # comments kept
    saved = load_config(main_window.session.config.path, {}).config  # type: ignore[arg-type]
    assert saved.default_tts == "cloud-voices"
    cloud = next(entry for entry in saved.tts if entry.name == "cloud-voices")
    assert (cloud.voice, cloud.speed) == ("nova", 1.5)
    kokoro = next(entry for entry in saved.tts if entry.name == "kokoro")
    assert (kokoro.voice, kokoro.speed) == ("af_heart", 1.0)  # untouched
    assert main_window.session.config.config.default_tts == "cloud-voices"  # applied
    assert "cloud-voices" in settings.status_label.text()

    # Back to the engine's default voice and the normal rate: the keys go.
    page.voice_combo.setEditText("")
    page.rate_spin.setValue(1.0)
    with qtbot.waitSignal(settings.config_changed, timeout=WAIT):
        page.save_button.click()
    saved = load_config(main_window.session.config.path, {}).config  # type: ignore[arg-type]
    cloud = next(entry for entry in saved.tts if entry.name == "cloud-voices")
    assert (cloud.voice, cloud.speed) == (None, 1.0)


def test_test_reads_the_phrase_with_what_the_page_shows_and_stop_stops(
    qtbot: QtBot, settings: SettingsDialog, speakers: list[FakeSpeaker]
) -> None:
    page = settings.voice_page
    qtbot.waitUntil(lambda: page.voice_combo.count() > 0, timeout=WAIT)
    speaker = speakers[0]
    page.voice_combo.setEditText("bf_emma")
    page.rate_spin.setValue(0.75)
    assert page.test_edit.text() == TEST_PHRASE
    page.test_button.click()
    spoken = speaker.spoken[-1]
    assert (spoken.key, spoken.text, spoken.entry.name) == (TEST_KEY, TEST_PHRASE, "kokoro")
    assert (spoken.entry.voice, spoken.entry.speed) == ("bf_emma", 0.75)  # not saved yet
    assert spoken.tier is Tier.STANDARD  # the phrase is no chat's content
    qtbot.waitUntil(page.stop_button.isEnabled, timeout=WAIT)
    page.stop_button.click()
    assert speaker.speaking_key is None
    assert not page.stop_button.isEnabled()
    # A cloud engine may read the test phrase too (no chat's words reach it).
    page.engine_combo.setCurrentIndex(1)
    page.test_edit.setText("Testing, one, two.")
    page.test_button.click()
    assert speaker.spoken[-1].entry.name == "cloud-voices"
    assert speaker.spoken[-1].text == "Testing, one, two."
    # A failure while reading is said on the page.
    speaker.fail("the speech server did not answer; is it running?")
    qtbot.waitUntil(page.error_label.isVisible, timeout=WAIT)
    assert "did not answer" in page.error_label.text()


@pytest.mark.parametrize("engines", [""])
def test_without_an_engine_the_page_says_how_to_add_one_and_adds_system_voices(
    qtbot: QtBot, settings: SettingsDialog, main_window: MainWindow, speakers: list[FakeSpeaker]
) -> None:
    page = settings.voice_page
    assert page.stack.currentWidget() is page.empty_page
    assert "tts:" in page.empty_text.text() and "type: openai" in page.empty_text.text()
    with qtbot.waitSignal(settings.config_changed, timeout=WAIT):
        page.add_system_button.click()
    config = main_window.session.config.config
    assert [(e.type, e.name) for e in config.tts] == [("system", "system-voice")]
    assert config.default_tts == "system-voice"
    assert "- type: system" in config_text(main_window)
    assert page.stack.currentWidget() is page.form_page
    assert page.engine_combo.currentText() == "system-voice — system voices (on-prem)"
    # The system voices are listed from the engine (the fake knows none: say so).
    qtbot.waitUntil(lambda: "lists no voices" in page.voices_state.text(), timeout=WAIT)


def test_a_picture_of_the_voice_page_for_the_user_guide(
    qtbot: QtBot, settings: SettingsDialog, tmp_path: Path
) -> None:
    """``docs/images/settings-voice-light.png``: taken like packaging/screenshots.py takes
    the other Settings pages (under Xvfb, at 680 x 500), into ``$HUSHCHAT_SCREENSHOTS_DIR``
    when set (``xvfb-run -a pytest -k picture_of_the_voice``), else a temporary folder;
    the picture must not be blank."""
    page = settings.voice_page
    qtbot.waitUntil(lambda: page.voice_combo.count() == len(KOKORO_VOICES), timeout=WAIT)
    settings.resize(680, 500)
    qtbot.wait(300)  # layouts and paints done
    out = Path(os.environ.get("HUSHCHAT_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "settings-voice-light.png"
    assert settings.grab().save(str(path), "PNG")
    image = QImage(str(path))
    colours = {
        image.pixel(x, y) for y in range(0, image.height(), 4) for x in range(0, image.width(), 4)
    }
    assert len(colours) > 20, "the picture is blank"
