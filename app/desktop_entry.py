"""``hushchat --install-desktop-entry``: add Hushchat to the Linux application launcher.

Writes ``applications/hushchat.desktop`` and the icon (``icons/hicolor/scalable/apps``,
plus the PNG sizes a bundle ships next to its executable in ``share/icons/hicolor``) under
``$XDG_DATA_HOME`` (default ``~/.local/share``), the desktop entry's ``Exec`` pointing at
the running executable. The same ``desktop_file`` text, with ``Exec=hushchat``, is
``packaging/linux/hushchat.desktop`` in the Linux tarball.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.errors import ExitCode

__all__ = ["desktop_file", "install_desktop_entry", "launcher_command", "run_install"]

APP_ID = "hushchat"
ICON_SVG = Path(__file__).parent / "ui" / "icons" / "hushchat.svg"
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def _quote(argument: str) -> str:
    """One argument of an ``Exec`` key (Desktop Entry Specification, "The Exec key")."""
    if argument and not (_RESERVED & set(argument)):
        return argument
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in argument)
    # The desktop file's own string escaping doubles every backslash again.
    return '"' + escaped.replace("\\", "\\\\") + '"'


def desktop_file(command: Sequence[str]) -> str:
    """The text of ``hushchat.desktop`` starting ``command`` (its arguments unquoted)."""
    exec_line = " ".join(_quote(part) for part in command)
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=Hushchat\n"
        "GenericName=LLM Chat\n"
        "Comment=Private, local-first chat with the LLMs you choose\n"
        f"Exec={exec_line}\n"
        f"Icon={APP_ID}\n"
        "Terminal=false\n"
        "Categories=Network;Chat;Utility;\n"
        "Keywords=llm;ai;chat;ollama;llama;\n"
        "StartupNotify=true\n"
        f"StartupWMClass={APP_ID}\n"
    )


def launcher_command() -> list[str]:
    """How the launcher starts this installation: the bundle's executable, else the
    ``hushchat`` script that is running, else this interpreter with ``-m app.cli``."""
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).resolve())]
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name.startswith("hushchat") and script.is_file():
        return [str(script.resolve())]
    return [str(Path(sys.executable).resolve()), "-m", "app.cli"]


def _bundled_icons() -> Path | None:
    """``share/icons/hicolor`` next to a bundle's executable (the Linux tarball's layout)."""
    if not getattr(sys, "frozen", False):
        return None
    folder = Path(sys.executable).resolve().parent / "share" / "icons" / "hicolor"
    return folder if folder.is_dir() else None


def install_desktop_entry(
    env: Mapping[str, str], command: Sequence[str], icons: Path | None = None
) -> Path:
    """Write the desktop entry and icons under the XDG data folder; returns the entry."""
    data = Path(
        env.get("XDG_DATA_HOME") or Path(env.get("HOME", "~")).expanduser() / ".local" / "share"
    )
    applications = data / "applications"
    applications.mkdir(parents=True, exist_ok=True)
    entry = applications / f"{APP_ID}.desktop"
    entry.write_text(desktop_file(command), encoding="utf-8")
    hicolor = data / "icons" / "hicolor"
    scalable = hicolor / "scalable" / "apps"
    scalable.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ICON_SVG, scalable / f"{APP_ID}.svg")
    if icons is not None:
        for png in sorted(icons.glob(f"*/apps/{APP_ID}.png")):
            target = hicolor / png.relative_to(icons)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, target)
    return entry


def run_install() -> int:
    """The ``--install-desktop-entry`` command; returns the exit code."""
    if not sys.platform.startswith("linux"):
        print(
            "hushchat: --install-desktop-entry is for Linux desktops; on macOS drag "
            "Hushchat.app to Applications, on Windows the installer adds the Start-menu entry",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    try:
        entry = install_desktop_entry(os.environ, launcher_command(), _bundled_icons())
    except OSError as error:
        print(
            f"hushchat: could not write the desktop entry: {error}; check that "
            "$XDG_DATA_HOME (or ~/.local/share) is writable",
            file=sys.stderr,
        )
        return ExitCode.UNEXPECTED
    print(f"added Hushchat to the application launcher: {entry}")
    return ExitCode.OK
