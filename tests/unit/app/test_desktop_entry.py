"""``hushchat --install-desktop-entry`` and the tarball's ``hushchat.desktop``."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.desktop_entry import desktop_file, install_desktop_entry

ROOT = Path(__file__).resolve().parents[3]


def _entry(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser["Desktop Entry"]


def test_the_tarballs_desktop_file_is_the_apps() -> None:
    shipped = (ROOT / "packaging" / "linux" / "hushchat.desktop").read_text(encoding="utf-8")
    assert shipped == desktop_file(["hushchat"])
    entry = _entry(shipped)
    assert entry["Exec"] == "hushchat"
    assert entry["Icon"] == "hushchat"
    assert entry["Type"] == "Application"


def test_exec_quotes_paths_with_spaces_and_specials() -> None:
    entry = _entry(desktop_file(["/opt/My Apps/hush$chat"]))
    assert entry["Exec"] == '"/opt/My Apps/hush\\\\$chat"'


def test_install_writes_entry_and_icons_under_xdg_data_home(tmp_path: Path) -> None:
    icons = tmp_path / "bundle" / "share" / "icons" / "hicolor"
    (icons / "48x48" / "apps").mkdir(parents=True)
    (icons / "48x48" / "apps" / "hushchat.png").write_bytes(b"png")
    data = tmp_path / "data"
    entry = install_desktop_entry({"XDG_DATA_HOME": str(data)}, ["/opt/hushchat/hushchat"], icons)
    assert entry == data / "applications" / "hushchat.desktop"
    assert _entry(entry.read_text(encoding="utf-8"))["Exec"] == "/opt/hushchat/hushchat"
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "hushchat.svg").is_file()
    assert (data / "icons" / "hicolor" / "48x48" / "apps" / "hushchat.png").read_bytes() == b"png"


def test_install_defaults_to_local_share(tmp_path: Path) -> None:
    entry = install_desktop_entry({"HOME": str(tmp_path)}, ["hushchat"])
    assert entry == tmp_path / ".local" / "share" / "applications" / "hushchat.desktop"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux launchers only")
def test_the_flag_points_the_entry_at_the_running_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUSHCHAT_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "data"))
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "--install-desktop-entry"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "data" / "applications" / "hushchat.desktop").read_text(encoding="utf-8")
    assert _entry(text)["Exec"].startswith(str(Path(sys.executable).resolve()))
    assert _entry(text)["Exec"].endswith("-m app.cli")
    assert not (tmp_path / "home").exists()
