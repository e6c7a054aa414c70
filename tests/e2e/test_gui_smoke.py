"""``hushchat`` with no subcommand opens the window (offscreen) and closes cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.vault.kdf import FLOOR_PARAMS
from app.vault.vault import Vault

HUSHCHAT = Path(sys.executable).with_name("hushchat")


def _run_window(profile: Path, config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_")}
    env.update(
        {
            "QT_QPA_PLATFORM": "offscreen",
            "HUSHCHAT_GUI_SMOKE_EXIT_AFTER_MS": "200",
            # Window state goes to this test's directory, not the user's.
            "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
            "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        }
    )
    return subprocess.run(
        [str(HUSHCHAT), "--debug", "--config", str(config), "--profile", str(profile)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(
        "llms:\n"
        "  - provider_name: local\n"
        "    type: openai\n"
        "    base_url: http://127.0.0.1:9/v1\n"
        "    model_name: m\n",
        encoding="utf-8",
    )
    return path


def test_first_run_window_opens_and_closes(tmp_path: Path, config: Path) -> None:
    profile = tmp_path / "profile"
    result = _run_window(profile, config, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "window shown on the first_run page" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (profile / "vault.json").exists()  # nothing created without the user


def test_existing_vault_opens_on_unlock_and_releases_the_profile(
    tmp_path: Path, config: Path
) -> None:
    profile = tmp_path / "profile"
    vault, _code = Vault.create(profile, "smoke test passphrase", kdf=FLOOR_PARAMS)
    vault.close()
    before = (profile / "vault.json").read_bytes()
    result = _run_window(profile, config, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "window shown on the unlock page" in result.stderr
    assert "Traceback" not in result.stderr
    assert (profile / "vault.json").read_bytes() == before
    Vault.open(profile).close()  # the window released the profile lock
