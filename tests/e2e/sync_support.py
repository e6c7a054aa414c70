"""What the ``hushchat sync …`` subprocess tests share: the oidc-provider peer, a sync
server on loopback, and :class:`Device`, one HOME with its own profile and config that
runs ``hushchat`` and signs in with ``--no-browser`` (the test plays the browser with the
address the command prints).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.config import Config, LoadedConfig
from app.session import Session
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from sync_server.app import create_app
from tests.homes import home_env
from tests.integration.sync_client.peers import oidc_settings, provider
from tests.integration.sync_client.support import LiveServer, ScriptedBrowser
from tests.peers.oidc_provider import OidcProvider

HUSHCHAT = Path(sys.executable).with_name("hushchat")
PASSPHRASE = "correct horse battery staple for sync"
#: Argon2 at its floor for vaults the commands create (fast tests).
KDF = ("--kdf-memory-mib", "64", "--kdf-iterations", "3", "--kdf-parallelism", "4")
_AUTH_URL = re.compile(r"(http://127\.0\.0\.1:\d+/auth\?\S+)")

__all__ = [
    "HUSHCHAT",
    "KDF",
    "PASSPHRASE",
    "Device",
    "make_device",
    "provider",
    "server",
]


@pytest.fixture
def server(provider: OidcProvider, tmp_path: Path) -> Iterator[LiveServer]:
    """A sync server on loopback with its own SQLite database."""
    with LiveServer(create_app(oidc_settings(provider, tmp_path / "server"))) as live:
        yield live


@dataclass
class Device:
    """One computer: a HOME with its own profile, config and temporary directory."""

    home: Path

    @classmethod
    def new(cls, home: Path) -> Device:
        """A HOME with an empty config and no vault."""
        (home / "tmp").mkdir(parents=True)
        (home / "config.yml").write_text("llms: []\n", encoding="utf-8")
        return cls(home)

    @property
    def profile(self) -> Path:
        return self.home / "profile"

    def env(self) -> dict[str, str]:
        return home_env(self.home, self.profile, self.home / "config.yml")

    def run(self, *args: str, stdin: str = PASSPHRASE + "\n") -> subprocess.CompletedProcess[str]:
        """``hushchat ARGS`` with ``stdin``, to its end."""
        return subprocess.run(
            [str(HUSHCHAT), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
            check=False,
        )

    def signed_in(self, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
        """A command that signs in with ``--no-browser``: the test opens the printed
        address like the user's browser would (picking the account ``alice``)."""
        process = subprocess.Popen(
            [str(HUSHCHAT), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=self.env(),
        )  # fmt: skip
        assert process.stdin is not None and process.stderr is not None
        process.stdin.write(stdin)
        process.stdin.close()
        seen: list[str] = []
        browser = ScriptedBrowser()

        def read() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                seen.append(line)
                match = _AUTH_URL.search(line)
                if match:  # the user picks their account at the issuer
                    browser.open(match.group(1) + "&login_hint=alice")

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            process.wait(timeout=120)
        finally:
            process.kill()
            reader.join(timeout=10)
            assert process.stdout is not None
            stdout = process.stdout.read()
            process.stdout.close()
            process.stderr.close()
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, "".join(seen))

    def login(
        self, server: LiveServer, name: str, passphrase: str = PASSPHRASE
    ) -> subprocess.CompletedProcess[str]:
        """``sync login --no-browser`` with ``passphrase`` on stdin."""
        return self.signed_in(
            "sync", "login", "--server", server.url, "--no-browser", "--passphrase-stdin",
            "--device-name", name, *KDF,
            stdin=passphrase + "\n",
        )  # fmt: skip


async def make_device(home: Path, chats: dict[str, Tier]) -> Device:
    """A HOME whose vault (passphrase :data:`PASSPHRASE`) holds ``chats`` (title → tier)."""
    device = Device.new(home)
    session = Session(LoadedConfig(Config(), None, {}), device.profile, kdf=FLOOR_PARAMS)
    await session.create_vault(PASSPHRASE)
    for title, tier in chats.items():
        chat = await session.service.create_chat(tier)
        await session.service.rename(chat.id, title)
    await asyncio.get_running_loop().run_in_executor(None, session.close)
    return device
