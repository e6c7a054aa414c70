"""``hushchat sync …`` as subprocesses: two profiles, the real sync server and the real
oidc-provider peer on loopback, sign-in through the browser flow with ``--no-browser``
(the test plays the browser with the address the command prints).

A has a Standard and a Private chat; ``sync login`` on A publishes the keys, on B (its own
vault, same passphrase) joins: ``chats list`` on B shows both. ``sync status``,
``sync devices``, ``sync revoke`` (B's next call then fails, exit 3) and ``sync logout``.
"""

from __future__ import annotations

import asyncio
import os
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
from tests.integration.sync_client.support import LiveServer, ScriptedBrowser
from tests.integration.sync_server.support import make_settings, skip_or_fail
from tests.peers.oidc_provider import AUDIENCE, CLIENT_ID, OidcProvider, unavailable_reason

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

HUSHCHAT = Path(sys.executable).with_name("hushchat")
PASSPHRASE = "correct horse battery staple for sync"
SCOPES = "openid email offline_access sync"
_AUTH_URL = re.compile(r"(http://127\.0\.0\.1:\d+/auth\?\S+)")


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    reason = unavailable_reason()
    if reason:
        skip_or_fail(f"oidc-provider peer unavailable: {reason}")
    with OidcProvider(tmp_path_factory.mktemp("oidc")) as peer:
        yield peer


@pytest.fixture
def server(provider: OidcProvider, tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "server",
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_client_id=CLIENT_ID,
        oidc_scopes=SCOPES,
    )
    with LiveServer(create_app(settings)) as live:
        yield live


@dataclass
class Device:
    home: Path

    @property
    def profile(self) -> Path:
        return self.home / "profile"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUSHCHAT_", "XDG_"))}
        env.update(
            HOME=str(self.home),
            TMPDIR=str(self.home / "tmp"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_STATE_HOME=str(self.home / ".local" / "state"),
            HUSHCHAT_PROFILE=str(self.profile),
            HUSHCHAT_CONFIG=str(self.home / "config.yml"),
        )
        return env

    def run(self, *args: str, stdin: str = PASSPHRASE + "\n") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HUSHCHAT), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
            check=False,
        )

    def login(self, server: LiveServer, name: str) -> subprocess.CompletedProcess[str]:
        """``sync login --no-browser``: open the printed address like a browser would."""
        process = subprocess.Popen(
            [str(HUSHCHAT), "sync", "login", "--server", server.url, "--no-browser",
             "--passphrase-stdin", "--device-name", name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=self.env(),
        )  # fmt: skip
        assert process.stdin is not None and process.stderr is not None
        process.stdin.write(PASSPHRASE + "\n")
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


async def _make_device(home: Path, chats: dict[str, Tier]) -> Device:
    device = Device(home)
    (home / "tmp").mkdir(parents=True)
    (home / "config.yml").write_text("llms: []\n", encoding="utf-8")
    session = Session(LoadedConfig(Config(), None, {}), device.profile, kdf=FLOOR_PARAMS)
    await session.create_vault(PASSPHRASE)
    for title, tier in chats.items():
        chat = await session.service.create_chat(tier)
        await session.service.rename(chat.id, title)
    await asyncio.get_running_loop().run_in_executor(None, session.close)
    return device


async def test_sync_login_on_two_devices_then_devices_revoke_and_logout(
    server: LiveServer, tmp_path: Path
) -> None:
    a = await _make_device(tmp_path / "a", {"plans A": Tier.STANDARD, "diary A": Tier.PRIVATE})
    b = await _make_device(tmp_path / "b", {"notes B": Tier.STANDARD})

    status = a.run("sync", "status", "--passphrase-stdin")
    assert status.returncode == 0, status.stderr
    assert "not signed in" in status.stdout

    first = a.login(server, "laptop A")
    assert first.returncode == 0, first.stderr
    assert "first device" in first.stderr

    second = b.login(server, "desktop B")
    assert second.returncode == 0, second.stderr
    assert "joined" in second.stderr
    listed = b.run("chats", "list", "--passphrase-stdin")
    assert listed.returncode == 0, listed.stderr
    assert {"plans A", "diary A", "notes B"} <= set(re.findall(r"  (\w+ \w)$", listed.stdout, re.M))

    # B's own chat reaches A with `sync now`.
    now = a.run("sync", "now", "--passphrase-stdin")
    assert now.returncode == 0, now.stderr
    assert "notes B" in a.run("chats", "list", "--passphrase-stdin").stdout

    status = a.run("sync", "status", "--passphrase-stdin")
    assert status.returncode == 0, status.stderr
    assert "alice@example.org" in status.stdout and "on this device" in status.stdout

    devices = a.run("sync", "devices", "--passphrase-stdin")
    assert devices.returncode == 0, devices.stderr
    assert "laptop A" in devices.stdout and "desktop B" in devices.stdout
    b_line = next(line for line in devices.stdout.splitlines() if "desktop B" in line)
    b_id = b_line.split()[0]

    revoked = a.run("sync", "revoke", b_id[:8], "--passphrase-stdin")
    assert revoked.returncode == 0, revoked.stderr
    refused = b.run("sync", "now", "--passphrase-stdin")
    assert refused.returncode == 3, refused.stderr
    assert "sign in again" in refused.stderr.lower(), refused.stderr

    out = a.run("sync", "logout", "--passphrase-stdin")
    assert out.returncode == 0, out.stderr
    assert "not signed in" in a.run("sync", "status", "--passphrase-stdin").stdout
    # The chats stay on the device.
    assert "plans A" in a.run("chats", "list", "--passphrase-stdin").stdout
