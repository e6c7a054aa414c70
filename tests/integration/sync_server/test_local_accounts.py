"""Local accounts end to end: ALTCHA solved here, verification mail caught by aiosmtpd."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from altcha.v1 import Challenge, solve_challenge
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync_server.app import create_app
from sync_server.sealing import escrow_aad, public_key_from_bytes, seal
from tests.integration.sync_server.support import (
    auth_headers,
    device_key,
    make_settings,
    running,
)

LOCAL_KEY = device_key("local-device-1")
DEVICE = LOCAL_KEY.device_id


class Mailbox:
    """aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Store recipients, subject and body."""
        message = message_from_bytes(envelope.content)
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        self.messages.append((list(envelope.rcpt_tos), str(message["Subject"]), body.decode()))
        return "250 OK"

    async def wait_for(self, to: str, subject_part: str) -> tuple[list[str], str, str]:
        """The first mail to ``to`` whose subject contains ``subject_part`` (waits ≤ 10 s)."""
        for _ in range(200):
            for message in self.messages:
                if message[0] == [to] and subject_part in message[1]:
                    return message
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail {subject_part!r} to {to}; got {self.messages}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on loopback capturing mail."""
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
async def local_api(
    tmp_path: Path, database_url: str | None, smtp: tuple[Mailbox, int]
) -> AsyncIterator[httpx.AsyncClient]:
    """Server with local accounts on, cheap Argon2 for speed, mail to the capture server."""
    settings = make_settings(
        tmp_path,
        database_url,
        local_accounts_enabled=True,
        smtp_host="127.0.0.1",
        smtp_port=smtp[1],
        smtp_security="none",
        argon2_time_cost=1,
        argon2_memory_kib=8192,
        argon2_parallelism=1,
        altcha_max_number=5000,
        recovery_delay_seconds=0,
    )
    async with running(create_app(settings)) as client:
        yield client


