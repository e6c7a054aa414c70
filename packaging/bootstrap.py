#!/usr/bin/env python3
"""Set up a fresh checkout and run Hushchat or its test suite.

The README's two commands both go through this file, so a new machine with only
Python and build tools needs nothing else:

    python3 packaging/bootstrap.py app [ARGS...]    # install, then run `hushchat ARGS`
    python3 packaging/bootstrap.py test [PYTEST ARGS...]   # install, lint, type-check, test
    python3 packaging/bootstrap.py package [--venv DIR]    # the desktop bundle in dist/

Both create ``.venv`` in the checkout and install the pinned, hashed lock files
with ``pip --require-hashes`` (never Poetry's resolver: see docs/development.md).
An install is skipped when the lock file has not changed since the last one.
The test command also builds the real peers the integration tests run against
(llama.cpp's llama-server, from a pinned source release) and caches them.
Only the standard library is used here: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("HUSHCHAT_VENV", ROOT / ".venv"))
IS_WINDOWS = os.name == "nt"
BIN = VENV / ("Scripts" if IS_WINDOWS else "bin")
PYTHON = BIN / ("python.exe" if IS_WINDOWS else "python")


def say(message: str) -> None:
    print(f"[bootstrap] {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, env: dict[str, str] | None = None) -> int:
    """Run a command, echoing it; returns its exit code."""
    say("$ " + " ".join(str(a) for a in args))
    return subprocess.call([str(a) for a in args], cwd=ROOT, env=env)


def must(*args: str | Path, env: dict[str, str] | None = None) -> None:
    code = run(*args, env=env)
    if code != 0:
        say(f"failed with exit code {code}")
        sys.exit(code)


def venv_python(venv_dir: Path) -> Path:
    """The interpreter of the virtual environment ``venv_dir``."""
    return (
        venv_dir / ("Scripts" if IS_WINDOWS else "bin") / ("python.exe" if IS_WINDOWS else "python")
    )


def ensure_venv(lock: str, venv_dir: Path = VENV) -> Path:
    """Create the virtual environment ``venv_dir`` and install ``lock`` plus this project;
    returns its interpreter."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        say(f"Hushchat needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
        sys.exit(2)
    python = venv_python(venv_dir)
    if not python.exists():
        say(f"creating virtual environment in {venv_dir}")
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    lock_path = ROOT / lock
    digest = hashlib.sha256(lock_path.read_bytes()).hexdigest()
    stamp = venv_dir / f".installed-{lock}"
    if stamp.exists() and stamp.read_text() == digest:
        return python
    if _installed_within_another_lock(lock_path, venv_dir):
        stamp.write_text(digest)  # e.g. the app's lock after the test lock: nothing to add
        return python
    must(python, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", lock_path)
    # The project itself, editable, without touching the locked dependency set.
    must(
        python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
        "--editable", ROOT,
    )  # fmt: skip
    stamp.write_text(digest)
    return python


def _pins(lock_path: Path) -> set[str]:
    """The requirement lines of a lock file (``name==version ; marker``), hashes aside."""
    pins = set()
    for line in lock_path.read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            pins.add(line.rstrip("\\ ").lower().replace("_", "-"))
    return pins


def _installed_within_another_lock(lock_path: Path, venv_dir: Path = VENV) -> bool:
    """Whether a lock installed here, and unchanged since, pins everything ``lock_path``
    pins (the test lock includes the app's): then installing it would add nothing."""
    wanted = _pins(lock_path)
    for stamp in venv_dir.glob(".installed-*"):
        other = ROOT / stamp.name.removeprefix(".installed-")
        if other == lock_path or not other.is_file():
            continue
        digest = hashlib.sha256(other.read_bytes()).hexdigest()
        if stamp.read_text() == digest and wanted <= _pins(other):
            return True
    return False


def build_peers(env: dict[str, str]) -> None:
    """Build (or find cached) llama-server and tell the tests where it is."""
    if env.get("HUSHCHAT_LLAMA_SERVER"):
        return
    if IS_WINDOWS or shutil.which("cmake") is None or shutil.which("bash") is None:
        say("cmake or bash not found: the llama-server integration tests will be skipped")
        return
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "build-llama-server")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        say("building llama-server failed (see above)")
        sys.exit(result.returncode)
    env["HUSHCHAT_LLAMA_SERVER"] = result.stdout.strip().splitlines()[-1]


def cmd_app(args: list[str]) -> int:
    ensure_venv("requirements.lock")
    hushchat = BIN / ("hushchat.exe" if IS_WINDOWS else "hushchat")
    return run(hushchat, *args)


