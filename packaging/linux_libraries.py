"""Which shared libraries the Linux bundle carries (used by ``packaging/hushchat.spec``).

PyInstaller collects every library its analysis saw a binary link, including the
dependencies of Qt plugins the spec then drops (the GTK 3 theme, the image formats):
those stay behind, linked by nothing. It also copies the host's base desktop
libraries (glibc's companions, libstdc++, X11/xcb, glib, fontconfig, freetype, zlib).
Every desktop Linux has those, and a bundled copy older than the host's is a known
cause of breakage (an old libstdc++ stops the host's Mesa drivers from loading; an old
fontconfig cannot read the host's configuration). The AppImage project keeps the list
of such libraries; ``HOST_LIBRARIES`` is that list.

``prune`` keeps a library only when a kept binary links it (``DT_NEEDED``, read with
``objdump`` from binutils, which PyInstaller needs on Linux anyway), starting from the
binaries something loads by path: the Python extension modules, the Qt plugins and
libpython. ``tests/e2e/test_bundle.py`` checks that every binary of the built bundle
still finds all its libraries.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath

# The AppImage project's excludelist (github.com/AppImageCommunity/pkg2appimage,
# "excludelist"): libraries every target system provides, which must come from it.
HOST_LIBRARIES = frozenset({
    "ld-linux.so.2", "ld-linux-x86-64.so.2", "libanl.so.1", "libasound.so.2",
    "libBrokenLocale.so.1", "libcidn.so.1", "libcom_err.so.2", "libc.so.6", "libdl.so.2",
    "libdrm.so.2", "libEGL.so.1", "libexpat.so.1", "libfontconfig.so.1", "libfreetype.so.6",
    "libfribidi.so.0", "libgbm.so.1", "libgcc_s.so.1", "libgdk_pixbuf-2.0.so.0",
    "libgio-2.0.so.0", "libglapi.so.0", "libGLdispatch.so.0", "libglib-2.0.so.0",
    "libGL.so.1", "libGLX.so.0", "libgmp.so.10", "libgobject-2.0.so.0", "libgpg-error.so.0",
    "libharfbuzz.so.0", "libICE.so.6", "libjack.so.0", "libm.so.6", "libmvec.so.1",
    "libnss_compat.so.2", "libnss_db.so.2", "libnss_dns.so.2", "libnss_files.so.2",
    "libnss_hesiod.so.2", "libnss_nisplus.so.2", "libnss_nis.so.2", "libOpenGL.so.0",
    "libp11-kit.so.0", "libpango-1.0.so.0", "libpangocairo-1.0.so.0", "libpangoft2-1.0.so.0",
    "libpthread.so.0", "libresolv.so.2", "librt.so.1", "libSM.so.6", "libstdc++.so.6",
    "libthai.so.0", "libthread_db.so.1", "libusb-1.0.so.0", "libutil.so.1", "libuuid.so.1",
    "libX11.so.6", "libX11-xcb.so.1", "libxcb.so.1", "libxcb-dri2.so.0", "libxcb-dri3.so.0",
    "libz.so.1",
})  # fmt: skip

# Not on that list, but on every desktop Linux the bundle runs on (Qt 6.11 needs glibc
# 2.35: Debian 12, Ubuntu 22.04, Fedora 36 and later):
# - the D-Bus library (the Secret Service, the desktop portals and the screen-lock signals
#   all go over the session bus); a bundled copy brings libsystemd and its compression
#   and crypto libraries with it (2.7 MB);
# - OpenSSL 3 (Python's ssl and hashlib): all of those ship it, its ABI is stable across
#   3.x, and the distribution's copy gets its security fixes, which a bundled one would
#   not until the next Hushchat release (5.4 MB).
DESKTOP_LIBRARIES = frozenset({"libdbus-1.so.3", "libssl.so.3", "libcrypto.so.3"})
# The client libraries of the host's sound server and speech daemon (read aloud,
# app/ui/voice.py): they must match the daemons they talk to, so they come from the host.
# - libpulse: PulseAudio's client, also what PipeWire desktops serve (pipewire-pulse);
#   every desktop Linux has it. A bundled copy brought libpulsecommon, libsystemd and
#   libgcrypt with it (3 MB).
# - libspeechd: speech-dispatcher's client, present where speech-dispatcher is installed.
#   Without it only the system voices are missing (Qt's speechd plugin does not load, and
#   the window says to install speech-dispatcher and espeak-ng); the app starts as before.
AUDIO_LIBRARIES = frozenset({"libpulse.so.0", "libspeechd.so.2"})
HOST_PROVIDED = HOST_LIBRARIES | DESKTOP_LIBRARIES | AUDIO_LIBRARIES

_NEEDED = re.compile(r"^\s*NEEDED\s+(\S+)\s*$", re.MULTILINE)
_LIBRARY = re.compile(r"^lib.*\.so(\.|$)")

#: A TOC entry of PyInstaller: (destination name, source path, type code).
Entry = tuple[str, str, str]


def needed(path: str) -> list[str]:
    """The sonames ``path`` links (its ``DT_NEEDED`` entries)."""
    command = ["objdump", "-p", path]  # binutils' objdump from PATH, as PyInstaller does
    result = subprocess.run(  # noqa: S603 - fixed program, a file path argument
        command, capture_output=True, text=True, check=True, timeout=60
    )
    return _NEEDED.findall(result.stdout)


def is_root(destination: str) -> bool:
    """Loaded by path rather than linked: extension modules, Qt plugins, libpython."""
    path = PurePosixPath(destination.replace("\\", "/"))
    return (
        not _LIBRARY.match(path.name)
        or "plugins" in path.parts
        or path.name.startswith("libpython")
    )


def _name(entry: Entry) -> str:
    return PurePosixPath(entry[0].replace("\\", "/")).name


def prune(
    binaries: Iterable[Entry], links: Callable[[str], list[str]] = needed
) -> tuple[list[Entry], list[Entry]]:
    """Split ``binaries`` into (kept, dropped): the host's libraries and those no kept
    binary links are dropped."""
    entries = list(binaries)
    by_name = {_name(entry): entry for entry in entries}
    reached: set[str] = set()
    pending = [entry for entry in entries if is_root(entry[0])]
    while pending:
        entry = pending.pop()
        name = _name(entry)
        if name in reached or name in HOST_PROVIDED:
            continue
        reached.add(name)
        pending.extend(by_name[soname] for soname in links(entry[1]) if soname in by_name)
    kept = [entry for entry in entries if _name(entry) in reached]
    dropped = [entry for entry in entries if _name(entry) not in reached]
    return kept, dropped