async def solve(api: httpx.AsyncClient) -> str:
    """Fetch a challenge and solve it like the ALTCHA widget."""
    data = (await api.get("/v1/captcha/challenge")).json()
    challenge = Challenge(
        algorithm=data["algorithm"],
        challenge=data["challenge"],
        max_number=data["maxnumber"],
        salt=data["salt"],
        signature=data["signature"],
    )
    solution = await asyncio.to_thread(
        solve_challenge,
        challenge.challenge,
        challenge.salt,
        challenge.algorithm,
        challenge.max_number,
    )
    assert solution is not None
    payload = {
        "algorithm": data["algorithm"],
        "challenge": data["challenge"],
        "number": solution.number,
        "salt": data["salt"],
        "signature": data["signature"],
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


def _code(body: str) -> str:
    match = re.search(r"^([A-Za-z0-9_-]{40,})\r?$", body, re.MULTILINE)
    assert match, body
    return match.group(1)


def _stable(response: httpx.Response) -> tuple[int, Any]:
    body = response.json()
    for volatile in ("request_id", "instance"):
        body.pop(volatile, None)
    return response.status_code, body


async def test_signup_verify_sign_in_refresh_reset(
    local_api: httpx.AsyncClient, smtp: tuple[Mailbox, int]
) -> None:
    api, mailbox = local_api, smtp[0]
    signup = {"email": "Dana@Example.org", "password": "correct horse battery"}
    created = await api.post("/v1/account/signup", json={**signup, "altcha": await solve(api)})
    assert created.status_code == 202
    _, _, body = await mailbox.wait_for("dana@example.org", "Confirm")

    # Known address: same answer, and the owner is told instead of a code.
    again = await api.post("/v1/account/signup", json={**signup, "altcha": await solve(api)})
    unknown = await api.post(
        "/v1/account/signup",
        json={"email": "nobody@example.org", "password": "x" * 12, "altcha": await solve(api)},
    )
    assert _stable(again) == _stable(created) == _stable(unknown)
    await mailbox.wait_for("dana@example.org", "sign-up attempt")

    # Not verified yet: sign-in fails like a wrong password.
    early = await api.post(
        "/v1/account/token", json={**{k: signup[k] for k in signup}, "device_id": DEVICE}
    )
    assert early.status_code == 401

    verified = await api.post("/v1/account/verify-email", json={"token": _code(body)})
    assert verified.status_code == 200
    reused = await api.post("/v1/account/verify-email", json={"token": _code(body)})
    assert reused.status_code == 400

    wrong = await api.post(
        "/v1/account/token",
        json={"email": "dana@example.org", "password": "wrong password!", "device_id": DEVICE},
    )
    nobody = await api.post(
        "/v1/account/token",
        json={"email": "ghost@example.org", "password": "wrong password!", "device_id": DEVICE},
    )
    assert _stable(wrong) == _stable(nobody)
    assert wrong.status_code == 401

    tokens = (await api.post("/v1/account/token", json={**signup, "device_id": DEVICE})).json()
    access = tokens["access_token"]
    me = await api.get("/v1/me", headers=auth_headers(access, "GET", "/v1/me", LOCAL_KEY))
    assert me.status_code == 200
    assert me.json()["issuer"] == "local" and me.json()["email_verified"] is True
    other_device = await api.get(
        "/v1/me", headers=auth_headers(access, "GET", "/v1/me", "another-device")
    )
    assert other_device.status_code == 401

    # A fresh password sign-in may start an escrow recovery; the owner is notified by mail.
    meta = (await api.get("/v1/meta")).json()["escrow"]
    sealed = seal(
        public_key_from_bytes(base64.b64decode(meta["public_key"])),
        bytes(32),
        escrow_aad(me.json()["id"], "std-key-1"),
    )
    escrowed = await api.put(
        "/v1/escrow",
        headers=auth_headers(access, "PUT", "/v1/escrow", LOCAL_KEY),
        json={
            "tier": "standard",
            "key_id": "std-key-1",
            "server_key_id": meta["key_id"],
            "sealed_key": base64.b64encode(sealed).decode(),
        },
    )
    assert escrowed.status_code == 200, escrowed.text
    recovery_key = base64.b64encode(
        X25519PrivateKey.generate().public_key().public_bytes_raw()
    ).decode()
    started = await api.post(
        "/v1/recovery/start",
        headers=auth_headers(access, "POST", "/v1/recovery/start", LOCAL_KEY),
        json={"device_public_key": recovery_key},
    )
    assert started.status_code == 202, started.text
    _, _, notice = await mailbox.wait_for("dana@example.org", "recovery of your Standard chats")
    assert DEVICE in notice

    # Refresh rotates; presenting the old refresh token again revokes the family.
    rotated = await api.post("/v1/account/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    new_tokens = rotated.json()
    replay = await api.post("/v1/account/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    after_theft = await api.post(
        "/v1/account/refresh", json={"refresh_token": new_tokens["refresh_token"]}
    )
    assert after_theft.status_code == 401

    # Password reset with a CAPTCHA; a solved CAPTCHA cannot be replayed.
    captcha = await solve(api)
    reset = await api.post(
        "/v1/account/password-reset", json={"email": "dana@example.org", "altcha": captcha}
    )
    assert reset.status_code == 202
    replayed = await api.post(
        "/v1/account/password-reset", json={"email": "dana@example.org", "altcha": captcha}
    )
    assert replayed.status_code == 400
    _, _, reset_body = await mailbox.wait_for("dana@example.org", "Reset")
    done = await api.post(
        "/v1/account/password-reset/confirm",
        json={"token": _code(reset_body), "password": "a brand new passphrase"},
    )
    assert done.status_code == 200
    old = await api.post("/v1/account/token", json={**signup, "device_id": DEVICE})
    assert old.status_code == 401
    new = await api.post(
        "/v1/account/token",
        json={
            "email": "dana@example.org",
            "password": "a brand new passphrase",
            "device_id": DEVICE,
        },
    )
    assert new.status_code == 200


async def test_bad_captcha_and_weak_password(local_api: httpx.AsyncClient) -> None:
    api = local_api
    forged = base64.b64encode(
        json.dumps(
            {
                "algorithm": "SHA-256",
                "challenge": "0" * 64,
                "number": 1,
                "salt": "s",
                "signature": "x",
            }
        ).encode()
    ).decode()
    response = await api.post(
        "/v1/account/signup",
        json={"email": "eve@example.org", "password": "long enough pw", "altcha": forged},
    )
    assert response.status_code == 400
    assert response.json()["type"].endswith("captcha-failed")
    weak = await api.post(
        "/v1/account/signup",
        json={"email": "eve@example.org", "password": "short", "altcha": await solve(api)},
    )
    assert weak.status_code == 422
    assert "short" not in weak.text.replace("Password too short", "")
