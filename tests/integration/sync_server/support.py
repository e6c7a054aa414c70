"""Test support: a fake OIDC issuer (httpx MockTransport), settings, and API clients.

Every authenticated call carries a DPoP proof made by the desktop client's own
:class:`app.sync.dpop.DeviceKey`: :func:`auth_headers` is the one place tests make them.
Devices are named by labels; :func:`device_key` keeps one key per label.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm

from app.sync.dpop import DPOP_HEADER, DeviceKey, access_token_hash
from sync_server.auth.oidc import token_hash
from sync_server.db import Database
from sync_server.escrow_worker import PassResult, load_escrow_keys, process_once
from sync_server.models import Account, LocalToken
from sync_server.sealing import escrow_aad, generate_secrets, public_key_from_bytes, seal
from sync_server.settings import Settings

BASE_URL = "http://testserver"
ISSUER = "https://issuer.test/realms/hushchat"
AUDIENCE = "hushchat-sync"
CLIENT_ID = "hushchat-desktop"


def in_ci() -> bool:
    """True on CI, where missing peers are failures rather than skips."""
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail on CI (a peer that CI must provide is missing)."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@dataclass
class FakeIssuer:
    """Discovery + JWKS served through an httpx MockTransport, and a token minter."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    fetches: int = 0  # JWKS downloads
    requests: int = 0  # every request, discovery included
    failing: bool = False  # answer 503 to everything (an outage)

    def add_key(self, kid: str, *, publish: bool = True) -> None:
        """Create an RSA key; publish it in the JWKS (first published key signs)."""
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.insert(0, kid)

    def jwks(self) -> dict[str, Any]:
        """Public JWKS document."""
        keys = []
        for kid in self.published:
            jwk = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            jwk.update(kid=kid, use="sig", alg="RS256")
            keys.append(jwk)
        return {"keys": keys}

    def handler(self, request: httpx.Request) -> httpx.Response:
        """MockTransport handler."""
        self.requests += 1
        if self.failing:
            if request.url.path.endswith("/protocol/certs"):
                self.fetches += 1
            return httpx.Response(503)
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(
                200, json={"issuer": ISSUER, "jwks_uri": ISSUER + "/protocol/certs"}
            )
        if request.url.path.endswith("/protocol/certs"):
            self.fetches += 1
            return httpx.Response(200, json=self.jwks())
        return httpx.Response(404)

    def transport(self) -> httpx.MockTransport:
        """Transport to hand to ``create_app``."""
        return httpx.MockTransport(self.handler)

    def mint(
        self,
        subject: str,
        *,
        email: str | None = None,
        verified: bool = True,
        kid: str | None = None,
        alg: str = "RS256",
        lifetime: int = 300,
        typ: str | None = None,
        **claims: Any,
    ) -> str:
        """A signed access token (claims override the defaults; ``typ`` sets the header)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + lifetime,
            "auth_time": now,
            "email": email if email is not None else f"{subject}@example.org",
            "email_verified": verified,
            "jti": secrets.token_hex(8),
        }
        body.update(claims)
        kid = kid or self.published[0]
        headers: dict[str, Any] = {"kid": kid}
        if typ is not None:
            headers["typ"] = typ
        return jwt.encode(body, self.keys[kid], algorithm=alg, headers=headers)


async def seed_local_token(settings: Settings, token: str, device: str) -> None:
    """A migrated database with one local account and an hour-long access ``token`` bound
    to ``device`` (for tests of ``serve`` processes, which have no fake issuer)."""
    db = Database(settings)
    try:
        await db.migrate()
        now = datetime.now(UTC)
        async with db.write() as session:
            session.add(
                Account(
                    id="a" * 32,
                    issuer="local",
                    subject="u",
                    email=None,
                    email_verified=False,
                    last_seq=0,
                    created_at=now,
                )
            )
            await session.flush()
            session.add(
                LocalToken(
                    token_hash=token_hash(token),
                    account_id="a" * 32,
                    device_id=device,
                    kind="access",
                    family_id="f" * 32,
                    auth_time=now,
                    expires_at=now + timedelta(hours=1),
                )
            )
    finally:
        await db.close()


def make_settings(tmp_path: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    """Complete settings with fresh secrets, the fake issuer and generous limits."""
    values: dict[str, Any] = {name.lower(): value for name, value in generate_secrets().items()}
    values.update(
        data_dir=tmp_path / "data",
        database_url=database_url,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_client_id=CLIENT_ID,
        rate_limit_user="100000/minute",
        rate_limit_anonymous="100000/minute",
        rate_limit_sign_in="100000/minute",
    )
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running(
    app: FastAPI, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield an in-process client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def client_from(app: FastAPI, host: str) -> httpx.AsyncClient:
    """An in-process client whose requests come from ``host`` (run inside ``running``)."""
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


_DEVICE_KEYS: dict[str, DeviceKey] = {}


def device_key(label: str) -> DeviceKey:
    """The test device key called ``label`` (one per label for the whole test run)."""
    key = _DEVICE_KEYS.get(label)
    if key is None:
        key = _DEVICE_KEYS[label] = DeviceKey.generate()
    return key


def auth_headers(
    token: str,
    method: str,
    url: str,
    device: DeviceKey | str = "device",
    *,
    base_url: str = BASE_URL,
) -> dict[str, str]:
    """Bearer token, device id and a fresh DPoP proof for one request.

    ``url`` is a path (on ``base_url``) or a full URL, without the query; ``device`` a
    key or the label of one (:func:`device_key`).
    """
    key = device if isinstance(device, DeviceKey) else device_key(device)
    target = url if "://" in url else base_url.rstrip("/") + url
    return {
        "Authorization": f"Bearer {token}",
        "X-Hushchat-Device": key.device_id,
        DPOP_HEADER: key.proof(method, target, token),
    }


def crafted_proof(
    key: DeviceKey,
    method: str,
    url: str,
    token: str,
    *,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A DPoP proof with chosen header members and claims (None drops one), signed by
    ``key`` with PyJWT: for the tests of what the server refuses."""
    body: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": method,
        "htu": url if "://" in url else BASE_URL + url,
        "iat": int(time.time()),
        "ath": access_token_hash(token),
    }
    body.update(claims)
    headers: dict[str, Any] = {"typ": "dpop+jwt", "jwk": key.public_jwk}
    headers.update(header or {})
    body = {name: value for name, value in body.items() if value is not None}
    headers = {name: value for name, value in headers.items() if value is not None}
    return jwt.encode(body, key.to_pem(), algorithm="ES256", headers=headers)


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode()


