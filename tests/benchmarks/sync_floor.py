"""The parts of a sync request measured alone: ``python -m tests.benchmarks.sync_floor``.

CPU time per call in a hot loop, in this process, with the server's own functions:
the ES256 verification, the whole DPoP check, parsing and validating a push body, the
inline push and pull transactions on a SQLite file, and uvicorn (httptools, uvloop) with a
trivial ASGI app over a keep-alive socket. docs/server.md ("Performance", *Third pass*)
compares their sum with the server CPU per request of ``bench_sync``'s open loop.
Not a ``bench_*`` module: it has no budget and is run by hand.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, insert

from app.sync.dpop import DeviceKey
from sync_server import records
from sync_server.accounts import Credential
from sync_server.auth.dpop import DpopVerifier, MemoryReplayCache, normalise_uri
from sync_server.db import Database
from sync_server.models import Account, Device, LocalToken
from sync_server.protocol import PushRequest
from tests.integration.sync_server.support import make_settings

PAYLOAD = base64.b64encode(os.urandom(256)).decode()


def _report(label: str, seconds: float, calls: int) -> None:
    print(f"{label:72s} {seconds / calls * 1e6:8.1f} µs")


def _cpu(label: str, call: Callable[[], object], calls: int = 2000) -> None:
    for _ in range(200):
        call()
    started = time.process_time()
    for _ in range(calls):
        call()
    _report(label, time.process_time() - started, calls)


async def _acpu(label: str, call: Callable[[], Awaitable[None]], calls: int = 2000) -> None:
    for _ in range(100):
        await call()
    started = time.process_time()
    for _ in range(calls):
        await call()
    _report(label, time.process_time() - started, calls)


def _records(prefix: str) -> list[dict[str, object]]:
    return [
        {"id": f"{prefix}-{i}", "kind": "message", "revision": 1, "key_id": "k", "payload": PAYLOAD}
        for i in range(10)
    ]


async def _dpop() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    message = b"x" * 300
    signature = private.sign(message, ec.ECDSA(hashes.SHA256()))
    public = private.public_key()
    _cpu(
        "ES256 verification alone (cryptography)",
        lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA256())),
    )
    key = DeviceKey.generate()
    url = "http://127.0.0.1:8000/v1/sync/changes"
    calls = 3000
    proofs = iter([key.proof("GET", url, "token") for _ in range(calls + 100)])
    verifier = DpopVerifier(MemoryReplayCache(100_000, 70), max_age=60, clock_skew=5)
    expected = normalise_uri(url)

    async def check() -> None:
        await verifier.verify(
            next(proofs),
            method="GET",
            expected_uri=expected,
            access_token="token",
            device_id=key.device_id,
        )

    await _acpu("whole DPoP check (header known; signature, claims, replay)", check, calls)


async def _transactions() -> None:
    body = json.dumps({"records": _records("r")}).encode()
    _cpu(
        "push body: json.loads + PushRequest validation, 10 records",
        lambda: PushRequest.model_validate(json.loads(body)),
    )
    device = DeviceKey.generate().device_id
    moment = datetime.now(UTC)

    def seed(connection: Connection) -> None:
        connection.execute(
            insert(Account),
            {"id": "a1", "issuer": "local", "subject": "a1", "created_at": moment, "last_seq": 0},
        )
        connection.execute(
            insert(Device),
            {
                "account_id": "a1",
                "id": device,
                "created_at": moment,
                "last_seen_at": moment,
                "jkt": device,
            },
        )
        connection.execute(
            insert(LocalToken),
            {
                "token_hash": "h",
                "account_id": "a1",
                "kind": "access",
                "family_id": "f",
                "device_id": device,
                "expires_at": moment + timedelta(days=1),
                "auth_time": moment,
            },
        )

    with tempfile.TemporaryDirectory(prefix="hushchat-sync-floor-") as tmp:
        db = Database(make_settings(Path(tmp), None))
        await db.migrate()
        try:
            await db.run_write(seed)
            credential = Credential("local", "h", device, device, None, account_id="a1")
            pushed = [0]

            async def push() -> None:
                pushed[0] += 1
                request = PushRequest.model_validate({"records": _records(f"p{pushed[0]}")})
                assert await records.push(db, credential, request, short=True) is not None

            await _acpu("push transaction, 10 new records, inline (+ body validation)", push, 1000)

            async def pull() -> None:
                cursor = max(0, pushed[0] * 10 - 10)
                found = await records.changes_as(db, credential, cursor, 200, short=True)
                assert found is not None
                records.changes_json(found[0], cursor, 200, found[1])

            await _acpu("pull transaction, 10 records + JSON answer, inline", pull)
        finally:
            await db.close()


_TRIVIAL_APP = """
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"applied": true}' * 20
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, port=PORT, log_config=None, access_log=False, server_header=False)
"""


def _uvicorn() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", _TRIVIAL_APP.replace("PORT", str(port))])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = (
                b"POST /v1/sync/push HTTP/1.1\r\nhost: x\r\nauthorization: Bearer "
                + b"t" * 60
                + b"\r\ndpop: "
                + b"d" * 600
                + b"\r\ncontent-type: application/json\r\ncontent-length: 3700\r\n\r\n"
                + b"x" * 3700
            )

            def one() -> None:
                client.sendall(request)
                answer = b""
                while not answer.endswith(b"}"):
                    answer += client.recv(65536)

            for _ in range(300):
                one()
            process = psutil.Process(server.pid)
            before = sum(process.cpu_times()[:2])
            calls = 3000
            for _ in range(calls):
                one()
            _report(
                "uvicorn + httptools + uvloop, trivial app, 3.7 KB request (server CPU)",
                sum(process.cpu_times()[:2]) - before,
                calls,
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    """Print the CPU time per call of each part."""
    asyncio.run(_dpop())
    asyncio.run(_transactions())
    _uvicorn()


if __name__ == "__main__":
    main()
