"""``hushchat sync …`` as subprocesses: two profiles, the real sync server and the real
oidc-provider peer on loopback, sign-in through the browser flow with ``--no-browser``
(the test plays the browser with the address the command prints).

A has a Standard and a Private chat; ``sync login`` on A publishes the keys, on B (its own
vault, same passphrase) joins: ``chats list`` on B shows both. ``sync status``,
``sync devices``, ``sync revoke`` (B's next call then fails, exit 3) and ``sync logout``.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from app.tiers import Tier
from tests.e2e.sync_support import Device, make_device, provider, server
from tests.integration.sync_client.support import LiveServer

__all__ = ["provider", "server"]  # the fixtures

pytestmark = [pytest.mark.oidc, pytest.mark.slow]


async def test_sync_login_on_two_devices_then_devices_revoke_and_logout(
    server: LiveServer, tmp_path: Path
) -> None:
    a = await make_device(tmp_path / "a", {"plans A": Tier.STANDARD, "diary A": Tier.PRIVATE})
    b = await make_device(tmp_path / "b", {"notes B": Tier.STANDARD})

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


def test_a_new_profile_with_a_wrong_passphrase_keeps_no_vault(
    server: LiveServer, tmp_path: Path
) -> None:
    """``sync login`` on a profile without a vault creates one with the typed passphrase;
    when that passphrase does not open the account's keys, the new (empty) vault is
    removed again, so the next try with the right passphrase starts clean and joins."""
    a = await_device(tmp_path / "a")
    assert a.login(server, "laptop A").returncode == 0
    c = Device.new(tmp_path / "c")
    wrong = c.login(server, "laptop C", passphrase="a strong passphrase that is not A's one")
    assert wrong.returncode != 0, wrong.stderr
    assert "does not open the account's sync keys" in wrong.stderr, wrong.stderr
    assert "removed again" in wrong.stderr, wrong.stderr
    assert not (c.profile / "vault.json").exists()
    right = c.login(server, "laptop C")
    assert right.returncode == 0, right.stderr
    assert "joined" in right.stderr, right.stderr


def test_a_new_profile_refuses_a_weak_passphrase_before_signing_in(tmp_path: Path) -> None:
    device = Device.new(tmp_path / "d")
    refused = device.run(
        "sync", "login", "--server", "http://127.0.0.1:9/", "--no-browser",
        "--passphrase-stdin", stdin="qwerty123\n",
    )  # fmt: skip
    assert refused.returncode == 4, refused.stderr  # as `vault init` refuses it
    assert "--allow-weak-passphrase" in refused.stderr, refused.stderr
    assert "qwerty123" not in refused.stderr
    assert not (device.profile / "vault.json").exists()


def await_device(home: Path) -> Device:
    return asyncio.run(make_device(home, {"plans A": Tier.STANDARD}))
