"""Escrow recovery through the real CLI (subprocesses), the real sync server and the real
oidc-provider peer on loopback.

A syncs a Standard and a Private chat (``sync login``; escrow on by default: ``sync escrow
status``). C, a profile without a vault, runs ``vault recover --server URL --no-wait``; A's
``sync status`` shows the pending recovery and ``sync recovery approve ID`` ends the delay;
after the server's escrow step, ``vault recover --server URL --resume`` on C makes a new
vault with a new passphrase and recovery code: ``chats list`` shows A's Standard chat and
not the Private one. ``vault recover --server`` on a profile with a vault is refused.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Config, LoadedConfig
from app.session import Session
from app.tiers import Tier
from app.vault import FLOOR_PARAMS
from sync_server.app import create_app
from sync_server.db import Database
from sync_server.escrow_worker import load_escrow_keys, process_once
from sync_server.settings import Settings
from tests.e2e.test_sync_cli import _AUTH_URL, HUSHCHAT, PASSPHRASE, Device
from tests.integration.sync_client.support import LiveServer, ScriptedBrowser
from tests.integration.sync_server.support import make_settings, skip_or_fail
from tests.peers.oidc_provider import AUDIENCE, CLIENT_ID, OidcProvider, unavailable_reason

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

SCOPES = "openid email offline_access sync"
NEW_PASSPHRASE = "an entirely new passphrase after losing everything"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    reason = unavailable_reason()
    if reason:
        skip_or_fail(f"oidc-provider peer unavailable: {reason}")
    with OidcProvider(tmp_path_factory.mktemp("oidc")) as peer:
        yield peer


@pytest.fixture
def settings(provider: OidcProvider, tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "server",
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_client_id=CLIENT_ID,
        oidc_scopes=SCOPES,
        recovery_delay_seconds=3600,
    )


def _signed_in(device: Device, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """A command that signs in with ``--no-browser``: the test opens the printed address
    like the user's browser would."""
    process = subprocess.Popen(
        [str(HUSHCHAT), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=device.env(),
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
            if match:
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


async def _escrow_step(settings: Settings) -> list[str]:
    db = Database(settings)
    try:
        return (await process_once(db, load_escrow_keys(settings))).sealed
    finally:
        await db.close()


async def test_recover_standard_chats_from_the_escrow_with_the_cli(
    settings: Settings, tmp_path: Path
) -> None:
    a = Device(tmp_path / "a")
    (a.home / "tmp").mkdir(parents=True)
    (a.home / "config.yml").write_text("llms: []\n", encoding="utf-8")
    session = Session(LoadedConfig(Config(), None, {}), a.profile, kdf=FLOOR_PARAMS)
    await session.create_vault(PASSPHRASE)
    for title, tier in {"plans A": Tier.STANDARD, "diary A": Tier.PRIVATE}.items():
        chat = await session.service.create_chat(tier)
        await session.service.rename(chat.id, title)
    await asyncio.get_running_loop().run_in_executor(None, session.close)

    c = Device(tmp_path / "c")
    (c.home / "tmp").mkdir(parents=True)
    (c.home / "config.yml").write_text("llms: []\n", encoding="utf-8")

    serving = settings.model_copy(update={"escrow_private_key": None, "escrow_kek": None})
    with LiveServer(create_app(serving)) as server:
        login = a.login(server, "laptop A")
        assert login.returncode == 0, login.stderr
        escrow = a.run("sync", "escrow", "status", "--passphrase-stdin")
        assert escrow.returncode == 0, escrow.stderr
        assert "escrowed (from this device)" in escrow.stdout
        assert "can read your Standard synced chats" in escrow.stdout

        refused = a.run("vault", "recover", "--server", server.url)
        assert refused.returncode == 2
        assert "already has a vault" in refused.stderr

        started = _signed_in(
            c, "vault", "recover", "--server", server.url, "--no-browser", "--no-wait",
            "--device-name", "new laptop C", stdin="",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert "started" in started.stderr and "--resume" in started.stderr
        pending = c.profile / "sync-recovery.json"
        assert pending.stat().st_mode & 0o777 == 0o600

        status = a.run("sync", "status", "--passphrase-stdin")
        assert status.returncode == 0, status.stderr
        match = re.search(r"RECOVERY PENDING: (\S+)", status.stdout)
        assert match, status.stdout
        recovery_id = match.group(1)
        assert f"hushchat sync recovery cancel {recovery_id}" in status.stdout
        approved = a.run("sync", "recovery", "approve", recovery_id, "--passphrase-stdin")
        assert approved.returncode == 0, approved.stderr
        assert await _escrow_step(settings) == [recovery_id]

        resumed = _signed_in(
            c, "vault", "recover", "--server", server.url, "--resume", "--no-browser",
            "--passphrase-stdin", stdin=NEW_PASSPHRASE + "\n",
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        assert "Recovery code" in resumed.stdout
        assert "Private chats stay unreadable" in resumed.stderr
        assert not pending.exists()

        listed = c.run("chats", "list", "--passphrase-stdin", stdin=NEW_PASSPHRASE + "\n")
        assert listed.returncode == 0, listed.stderr
        assert "plans A" in listed.stdout and "diary A" not in listed.stdout
        assert "RECOVERY" not in a.run("sync", "status", "--passphrase-stdin").stdout
