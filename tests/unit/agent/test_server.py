"""The agent server and its client on a real Unix socket, in one event loop.

The client is blocking (it runs on the CLI's start-up path), so tests call it in a
thread while the server answers on the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from app.agent import client
from app.agent.errors import AgentRunningError, AgentUnavailableError
from app.agent.keys import AgentKeys
from app.agent.protocol import decode_body, encode_frame, socket_path
from app.agent.server import AgentServer, LockReason, SuspendDetector
from app.tiers import STORED_TIERS, Tier
from app.vault import FLOOR_PARAMS, Vault


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_server(keys: AgentKeys, profile: Path, **options: Any) -> AgentServer:
    options.setdefault("idle_timeout", 600.0)
    options.setdefault("detect_suspend", False)
    return AgentServer(keys, profile_dir=profile, **options)


@pytest.fixture
async def served(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> AsyncIterator[tuple[AgentServer, AgentKeys]]:
    """A server holding a copy of the unlocked vault's keys; the originals to compare."""
    original = unlocked.agent_keys()
    server = make_server(original.copy(), profile)
    await server.start()
    yield server, original
    server.close()
    original.wipe()


async def raw_exchange(path: Path, data: bytes, *, read_timeout: float = 3.0) -> bytes:
    """Send raw bytes and return everything the server sends back before closing."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_timeout)
    except ConnectionResetError:  # closed with our bytes unread
        return b""
    finally:
        writer.close()


def set_modes(modes: dict[Path, int]) -> None:
    for path, mode in modes.items():
        path.chmod(mode)


def reply_of(data: bytes) -> dict[str, Any]:
    (length,) = struct.unpack(">I", data[:4])
    assert len(data) == 4 + length
    return decode_body(data[4:])


# ----------------------------------------------------------------- keys, status, lock


async def test_client_gets_the_keys(served: tuple[AgentServer, AgentKeys], profile: Path) -> None:
    _server, original = served
    keys = await asyncio.to_thread(client.request_keys, profile)
    assert keys is not None
    assert keys.vault_id == original.vault_id
    assert keys.generations == original.generations
    assert all(keys.key(tier) == original.key(tier) for tier in STORED_TIERS)
    attached = Vault.attach(profile, keys)
    attached.connect(Tier.PRIVATE).execute("SELECT 1")
    attached.close()


async def test_status_says_what_and_who(
    served: tuple[AgentServer, AgentKeys], profile: Path
) -> None:
    status = await asyncio.to_thread(client.status, profile)
    assert status is not None
    assert (status.kind, status.pid, status.idle_timeout) == ("agent", os.getpid(), 600.0)
    assert status.idle_seconds_left is not None and 0 < status.idle_seconds_left <= 600


async def test_lock_wipes_keys_and_removes_the_socket(
    served: tuple[AgentServer, AgentKeys], profile: Path
) -> None:
    server, _original = served
    locked: list[LockReason] = []
    server._on_locked = locked.append
    path = socket_path(profile)
    assert await asyncio.to_thread(client.lock, profile) is True
    assert server.is_locked and server._keys.is_wiped
    assert locked == [LockReason.REQUEST]
    assert not path.exists()
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises(FileNotFoundError):
        sock.connect(str(path))
    assert await asyncio.to_thread(client.lock, profile) is False
    assert await asyncio.to_thread(client.request_keys, profile) is None
    await asyncio.wait_for(server.wait_closed(), 1)


async def test_close_does_not_call_back_and_is_idempotent(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    locked: list[LockReason] = []
    server = make_server(unlocked.agent_keys(), profile, on_locked=locked.append)
    await server.start()
    server.close()
    server.close()
    assert locked == [] and server.lock_reason is LockReason.CLOSED
    assert server._keys.is_wiped
    with pytest.raises(Exception, match="has locked"):
        await server.start()


async def test_socket_and_directory_are_private(
    served: tuple[AgentServer, AgentKeys], runtime_dir: Path, profile: Path
) -> None:
    path = socket_path(profile)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Nothing but the socket and the (empty) lock file: keys are never written anywhere.
    files = {p.name: p.stat().st_size for p in path.parent.iterdir() if not p.is_socket()}
    assert files == {path.with_suffix(".lock").name: 0}


async def test_keys_never_reach_the_log(
    runtime_dir: Path, profile: Path, unlocked: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    original = unlocked.agent_keys()
    server = make_server(original.copy(), profile)
    await server.start()
    await asyncio.to_thread(client.request_keys, profile)
    await asyncio.to_thread(client.lock, profile)
    import base64

    text = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    assert "locked: request" in text
    for tier in STORED_TIERS:
        key = original.key(tier)
        for form in (key.hex(), base64.b64encode(key).decode(), repr(key)):
            assert form not in text


# ----------------------------------------------------------------- who may ask


async def test_refuses_a_peer_of_another_uid(
    runtime_dir: Path, profile: Path, unlocked: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(unlocked.agent_keys(), profile, allowed_uid=os.getuid() + 1)
    await server.start()
    try:
        data = await raw_exchange(socket_path(profile), encode_frame({"v": 1, "op": "keys"}))
        assert data == b""  # closed without a word
        assert "refused a connection from uid" in caplog.text
        assert await asyncio.to_thread(client.request_keys, profile) is None
        assert not server.is_locked
    finally:
        server.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
async def test_refuses_a_real_process_of_another_user(
    runtime_dir: Path, profile: Path, unlocked: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(unlocked.agent_keys(), profile)
    await server.start()
    path = socket_path(profile)
    try:
        # Open the door on purpose (the 0700 directory alone keeps others out) to see that
        # the peer-credential check refuses them too.
        set_modes({runtime_dir: 0o755, path.parent: 0o755, path: 0o666})
        code = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "s.connect(sys.argv[1])\n"  # the door is open: connecting works
            "try:\n"
            "    s.sendall(bytes.fromhex(sys.argv[2]))\n"
            "    print(len(s.recv(100)))\n"
            "except ConnectionError:\n"
            "    print(0)\n"
        )
        request = encode_frame({"v": 1, "op": "keys"}).hex()
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-I", "-c", code, str(path), request],
            capture_output=True,
            text=True,
            user=65534,
            timeout=20,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "0"
        assert "refused a connection from uid 65534" in caplog.text
    finally:
        set_modes({path.parent: 0o700, runtime_dir: 0o700})
        server.close()


async def test_client_ignores_a_socket_in_a_shared_directory(
    served: tuple[AgentServer, AgentKeys], profile: Path
) -> None:
    path = socket_path(profile)
    path.parent.chmod(0o755)
    try:
        assert await asyncio.to_thread(client.request_keys, profile) is None
    finally:
        path.parent.chmod(0o700)
    assert await asyncio.to_thread(client.request_keys, profile) is not None


async def test_start_refuses_a_directory_that_is_not_private(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    (runtime_dir / "hushchat").mkdir(mode=0o755)
    (runtime_dir / "hushchat").chmod(0o755)
    server = make_server(unlocked.agent_keys(), profile)
    with pytest.raises(AgentUnavailableError, match="not private"):
        await server.start()
    assert server._keys.is_wiped


# ----------------------------------------------------------------- one server per profile


async def test_second_server_for_the_profile_is_refused(
    served: tuple[AgentServer, AgentKeys], profile: Path, unlocked: Vault
) -> None:
    second = make_server(unlocked.agent_keys(), profile)
    with pytest.raises(AgentRunningError, match="already serves"):
        await second.start()
    assert second.is_locked and second._keys.is_wiped  # a failed start keeps no keys
    await asyncio.wait_for(second.wait_closed(), 1)
    assert await asyncio.to_thread(client.request_keys, profile) is not None  # first intact


async def test_stale_socket_file_is_replaced(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    path = socket_path(profile)
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # a socket file whose agent died (nobody listens)
    dead.close()
    assert path.exists()
    assert await asyncio.to_thread(client.request_keys, profile) is None
    server = make_server(unlocked.agent_keys(), profile)
    await server.start()
    try:
        assert await asyncio.to_thread(client.request_keys, profile) is not None
    finally:
        server.close()


async def test_close_leaves_a_successors_socket_alone(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    first = make_server(unlocked.agent_keys(), profile)
    await first.start()
    first._release_lock_file()  # as if it had lost its lock and a successor took over
    path = socket_path(profile)
    path.unlink()
    successor = make_server(unlocked.agent_keys(), profile)
    await successor.start()
    first.close()
    try:
        assert path.exists()
        assert await asyncio.to_thread(client.request_keys, profile) is not None
    finally:
        successor.close()


async def test_works_in_the_temp_dir_fallback(
    monkeypatch: pytest.MonkeyPatch, profile: Path, unlocked: Vault
) -> None:
    import tempfile

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    base = Path(tempfile.mkdtemp(prefix="hc-tmp-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(base))
    monkeypatch.setattr(tempfile, "tempdir", None)
    server = make_server(unlocked.agent_keys(), profile)
    try:
        await server.start()
        assert server.socket_path is not None
        assert server.socket_path.parent == base / f"hushchat-{os.getuid()}"
        assert stat.S_IMODE(server.socket_path.parent.stat().st_mode) == 0o700
        assert await asyncio.to_thread(client.request_keys, profile) is not None
    finally:
        server.close()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------- stale keys


async def test_stale_generation_is_ignored_and_locked(
    served: tuple[AgentServer, AgentKeys], profile: Path, unlocked: Vault
) -> None:
    server, _original = served
    await asyncio.to_thread(unlocked.rekey)
    assert await asyncio.to_thread(client.request_keys, profile) is None
    assert server.is_locked and server.lock_reason is LockReason.REQUEST


async def test_another_vaults_keys_are_ignored(
    runtime_dir: Path, profile: Path, tmp_path: Path
) -> None:
    other, _code = Vault.create(tmp_path / "other", "another passphrase", kdf=FLOOR_PARAMS)
    server = make_server(other.agent_keys(), profile)  # served for the wrong profile
    other.close()
    await server.start()
    assert await asyncio.to_thread(client.request_keys, profile) is None
    assert server.is_locked


async def test_unfinished_rekey_makes_keys_stale(
    served: tuple[AgentServer, AgentKeys], profile: Path, unlocked: Vault
) -> None:
    from dataclasses import replace

    slot_file = unlocked._slot_file
    pending = {Tier.STANDARD: slot_file.databases[Tier.STANDARD]}
    unlocked._write(replace(slot_file, pending_rekey=pending))
    assert client.stale_reason(profile, served[1]) == "a rekey of the vault is unfinished"


def test_stale_reason_for_a_missing_slot_file(tmp_path: Path) -> None:
    keys = AgentKeys(
        bytes(16), {t: bytearray(32) for t in STORED_TIERS}, dict.fromkeys(STORED_TIERS, 1)
    )
    assert "cannot be read" in str(client.stale_reason(tmp_path, keys))


# ----------------------------------------------------------------- idle and suspend


async def test_idle_lock_with_a_fake_clock(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    clock = FakeClock()
    locked: list[LockReason] = []
    server = make_server(
        unlocked.agent_keys(),
        profile,
        idle_timeout=60.0,
        clock=clock,
        on_locked=locked.append,
        poll_interval=3600,
    )
    await server.start()
    clock.now += 59
    assert server.lock_if_due() is None
    assert await asyncio.to_thread(client.request_keys, profile) is not None  # activity
    assert server.seconds_until_idle_lock() == 60.0
    clock.now += 59
    assert await asyncio.to_thread(client.status, profile) is not None  # not activity
    assert server.lock_if_due() is None
    clock.now += 1
    assert server.lock_if_due() is LockReason.IDLE
    assert locked == [LockReason.IDLE] and server._keys.is_wiped
    assert not socket_path(profile).exists()
    assert server.lock_if_due() is None


async def test_idle_lock_on_the_real_loop(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    server = make_server(unlocked.agent_keys(), profile, idle_timeout=0.3, poll_interval=5)
    await server.start()
    started = time.monotonic()
    await asyncio.wait_for(server.wait_closed(), 5)
    assert 0.25 <= time.monotonic() - started < 3
    assert server.lock_reason is LockReason.IDLE


async def test_no_idle_timeout_never_idles(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    clock = FakeClock()
    server = make_server(unlocked.agent_keys(), profile, idle_timeout=None, clock=clock)
    await server.start()
    clock.now += 10**9
    assert server.lock_if_due() is None
    assert server.seconds_until_idle_lock() is None
    server.close()


def test_suspend_detector_with_fake_clocks() -> None:
    boot, mono = FakeClock(), FakeClock()
    mono.now = 5.0
    detector = SuspendDetector(boot, mono, threshold=1.0)
    boot.now += 30
    mono.now += 30  # running normally: both clocks advance
    assert not detector.has_suspended()
    boot.now += 0.5  # jitter below the threshold
    assert not detector.has_suspended()
    boot.now += 3600  # an hour asleep: only the suspend-counting clock moved
    mono.now += 2
    boot.now += 2
    assert detector.has_suspended()
    boot.now += 10
    mono.now += 10
    assert not detector.has_suspended()  # reported once


async def test_suspend_locks(runtime_dir: Path, profile: Path, unlocked: Vault) -> None:
    boot, mono = FakeClock(), FakeClock()
    locked: list[LockReason] = []
    server = make_server(
        unlocked.agent_keys(),
        profile,
        suspend_detector=SuspendDetector(boot, mono),
        on_locked=locked.append,
    )
    await server.start()
    assert server.lock_if_due() is None
    boot.now += 120
    assert server.lock_if_due() is LockReason.SUSPEND
    assert locked == [LockReason.SUSPEND] and server._keys.is_wiped


async def test_suspend_is_polled_on_the_loop(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    boot, mono = FakeClock(), FakeClock()
    server = make_server(
        unlocked.agent_keys(),
        profile,
        idle_timeout=None,
        suspend_detector=SuspendDetector(boot, mono),
        poll_interval=0.05,
    )
    await server.start()
    await asyncio.sleep(0.15)
    assert not server.is_locked
    boot.now += 120
    await asyncio.wait_for(server.wait_closed(), 2)
    assert server.lock_reason is LockReason.SUSPEND


def test_platform_suspend_detectors() -> None:
    assert SuspendDetector.for_platform("win32") is None
    if sys.platform.startswith("linux"):
        detector = SuspendDetector.for_platform()
        assert detector is not None
        assert not detector.has_suspended()


def test_on_locked_errors_are_logged_not_raised(
    profile: Path, unlocked: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_reason: LockReason) -> None:
        raise RuntimeError("boom")

    server = make_server(unlocked.agent_keys(), profile, on_locked=broken)
    server._lock(LockReason.IDLE)
    assert "on_locked callback failed" in caplog.text


# ----------------------------------------------------------------- hostile input


async def test_garbage_gets_an_error_and_the_server_carries_on(
    served: tuple[AgentServer, AgentKeys], profile: Path
) -> None:
    path = socket_path(profile)
    cases: list[tuple[bytes, str]] = [
        (struct.pack(">I", 9) + b"\xff\xfegarbage", "not UTF-8 JSON"),
        (struct.pack(">I", 3) + b"[1]", "not a JSON object"),
        (encode_frame({"op": "keys"}), "protocol version 1"),
        (encode_frame({"v": 1, "op": "give-me-everything"}), "unknown request"),
        (encode_frame({"v": 1}), "unknown request"),
    ]
    for data, expected in cases:
        reply = reply_of(await raw_exchange(path, data))
        assert reply["ok"] is False
        assert expected in reply["error"]
        assert "vault_id" not in reply
    assert await asyncio.to_thread(client.request_keys, profile) is not None


async def test_huge_length_prefix_is_refused_without_reading(
    served: tuple[AgentServer, AgentKeys], profile: Path
) -> None:
    path = socket_path(profile)
    reply = reply_of(await raw_exchange(path, b"\xff\xff\xff\xff" + b"x" * 100))
    assert reply == {"ok": False, "error": "a frame of 4294967295 bytes is over the limit of 1024"}
    reply = reply_of(await raw_exchange(path, struct.pack(">I", 1025) + b"{" * 1025))
    assert reply["ok"] is False
    assert await asyncio.to_thread(client.request_keys, profile) is not None


async def test_half_a_frame_then_hang_up(
    served: tuple[AgentServer, AgentKeys], profile: Path
) -> None:
    path = socket_path(profile)
    for data in (b"\x00\x00", struct.pack(">I", 50) + b'{"v":'):
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
    assert await asyncio.to_thread(client.request_keys, profile) is not None


async def test_slow_client_is_cut_off_and_others_are_served(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    server = make_server(unlocked.agent_keys(), profile, connection_timeout=0.3)
    await server.start()
    path = socket_path(profile)
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"\x00\x00\x00")  # and then nothing
        await writer.drain()
        started = time.monotonic()
        assert await asyncio.to_thread(client.request_keys, profile) is not None
        assert await asyncio.wait_for(reader.read(), 3) == b""
        assert time.monotonic() - started < 2
        writer.close()
    finally:
        server.close()


async def test_connection_flood_is_bounded(
    runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    server = make_server(unlocked.agent_keys(), profile, connection_timeout=1.0, max_connections=3)
    await server.start()
    path = socket_path(profile)
    held = []
    try:
        for _ in range(3):
            held.append(await asyncio.open_unix_connection(str(path)))
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(encode_frame({"v": 1, "op": "status"}))
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 2) == b""  # turned away
        writer.close()
        for _reader, held_writer in held:
            held_writer.close()
        await asyncio.sleep(1.2)  # the held ones time out
        assert await asyncio.to_thread(client.status, profile) is not None
    finally:
        server.close()


# ----------------------------------------------------------------- the client alone


def test_no_agent_means_none(runtime_dir: Path, profile: Path) -> None:
    started = time.monotonic()
    assert client.request_keys(profile) is None
    assert client.lock(profile) is False
    assert client.status(profile) is None
    assert time.monotonic() - started < 0.5


async def test_client_gives_up_on_an_agent_that_never_answers(
    runtime_dir: Path, profile: Path
) -> None:
    path = socket_path(profile)
    path.parent.mkdir(mode=0o700)
    connections: list[asyncio.StreamWriter] = []

    async def mute(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_unix_server(mute, path=str(path))
    try:
        started = time.monotonic()
        assert await asyncio.to_thread(client.request_keys, profile, timeout=0.3) is None
        assert time.monotonic() - started < 1.5
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        b"\xff\xff\xff\xff",
        struct.pack(">I", 10) + b"abc",
        struct.pack(">I", 5) + b"junk!",
        encode_frame({"ok": True, "vault_id": "AAAA"}),
        encode_frame({"ok": False, "error": "nope"}),
    ],
)
async def test_client_survives_a_broken_agent(
    runtime_dir: Path, profile: Path, answer: bytes
) -> None:
    path = socket_path(profile)
    path.parent.mkdir(mode=0o700)

    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(broken, path=str(path))
    try:
        assert await asyncio.to_thread(client.request_keys, profile, timeout=1.0) is None
    finally:
        server.close()
        await server.wait_closed()


def test_client_on_an_unsupported_platform(
    monkeypatch: pytest.MonkeyPatch, runtime_dir: Path, profile: Path
) -> None:
    monkeypatch.setattr(client, "is_supported", lambda: False)
    assert client.request_keys(profile) is None
    assert client.lock(profile) is False


async def test_start_on_an_unsupported_platform(
    monkeypatch: pytest.MonkeyPatch, runtime_dir: Path, profile: Path, unlocked: Vault
) -> None:
    import app.agent.server as server_module

    monkeypatch.setattr(server_module, "is_supported", lambda: False)
    with pytest.raises(AgentUnavailableError, match="not available"):
        await make_server(unlocked.agent_keys(), profile).start()


def test_idle_timeout_must_be_positive(profile: Path, unlocked: Vault) -> None:
    keys: Callable[[], AgentKeys] = unlocked.agent_keys
    with pytest.raises(ValueError, match="positive"):
        make_server(keys(), profile, idle_timeout=0)
