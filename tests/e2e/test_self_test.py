"""``hushchat --self-test``: passes in a working installation, touches nothing of the user's,
and fails with one line on stderr when a step fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import app.ui.self_test as window_check
from app.self_test import isolate_environment, run_self_test

ROOT = Path(__file__).resolve().parents[2]


def test_self_test_passes_and_writes_nothing_in_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    temp = tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HUSHCHAT_", "XDG_", "QT_QPA"))
    }
    env.update(HOME=str(home), TMPDIR=str(temp))
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "--self-test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hushchat self-test passed:"), result.stdout
    assert "total" in result.stdout
    assert list(home.iterdir()) == []  # no profile, config, settings or cache of the user's
    assert list(temp.iterdir()) == []  # the throw-away profile is gone


def test_a_failed_step_is_one_line_on_stderr_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Path] = []

    def fail(root: Path) -> dict[str, float]:
        seen.append(root)
        assert os.environ["HUSHCHAT_PROFILE"] == str(root / "profile")
        raise window_check.SelfTestError("the rendered answer lacks ['x']")

    monkeypatch.setattr(window_check, "run_window_check", fail)
    before = dict(os.environ)
    assert run_self_test() == 1
    err = capsys.readouterr().err
    assert err == "hushchat: self-test failed: the rendered answer lacks ['x']\n"
    assert not seen[0].exists()  # removed after a failure too
    assert dict(os.environ) == before  # the process environment is put back


def test_a_crash_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(root: Path) -> dict[str, float]:
        raise ImportError("No module named 'PySide6.QtSvg'")

    monkeypatch.setattr(window_check, "run_window_check", crash)
    assert run_self_test() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ImportError: No module named 'PySide6.QtSvg'" in err


def test_isolation_points_every_writable_place_into_the_temp_folder(tmp_path: Path) -> None:
    env = {"HOME": "/home/someone", "QT_QPA_PLATFORM": "xcb"}
    isolate_environment(env, tmp_path)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        assert Path(env[name]).parent == tmp_path
    assert env["HUSHCHAT_PROFILE"] == str(tmp_path / "profile")
    assert env["PYTHON_KEYRING_BACKEND"] == "keyring.backends.fail.Keyring"
    assert env["QT_QPA_PLATFORM"] == "xcb"  # a platform the caller chose is kept