def record(
    record_id: str,
    revision: int = 1,
    parent: int | None = None,
    *,
    kind: str = "message",
    deleted: bool = False,
    payload: bytes | None = None,
    key_id: str = "k1",
) -> dict[str, Any]:
    """A push-record body."""
    return {
        "id": record_id,
        "kind": kind,
        "revision": revision,
        "parent_revision": parent,
        "deleted": deleted,
        "key_id": key_id,
        "payload": b64(payload if payload is not None else f"{record_id}@{revision}".encode()),
    }


class ApiUser:
    """An authenticated client: token, device key and a fresh proof per request."""

    def __init__(self, http: httpx.AsyncClient, token: str, device: DeviceKey | str) -> None:
        self.http = http
        self.token = token
        self.key = device if isinstance(device, DeviceKey) else device_key(device)

    @property
    def device(self) -> str:
        """The device id: the key's thumbprint."""
        return self.key.device_id

    def headers(self, method: str, url: str) -> dict[str, str]:
        """Authorization, device and DPoP headers for one request."""
        return auth_headers(self.token, method, url, self.key, base_url=str(self.http.base_url))

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """A request with credentials (``headers`` given are added on top)."""
        headers = {**self.headers(method, url), **kw.pop("headers", {})}
        return await self.http.request(method, url, headers=headers, **kw)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        """GET with credentials."""
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        """POST with credentials."""
        return await self.request("POST", url, **kw)

    async def put(self, url: str, **kw: Any) -> httpx.Response:
        """PUT with credentials."""
        return await self.request("PUT", url, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        """DELETE with credentials."""
        return await self.request("DELETE", url, **kw)

    async def push(self, *records: dict[str, Any], atomic: bool = False) -> dict[str, Any]:
        """Push and return the JSON answer (asserting 200)."""
        response = await self.post(
            "/v1/sync/push", json={"records": list(records), "atomic": atomic}
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def pull_all(self, cursor: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Page through every change after ``cursor``."""
        changes: list[dict[str, Any]] = []
        while True:
            response = await self.get("/v1/sync/changes", params={"cursor": cursor, "limit": limit})
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["cursor"] >= cursor
            changes.extend(page["changes"])
            cursor = page["cursor"]
            if not page["has_more"]:
                return changes, cursor


# --- escrow recovery ---------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """``HUSHCHAT_SYNC_*`` variables reproducing ``settings`` (every value that differs
    from the default), on top of this process's environment minus other such variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_SYNC_")}
    defaults = Settings.model_construct()
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None or value == getattr(defaults, name, None):
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = json.dumps(value)
        env[f"HUSHCHAT_SYNC_{name.upper()}"] = str(value)
    return env


def run_escrow_once(
    env_or_settings: Settings | dict[str, str], *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sync_server escrow process --once`` (the only code that opens
    escrows) with the server's environment: a ``Settings`` (turned into variables) or the
    environment itself. With ``check`` a non-zero exit fails with the command's output."""
    env = (
        settings_env(env_or_settings) if isinstance(env_or_settings, Settings) else env_or_settings
    )
    result = subprocess.run(
        [sys.executable, "-m", "sync_server", "escrow", "process", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"escrow process failed:\n{result.stdout}{result.stderr}"
    return result


async def escrow_pass(settings: Settings) -> PassResult:
    """One escrow pass in this process (faster than :func:`run_escrow_once`)."""
    keys = load_escrow_keys(settings)
    db = Database(settings)
    try:
        return await process_once(db, keys)
    finally:
        await db.close()


def server_settings(settings: Settings) -> Settings:
    """``settings`` as a server should get them: the escrow public key only."""
    return settings.model_copy(update={"escrow_private_key": None, "escrow_kek": None})


def x25519_keypair() -> tuple[X25519PrivateKey, str]:
    """A device's ephemeral recovery key pair: private key and base64 public key."""
    private = X25519PrivateKey.generate()
    return private, b64(private.public_key().public_bytes_raw())


async def upload_escrow(
    user: ApiUser, key: bytes = bytes(range(32)), key_id: str = "std-key-0001"
) -> httpx.Response:
    """Seal ``key`` to the server's escrow public key and ``PUT /v1/escrow``."""
    meta = (await user.http.get("/v1/meta")).json()["escrow"]
    account_id = (await user.get("/v1/me")).json()["id"]
    public = public_key_from_bytes(base64.b64decode(meta["public_key"]))
    return await user.put(
        "/v1/escrow",
        json={
            "tier": "standard",
            "key_id": key_id,
            "server_key_id": meta["key_id"],
            "sealed_key": b64(seal(public, key, escrow_aad(account_id, key_id))),
        },
    )


class Mailbox:
    """aiosmtpd handler that keeps every message: (recipients, subject, body)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Store recipients, subject and body."""
        message = message_from_bytes(envelope.content)
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        self.messages.append((list(envelope.rcpt_tos), str(message["Subject"]), body.decode()))
        return "250 OK"

    def to(self, address: str, subject_part: str = "") -> list[tuple[list[str], str, str]]:
        """Mails received so far for ``address`` whose subject contains ``subject_part``."""
        return [m for m in self.messages if m[0] == [address] and subject_part in m[1]]

    async def wait_for(self, to: str, subject_part: str) -> tuple[list[str], str, str]:
        """The first mail to ``to`` whose subject contains ``subject_part`` (waits ≤ 10 s)."""
        for _ in range(200):
            found = self.to(to, subject_part)
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail {subject_part!r} to {to}; got {self.messages}")


@contextlib.contextmanager
def smtp_capture() -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on 127.0.0.1 capturing mail: (mailbox, port); stopped on exit."""
    mailbox = Mailbox()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


async def solve_altcha(api: httpx.AsyncClient) -> str:
    """Fetch an ALTCHA challenge from the server and solve it like the widget does."""
    from altcha.v1 import solve_challenge

    data = (await api.get("/v1/captcha/challenge")).json()
    solution = await asyncio.to_thread(
        solve_challenge, data["challenge"], data["salt"], data["algorithm"], data["maxnumber"]
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


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM ``process`` and wait for it; SIGKILL after ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
