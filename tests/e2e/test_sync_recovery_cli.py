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

import re
from pathlib import Path

import pytest

from app.tiers import Tier
from sync_server.app import create_app
from sync_server.settings import Settings
from tests.e2e.sync_support import Device, make_device, provider
from tests.integration.sync_client.peers import escrow_step, oidc_settings, serving
from tests.integration.sync_client.support import LiveServer
from tests.peers.oidc_provider import OidcProvider

__all__ = ["provider"]  # the fixture

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

NEW_PASSPHRASE = "an entirely new passphrase after losing everything"


@pytest.fixture
def settings(provider: OidcProvider, tmp_path: Path) -> Settings:
    return oidc_settings(provider, tmp_path / "server", recovery_delay_seconds=3600)


async def test_recover_standard_chats_from_the_escrow_with_the_cli(
    settings: Settings, tmp_path: Path
) -> None:
    a = await make_device(tmp_path / "a", {"plans A": Tier.STANDARD, "diary A": Tier.PRIVATE})
    c = Device.new(tmp_path / "c")

    with LiveServer(create_app(serving(settings))) as server:
        login = a.login(server, "laptop A")
        assert login.returncode == 0, login.stderr
        escrow = a.run("sync", "escrow", "status", "--passphrase-stdin")
        assert escrow.returncode == 0, escrow.stderr
        assert "escrowed (from this device)" in escrow.stdout
        assert "can read your Standard synced chats" in escrow.stdout

        refused = a.run("vault", "recover", "--server", server.url)
        assert refused.returncode == 2
        assert "already has a vault" in refused.stderr

        started = c.signed_in(
            "vault", "recover", "--server", server.url, "--no-browser", "--no-wait",
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
        assert await escrow_step(settings) == [recovery_id]

        resumed = c.signed_in(
            "vault", "recover", "--server", server.url, "--resume", "--no-browser",
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