def run_pytest_with_coverage(args: list[str], env: dict[str, str]) -> tuple[int, int]:
    """Run pytest under coverage.py; print the table and check the floors.

    Branch coverage of app, providers and sync_server, with the Python subprocesses the
    tests start (``[tool.coverage.*]`` in pyproject.toml). The floors of the critical
    modules (``[tool.hushchat.coverage-floors]``) are enforced on a full run; with pytest
    arguments (a part of the suite) misses are only reported. Returns the exit codes of
    pytest and of the floor check.
    """
    data = Path(tempfile.mkdtemp(prefix="hushchat-coverage-"))
    env = {**env, "COVERAGE_FILE": str(data / ".coverage")}
    try:
        pytest_code = run(PYTHON, "-m", "coverage", "run", "-m", "pytest", *args, env=env)
        if run(PYTHON, "-m", "coverage", "combine", "--quiet", env=env) != 0:
            say("coverage combine failed: no coverage figures")
            return pytest_code, 1
        run(PYTHON, "-m", "coverage", "report", "--skip-covered", env=env)
        report = data / "coverage.json"
        if run(PYTHON, "-m", "coverage", "json", "--quiet", "-o", report, env=env) != 0:
            return pytest_code, 1
        floors = [PYTHON, ROOT / "packaging" / "coverage_floors.py", report]
        return pytest_code, run(*floors, *(["--report-only"] if args else []), env=env)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def cmd_test(args: list[str]) -> int:
    ensure_venv("requirements-dev.lock")
    env = dict(os.environ)
    build_peers(env)
    checks: list[tuple[str, list[str | Path]]] = [
        ("ruff check", [PYTHON, "-m", "ruff", "check", "."]),
        ("ruff format", [PYTHON, "-m", "ruff", "format", "--check", "."]),
        ("mypy", [PYTHON, "-m", "mypy"]),
    ]
    failed = []
    for name, command in checks:
        if run(*command, env=env) != 0:
            failed.append(name)
    pytest_code, floors_code = run_pytest_with_coverage(args, env)
    if pytest_code == 5:  # pytest found no test to run: that is a failure here
        say("pytest collected no tests")
    if pytest_code != 0:
        failed.append("pytest")
    if floors_code != 0:
        failed.append("coverage floors")
    if failed:
        say("FAILED: " + ", ".join(failed))
        return 1
    say("all checks and tests passed")
    return 0


# --- package: the desktop bundle -----------------------------------------------------------

BUNDLE_VENV = ROOT / ".venv-bundle"
BUNDLE_LOCK = "requirements-bundle.lock"
SPEC = ROOT / "packaging" / "hushchat.spec"


def app_version() -> str:
    """``app.__version__``, read from the source (the build venv may not be this one)."""
    text = (ROOT / "app" / "__init__.py").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("__version__ = "):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise SystemExit("app/__init__.py has no __version__")


def manifest(folder: Path) -> tuple[list[str], int]:
    """Lines ``relative/path<TAB>size`` of every file under ``folder`` (sorted, ``/``
    separators) and the total size in bytes."""
    entries = sorted(
        (path.relative_to(folder).as_posix(), path.stat().st_size)
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink()
    )
    return [f"{name}\t{size}" for name, size in entries], sum(size for _, size in entries)


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The same lock gives the same archive listing: no owners or build times in it.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    return info


def linux_tarball(onedir: Path, target: Path) -> None:
    """``target`` (.tar.gz) of the onedir, files sorted, owners and times fixed."""
    with (
        target.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w") as archive,
    ):
        for path in [onedir, *sorted(onedir.rglob("*"))]:
            name = Path(onedir.name, path.relative_to(onedir)).as_posix()
            archive.add(path, arcname=name, recursive=False, filter=_tar_filter)


def cmd_package(args: list[str]) -> int:
    """Build the desktop bundle into ``dist/`` with PyInstaller and check it.

    ``--venv DIR`` builds with an existing environment as it is (the test suite uses its
    own, which pins everything the bundle lock pins); by default ``.venv-bundle`` is
    created from ``requirements-bundle.lock`` (hashed). ``--dist DIR`` and ``--work DIR``
    move the output and PyInstaller's work folder (default ``dist/`` and ``build/``).
    """
    parser = argparse.ArgumentParser(prog="bootstrap.py package", description=cmd_package.__doc__)
    parser.add_argument("--venv", type=Path, help="build with this environment, as it is")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build")
    options = parser.parse_args(args)
    started = time.monotonic()
    if options.venv is not None:
        python = venv_python(options.venv.resolve())
        if not python.exists():
            say(f"{options.venv} is not a virtual environment (no {python})")
            return 2
    else:
        python = ensure_venv(BUNDLE_LOCK, BUNDLE_VENV)
    dist, work = options.dist.resolve(), options.work.resolve()
    version = app_version()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("PYTHONPATH", None)
    must(
        python, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", dist, "--workpath", work, SPEC, env=env,
    )  # fmt: skip
    onedir = dist / "hushchat"
    # On Windows hushchat.exe is windowed (no console to print to): check with the CLI one.
    executable = onedir / ("hushchat-cli.exe" if IS_WINDOWS else "hushchat")
    outputs = [onedir]
    if sys.platform.startswith("linux"):
        share = onedir / "share"
        applications = share / "applications"
        applications.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(
            ROOT / "packaging" / "linux" / "hushchat.desktop", applications / "hushchat.desktop"
        )
        must(
            python, ROOT / "packaging" / "linux" / "render_icons.py",
            ROOT / "app" / "ui" / "icons" / "hushchat.svg", share / "icons" / "hicolor",
            env={**env, "QT_QPA_PLATFORM": "offscreen"},
        )  # fmt: skip
    lines, total = manifest(onedir)
    listing = dist / "hushchat-manifest.txt"
    listing.write_text("\n".join([*lines, f"TOTAL\t{total}", ""]), encoding="utf-8")
    print("\n".join(lines))
    print(f"TOTAL\t{total}\t({total / 1e6:.1f} MB in {len(lines)} files; {listing})")
    if sys.platform.startswith("linux"):
        machine = platform.machine().lower() or "unknown"
        tarball = dist / f"hushchat-{version}-linux-{machine}.tar.gz"
        linux_tarball(onedir, tarball)
        outputs.append(tarball)
    elif sys.platform == "darwin":
        outputs.append(dist / "Hushchat.app")
    say("self-test of the bundle")
    if run(executable, "--self-test", env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}) != 0:
        say("FAILED: the bundle's self-test (see above)")
        return 1
    say(f"built in {time.monotonic() - started:.0f} s: " + ", ".join(str(p) for p in outputs))
    return 0


def main(argv: list[str]) -> int:
    commands = {"app": cmd_app, "test": cmd_test, "package": cmd_package}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return commands[command](rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
