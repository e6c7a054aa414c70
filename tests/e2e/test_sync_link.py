"""``hushchat sync link`` and ``hushchat sync join CODE`` as subprocesses in two HOMEs:
the real sync server and oidc-provider peer on loopback, sign-in with ``--no-browser``
(the test plays the browser).

A (set up with ``sync login``) has a Standard and a Private chat and runs ``sync link``;
D, a HOME without a vault, runs ``sync join CODE``: it creates its vault with its own
passphrase (printing its recovery code), and ``chats list`` on D shows both chats. A
mistyped code is refused before signing in.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from pathlib import Path

import pytest

from app.tiers import Tier
from tests.e2e.sync_support import (
    HUSHCHAT,
    KDF,
    PASSPHRASE,
    Device,
    make_device,
    provider,
    server,
)
from tests.integration.sync_client.support import LiveServer

__all__ = ["provider", "server"]  # the fixtures

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

D_PASSPHRASE = "a different passphrase for the new laptop"
_CODE = re.compile(r"^\d{1,4}(-[a-z]+){3}$")


def _join(device: Device, server: LiveServer, code: str) -> subprocess.CompletedProcess[str]:
    """``sync join CODE --no-browser`` with D's new passphrase."""
    return device.signed_in(
        "sync", "join", code, "--server", server.url, "--no-browser", "--passphrase-stdin",
        "--device-name", "laptop D", *KDF,
        stdin=D_PASSPHRASE + "\n",
    )  # fmt: skip


def test_sync_link_then_sync_join_on_a_new_profile(server: LiveServer, tmp_path: Path) -> None:
    a = asyncio.run(
        make_device(tmp_path / "a", {"plans A": Tier.STANDARD, "diary A": Tier.PRIVATE})
    )
    first = a.login(server, "laptop A")
    assert first.returncode == 0, first.stderr

    d = Device.new(tmp_path / "d")
    typo = d.run("sync", "join", "12-abacus-qwertz-able", "--server", server.url)
    assert typo.returncode == 2, typo.stderr
    assert "'qwertz' is not a word" in typo.stderr
    assert not d.profile.exists() or not any(d.profile.iterdir())

    link = subprocess.Popen(
        [str(HUSHCHAT), "sync", "link", "--passphrase-stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=a.env(),
    )  # fmt: skip
    try:
        assert link.stdin is not None and link.stdout is not None
        link.stdin.write(PASSPHRASE + "\n")
        link.stdin.close()
        code = link.stdout.readline().strip()
        assert _CODE.match(code), code
        joined = _join(d, server, code)
        assert joined.returncode == 0, joined.stderr
        assert "Linked" in joined.stderr and "recovery code" in joined.stderr
        link.wait(timeout=120)
        assert link.stderr is not None
        link_err = link.stderr.read()
    finally:
        link.kill()
        link.wait(timeout=10)
        for stream in (link.stdout, link.stderr):
            if stream is not None:
                stream.close()
    assert link.returncode == 0, link_err
    assert "Linked laptop D" in link_err

    listed = d.run("chats", "list", "--passphrase-stdin", stdin=D_PASSPHRASE + "\n")
    assert listed.returncode == 0, listed.stderr
    assert {"plans A", "diary A"} <= set(re.findall(r"  (\w+ \w)$", listed.stdout, re.M))
    status = d.run("sync", "status", "--passphrase-stdin", stdin=D_PASSPHRASE + "\n")
    assert status.returncode == 0, status.stderr
    assert "on this device" in status.stdout

    # The code was used: another new device's join with it is refused (exit 3).
    again = _join(Device.new(tmp_path / "e"), server, code)
    assert again.returncode == 3, again.stderr
    assert "used already" in again.stderr, again.stderr


def test_ctrl_c_withdraws_the_code(server: LiveServer, tmp_path: Path) -> None:
    a = asyncio.run(make_device(tmp_path / "a", {"plans A": Tier.STANDARD}))
    assert a.login(server, "laptop A").returncode == 0
    link = subprocess.Popen(
        [str(HUSHCHAT), "sync", "link", "--passphrase-stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=a.env(),
    )  # fmt: skip
    try:
        assert link.stdin is not None and link.stdout is not None
        link.stdin.write(PASSPHRASE + "\n")
        link.stdin.close()
        code = link.stdout.readline().strip()
        assert _CODE.match(code), code
        link.send_signal(signal.SIGINT)
        assert link.wait(timeout=60) == 130
    finally:
        link.kill()
        link.wait(timeout=10)
        for stream in (link.stdout, link.stderr):
            if stream is not None:
                stream.close()
    late = _join(Device.new(tmp_path / "d"), server, code)
    assert late.returncode == 3, late.stderr
    assert "expired or was used already" in late.stderr, late.stderr
