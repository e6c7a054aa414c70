"""``python3 packaging/bootstrap.py package``: the desktop bundle builds, passes its own
self-test, and ships neither tests nor dev tools nor unused Qt modules.

Built once per module (about 90 s here) with the running environment (``--venv``): it pins
everything ``requirements-bundle.lock`` pins, so CI installs nothing more; the spec's
excludes keep its dev tools out, which the checks below prove. That two builds give the same
file list is checked by ``tests/benchmarks/bench_bundle.py`` (a second build is too slow
for every CI run).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.bundle,
    pytest.mark.slow,
    # The first test builds the bundle (its fixture): about 90 s here, more on a busy runner.
    pytest.mark.timeout(900),
    pytest.mark.skipif(sys.platform != "linux", reason="the Linux bundle is checked here"),
]

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "linux_libraries", ROOT / "packaging" / "linux_libraries.py"
)
assert _spec is not None and _spec.loader is not None
linux_libraries = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(linux_libraries)
VERSION = __import__("app").__version__
# Packages of the dev tools and the test stack: never in the bundle.
DEV_PACKAGES = ("pytest", "_pytest", "pytestqt", "ruff", "mypy", "PyInstaller", "coverage",
                "hypothesis", "schemathesis", "pip", "tests", "sync_server", "uvloop")  # fmt: skip
UNUSED_QT = (
    "QtWebEngine", "QtQuick", "QtQml", "Qt3D", "QtMultimediaWidgets", "QtMultimediaQuick", "QtPdf",
    "QtCharts", "QtVirtualKeyboard", "qtvirtualkeyboard", "libqpdf", "libkrb5",
    # Read aloud plays WAV/PCM only: QtMultimedia's FFmpeg backend and Qt's TTS mock stay out.
    "ffmpeg", "FFmpeg", "libavcodec", "libavformat", "libavutil", "libswresample", "libswscale",
    "qtexttospeech_mock",
)  # fmt: skip


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    command = [
        sys.executable, str(ROOT / "packaging" / "bootstrap.py"), "package",
        "--venv", sys.prefix, "--dist", str(root / "dist"), "--work", str(root / "build"),
    ]  # fmt: skip
    # Not measured by coverage.py (CI's `patch = subprocess`): PyInstaller's own Python
    # processes would be traced, doubling the build time; the frozen app is not measurable.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "hushchat self-test passed" in result.stdout
    return root / "dist"


def manifest_paths(dist: Path) -> list[str]:
    lines = (dist / "hushchat-manifest.txt").read_text(encoding="utf-8").splitlines()
    assert lines[-1].startswith("TOTAL\t")
    return [line.split("\t")[0] for line in lines[:-1]]


def test_the_bundles_self_test_passes_and_writes_nothing_in_home(
    dist: Path, tmp_path: Path
) -> None:
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUSHCHAT_", "XDG_"))}
    env.update(HOME=str(home), TMPDIR=str(temp), QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [str(dist / "hushchat" / "hushchat"), "--self-test"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hushchat self-test passed:")
    assert list(home.iterdir()) == [] and list(temp.iterdir()) == []


def test_no_tests_dev_tools_or_unused_qt_modules(dist: Path) -> None:
    paths = manifest_paths(dist)
    assert "hushchat" in paths and "_internal/PySide6/QtWidgets.abi3.so" in paths
    # sqlite-vec's extension (vector search over attachments), loaded by path: no hook.
    assert any(path.startswith("_internal/sqlite_vec/vec0.") for path in paths)
    # Read aloud (app/ui/voice): QtTextToSpeech with its speech-dispatcher plugin, and
    # QtMultimedia's library (QAudioSink) with the QtNetwork it links.
    for path in (
        "_internal/PySide6/QtTextToSpeech.abi3.so", "_internal/PySide6/QtMultimedia.abi3.so",
        "_internal/PySide6/Qt/lib/libQt6TextToSpeech.so.6",
        "_internal/PySide6/Qt/lib/libQt6Multimedia.so.6",
        "_internal/PySide6/Qt/lib/libQt6Network.so.6",
        "_internal/PySide6/Qt/plugins/texttospeech/libqtexttospeech_speechd.so",
    ):  # fmt: skip
        assert path in paths, path
    # Wayland desktops: the xdg-shell and its window decorations are in; the shells of
    # Qt compositors, kiosks and cars, and the server-buffer integrations are not.
    plugins = "_internal/PySide6/Qt/plugins/"
    for path in ("wayland-shell-integration/libxdg-shell.so", "platforms/libqwayland.so",
                 "wayland-decoration-client/libbradient.so"):  # fmt: skip
        assert plugins + path in paths, path
    assert not [p for p in paths if "ivi-shell" in p or p.endswith("-server.so")]
    assert not [p for p in paths if p.endswith(".dist-info/RECORD")]
    # python-docx needs lxml.etree only; the rest of lxml stays out.
    assert not [path for path in paths if path.startswith("_internal/lxml/objectify")]
    for path in paths:
        parts = path.split("/")
        assert not set(parts) & set(DEV_PACKAGES), path
        assert not any(part.startswith(DEV_PACKAGES) and part.endswith(".dist-info")
                       for part in parts), path  # fmt: skip
        assert not any(name in path for name in UNUSED_QT), path
        assert not path.endswith((".py", ".pyc")), path  # code lives in the archive
    # The modules bundled as bytecode: none of the dev tools either.
    viewer = [
        sys.executable, "-m", "PyInstaller.utils.cliutils.archive_viewer", "--recursive",
        "--brief", str(dist / "hushchat" / "hushchat"),
    ]  # fmt: skip
    result = subprocess.run(
        viewer,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules = {line.split()[-1] for line in result.stdout.splitlines() if line.strip()}
    assert "app.ui.main_window" in modules and "providers.openai" in modules
    assert {"app.ui.voice", "app.ui.voice.player", "app.ui.voice.system"} <= modules
    leaked = sorted(m for m in modules if m.split(".")[0] in DEV_PACKAGES)
    assert leaked == []


def test_every_binary_finds_its_libraries_and_the_hosts_stay_out(dist: Path) -> None:
    # packaging/linux_libraries.py leaves out the host's base libraries and those nothing
    # links: every binary kept must still find each library it links, here as on a user's
    # desktop (CI installs the same Debian packages a desktop has).
    internal = dist / "hushchat" / "_internal"
    binaries = [dist / "hushchat" / "hushchat"] + [
        path for path in sorted(internal.rglob("*.so*"))
        if path.is_file() and path.read_bytes()[:4] == b"\x7fELF"
    ]  # fmt: skip
    library_dirs = sorted({str(path.parent) for path in binaries if path.name.startswith("lib")})
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(library_dirs)}
    missing = []
    for path in binaries:
        result = subprocess.run(
            ["ldd", str(path)], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        missing += [f"{path.name}: {line.strip()}" for line in result.stdout.splitlines()
                    if "not found" in line]  # fmt: skip
    assert missing == []
    names = {path.name for path in binaries}
    assert len(binaries) > 100 and "libQt6Core.so.6" in names
    assert names.isdisjoint(linux_libraries.HOST_PROVIDED)
    # Nothing imports the stdlib's sqlite3 (the databases are SQLCipher's).
    stdlib_sqlite = [
        path for path in binaries
        if path.name.startswith("libsqlite3")
        or (path.name.startswith("_sqlite3") and path.parent.name == "lib-dynload")
    ]  # fmt: skip
    assert stdlib_sqlite == []


def test_manifest_lists_every_file_of_the_linux_tarball(dist: Path) -> None:
    tarball = dist / f"hushchat-{VERSION}-linux-x86_64.tar.gz"
    if not tarball.exists():
        tarball = next(dist.glob(f"hushchat-{VERSION}-linux-*.tar.gz"))
    with tarfile.open(tarball) as archive:
        files = sorted(
            member.name.removeprefix("hushchat/") for member in archive.getmembers()
            if member.isfile()
        )  # fmt: skip
    assert files == manifest_paths(dist)
    assert "share/applications/hushchat.desktop" in files
    for size in (16, 32, 48, 128, 256, 512):
        assert f"share/icons/hicolor/{size}x{size}/apps/hushchat.png" in files
    assert "share/icons/hicolor/scalable/apps/hushchat.svg" in files
