"""A private Secret Service for tests: ``dbus-daemon`` + ``gnome-keyring-daemon``.

:func:`secret_service` starts a session bus of its own (never the user's), starts
gnome-keyring's ``secrets`` component on it with a throw-away home directory, unlocks a
fresh login keyring with a password piped on stdin, and yields the environment that
points clients (``keyring``/``secretstorage``, ``secret-tool``) at it. Both daemons
are children of the test process and are stopped by their own handles afterwards.

Missing binaries skip the test locally with the reason; with ``CI=true`` they fail it,
because CI is supposed to install them (``gnome-keyring dbus libsecret-tools``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

REQUIRED_BINARIES = ("dbus-daemon", "dbus-send", "gnome-keyring-daemon")
KEYRING_PASSWORD = b"test-keyring-password"  # a throw-away keyring in a temp dir


def require_secret_service_binaries() -> None:
    """Skip (locally) or fail (CI) when the daemons are not installed."""
    missing = [name for name in REQUIRED_BINARIES if shutil.which(name) is None]
    if not missing:
        return
    reason = (
        f"Secret Service test needs {', '.join(missing)} "
        "(Debian: apt-get install gnome-keyring dbus libsecret-tools)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason + "; CI must install them")
    pytest.skip(reason)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def secret_service(base: Path) -> Iterator[dict[str, str]]:
    """Run a private session bus with an unlocked gnome-keyring; yield its environment."""
    require_secret_service_binaries()
    home = base / "home"
    runtime = base / "run"
    for directory in (home, runtime, home / ".local" / "share", home / ".config"):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime.chmod(0o700)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DBUS_", "GNOME_KEYRING", "XDG_"))
    }
    env.update(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CONFIG_HOME=str(home / ".config"),
    )
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    keyring_daemon: subprocess.Popen[bytes] | None = None
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().decode().strip()
        if not address:
            pytest.fail("dbus-daemon did not print its address")
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        keyring_daemon = subprocess.Popen(
            [
                "gnome-keyring-daemon",
                "--foreground",
                "--unlock",
                "--components=secrets",
                f"--control-directory={runtime / 'keyring'}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert keyring_daemon.stdin is not None
        keyring_daemon.stdin.write(KEYRING_PASSWORD)
        keyring_daemon.stdin.close()
        _wait_for_service(env)
        yield env
    finally:
        if keyring_daemon is not None:
            _stop(keyring_daemon)
        _stop(bus)


def _wait_for_service(env: dict[str, str]) -> None:
    """Wait until org.freedesktop.secrets answers on the private bus."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [
                "dbus-send",
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ],
            env=env,
            capture_output=True,
            check=False,
        )
        if b"boolean true" in probe.stdout:
            return
        time.sleep(0.05)
    pytest.fail("gnome-keyring-daemon did not register org.freedesktop.secrets")


class MemoryKeyring(KeyringBackend):
    """A ``keyring`` backend that keeps passwords in a dict: the OS keychain as the
    ``keyring`` API presents it, for tests that need no Secret Service."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


@contextmanager
def replaced_keyring() -> Iterator[MemoryKeyring]:
    """``keyring``'s backend replaced by a :class:`MemoryKeyring` for the block."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)
