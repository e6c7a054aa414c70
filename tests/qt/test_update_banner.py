"""The window's opt-in update check: a link to a newer release, once a run, never by default.

The check itself (HTTP, versions, bad answers) is tested against a loopback server in
tests/unit/app/test_updates.py; here its answer is scripted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app import updates
from app.config import LoadedConfig, load_config
from app.session import Session
from tests.qt.conftest import closed_port_url, shown_main_window, write_config

PAGE = "https://github.com/hushchat/hushchat/releases/tag/v9.1.0"


class _Checks:
    def __init__(self, answer: updates.Release | Exception | None) -> None:
        self.answer = answer
        self.urls: list[str] = []

    async def __call__(self, url: str, *_args: Any, **_kwargs: Any) -> updates.Release | None:
        self.urls.append(url)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def qt_config(tmp_path: Path, request: pytest.FixtureRequest) -> LoadedConfig:
    check = getattr(request, "param", True)
    extra = f"updates:\n  check: {'true' if check else 'false'}\n"
    path = write_config(tmp_path / "config.yml", closed_port_url(), extra=extra)
    return load_config(path, {})


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> _Checks:
    """The scripted check the window calls (set before the window unlocks)."""
    scripted = _Checks(getattr(request, "param", updates.Release("9.1.0", PAGE)))
    monkeypatch.setattr(updates, "newer_release", scripted)
    return scripted


@pytest.fixture
def window(
    qtbot: QtBot, checks: _Checks, unlocked_session: Session, window_settings: QSettings
) -> Iterator[Any]:
    yield from shown_main_window(qtbot, unlocked_session, window_settings)


def test_a_newer_release_shows_a_link_once_a_run(
    qtbot: QtBot, window: Any, checks: _Checks, unlocked_session: Session
) -> None:
    qtbot.waitUntil(lambda: window.update_banner is not None, timeout=10_000)
    banner = window.update_banner
    assert banner.isVisible()
    assert "Hushchat 9.1.0 is available" in banner.text_label.text()
    assert f'href="{PAGE}"' in banner.text_label.text()
    assert banner.text_label.openExternalLinks()
    assert checks.urls == [unlocked_session.config.config.updates.url]
    window._on_unlocked()  # a second unlock in the same run asks no more
    assert len(checks.urls) == 1
    banner.dismiss_button.click()
    assert not banner.isVisible()


@pytest.fixture
def _logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="app.ui.main_window")
    return caplog


@pytest.mark.parametrize(
    "checks",
    [None, updates.UpdateCheckError("could not reach the release server (ConnectError)")],
    indirect=True,
)
def test_no_newer_release_or_a_failed_check_shows_nothing(
    qtbot: QtBot, _logged: pytest.LogCaptureFixture, window: Any, checks: _Checks
) -> None:
    expected = "update check: current" if checks.answer is None else "update check failed"
    qtbot.waitUntil(lambda: expected in _logged.text, timeout=10_000)
    assert window.update_banner is None
    assert window.error_banner.text == ""  # not an error the user must act on


@pytest.mark.parametrize("qt_config", [False], indirect=True)
def test_the_check_is_off_by_default_and_then_asks_nothing(
    qtbot: QtBot, window: Any, checks: _Checks
) -> None:
    qtbot.wait(200)
    assert checks.urls == []
    assert window.update_banner is None
