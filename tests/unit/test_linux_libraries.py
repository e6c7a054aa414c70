"""``packaging/linux_libraries.py``: which shared libraries the Linux bundle keeps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def libraries() -> ModuleType:
    path = ROOT / "packaging" / "linux_libraries.py"
    spec = importlib.util.spec_from_file_location("linux_libraries", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entry(destination: str) -> tuple[str, str, str]:
    return (destination, f"/src/{destination}", "BINARY")


LINKS = {
    "/src/_internal/PySide6/QtGui.abi3.so": ["libQt6Gui.so.6", "libstdc++.so.6"],
    "/src/_internal/PySide6/Qt/lib/libQt6Gui.so.6": ["libQt6Core.so.6", "libfreetype.so.6"],
    "/src/_internal/PySide6/Qt/lib/libQt6Core.so.6": ["libicuuc.so.73", "libglib-2.0.so.0"],
    "/src/_internal/PySide6/Qt/plugins/platforms/libqxcb.so": ["libQt6XcbQpa.so.6"],
    "/src/_internal/libglib-2.0.so.0": ["libpcre2-8.so.0"],
    "/src/_internal/libpython3.11.so.1.0": ["libz.so.1"],
}


def test_keeps_what_is_linked_from_the_roots_and_drops_the_rest(libraries: ModuleType) -> None:
    kept_names = [
        "_internal/PySide6/QtGui.abi3.so",  # an extension module: a root
        "_internal/PySide6/Qt/lib/libQt6Gui.so.6",
        "_internal/PySide6/Qt/lib/libQt6Core.so.6",
        "_internal/PySide6/Qt/lib/libicuuc.so.73",
        "_internal/PySide6/Qt/plugins/platforms/libqxcb.so",  # a plugin: a root
        "_internal/PySide6/Qt/lib/libQt6XcbQpa.so.6",
        "_internal/libpython3.11.so.1.0",  # the bootloader loads it by path
    ]
    dropped_names = [
        "_internal/libstdc++.so.6",  # the host's
        "_internal/libfreetype.so.6",
        "_internal/libglib-2.0.so.0",
        "_internal/libz.so.1",
        "_internal/libpcre2-8.so.0",  # only the host's glib links it
        "_internal/libgio-2.0.so.0",  # linked by nothing (a dropped plugin's)
        "_internal/libjpeg.so.62",
    ]
    entries = [entry(name) for name in kept_names + dropped_names]
    kept, dropped = libraries.prune(entries, lambda path: LINKS.get(path, []))
    assert [e[0] for e in kept] == kept_names
    assert [e[0] for e in dropped] == dropped_names


def test_windows_style_destinations_are_read_too(libraries: ModuleType) -> None:
    kept, dropped = libraries.prune(
        [entry("PySide6\\Qt\\plugins\\styles\\libqfusion.so"), entry("libX11.so.6")],
        lambda path: [],
    )
    assert len(kept) == 1 and len(dropped) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="reads ELF files with binutils' objdump")
def test_needed_reads_the_dynamic_section_of_a_real_library(libraries: ModuleType) -> None:
    import _ssl  # an extension module of this Python, linked to OpenSSL

    assert _ssl.__file__ is not None
    candidates = [Path(_ssl.__file__)]
    linked = libraries.needed(str(candidates[0]))
    assert any(name.startswith("libssl.so") for name in linked), linked
    assert any(name.startswith("libc.so") for name in linked), linked


def test_the_dbus_library_comes_from_the_desktop_with_what_only_it_links(
    libraries: ModuleType,
) -> None:
    links = {
        "/src/_internal/PySide6/QtDBus.abi3.so": ["libQt6DBus.so.6"],
        "/src/_internal/PySide6/Qt/lib/libQt6DBus.so.6": ["libdbus-1.so.3"],
        "/src/_internal/libdbus-1.so.3": ["libsystemd.so.0"],
        "/src/_internal/libsystemd.so.0": ["libgcrypt.so.20"],
    }
    names = [
        "_internal/PySide6/QtDBus.abi3.so",
        "_internal/PySide6/Qt/lib/libQt6DBus.so.6",
        "_internal/libdbus-1.so.3",
        "_internal/libsystemd.so.0",
        "_internal/libgcrypt.so.20",
    ]
    kept, dropped = libraries.prune([entry(n) for n in names], lambda p: links.get(p, []))
    assert [e[0] for e in kept] == names[:2]
    assert [e[0] for e in dropped] == names[2:]
