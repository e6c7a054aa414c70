"""The npm ``oidc-provider`` as a test peer: start it under Node on loopback, log in.

``OidcProvider`` writes a JWKS file (RSA keys made here, so the test controls ``kid``s),
starts ``tests/peers/oidc/server.mjs`` on ``127.0.0.1`` and a free port, waits for its
discovery document (bounded), and stops it (terminate, then kill). ``rotate()`` restarts it
with a new signing key first and the old one still published. ``login()`` runs the
authorization-code flow with PKCE for the public native client, the user picked by
``login_hint`` (the peer's scripted interaction), and returns the access token. The
access tokens' lifetime and JWT ``typ`` header can be set (token-policy tests).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

PEER_DIR = Path(__file__).parent / "oidc"
CLIENT_ID = "hushchat-desktop"
AUDIENCE = "urn:hushchat:sync"
REDIRECT_URI = "http://127.0.0.1/callback"


class OidcProviderUnavailableError(RuntimeError):
    """Node or the npm modules are missing; the message says what to run."""


def unavailable_reason() -> str | None:
    """Why the peer cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        return "npm modules missing: run `npm ci` in tests/peers/oidc"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _private_jwk(kid: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return jwk


class OidcProvider:
    """A running ``oidc-provider`` on loopback."""

    def __init__(
        self,
        workdir: Path,
        *,
        start_timeout: float = 20.0,
        access_token_ttl: int = 300,
        access_token_typ: str | None = None,
    ) -> None:
        """``access_token_typ`` replaces the JWT ``typ`` of access tokens (default at+jwt)."""
        reason = unavailable_reason()
        if reason:
            raise OidcProviderUnavailableError(reason)
        self.workdir = workdir
        self.port = _free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self.access_token_ttl = access_token_ttl
        self.access_token_typ = access_token_typ
        self.keys: list[dict[str, Any]] = [_private_jwk("kid-1")]
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def signing_kid(self) -> str:
        """The kid new tokens are signed with."""
        kid: str = self.keys[0]["kid"]
        return kid

    def start(self) -> None:
        """Start the Node process and wait until discovery answers."""
        jwks_file = self.workdir / "jwks.json"
        jwks_file.write_text(json.dumps({"keys": self.keys}), encoding="utf-8")
        self._log = (self.workdir / "oidc-provider.log").open("ab")
        self._process = subprocess.Popen(
            ["node", str(PEER_DIR / "server.mjs")],
            cwd=PEER_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "OIDC_PORT": str(self.port),
                "OIDC_JWKS_FILE": str(jwks_file),
                "OIDC_AUDIENCE": AUDIENCE,
                "OIDC_CLIENT_ID": CLIENT_ID,
                "OIDC_ACCESS_TOKEN_TTL": str(self.access_token_ttl),
                "NODE_ENV": "test",
                **(
                    {"OIDC_ACCESS_TOKEN_TYP": self.access_token_typ}
                    if self.access_token_typ
                    else {}
                ),
            },
        )
        deadline = time.monotonic() + self.start_timeout
        url = self.issuer + "/.well-known/openid-configuration"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise OidcProviderUnavailableError(
                    f"oidc-provider exited with {self._process.returncode}; see {self.workdir}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise OidcProviderUnavailableError(f"oidc-provider not ready in {self.start_timeout} s")

    def stop(self) -> None:
        """Terminate (then kill) the process."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def rotate(self, *, keep_old: bool = True) -> None:
        """Restart with a new signing key first (the old one still published if kept)."""
        new = _private_jwk(f"kid-{len(self.keys) + 1}")
        self.keys = [new, *self.keys] if keep_old else [new]
        self.stop()
        self.start()

    def login(self, user: str, scope: str = "openid email sync") -> str:
        """Authorization code + PKCE as the desktop app does it; returns the access token."""
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        state = secrets.token_urlsafe(16)
        params = {
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": user,
            "resource": AUDIENCE,
        }
        with httpx.Client(base_url=self.issuer, timeout=10.0) as client:
            response = client.get("/auth", params=params)
            for _ in range(10):
                location = response.headers.get("location")
                if response.status_code not in (302, 303) or location is None:
                    raise OidcProviderUnavailableError(
                        f"login stopped at {response.status_code}: {response.text[:200]}"
                    )
                if location.startswith(REDIRECT_URI):
                    query = parse_qs(urlsplit(location).query)
                    if "error" in query:
                        raise OidcProviderUnavailableError(f"login failed: {query}")
                    assert query["state"] == [state]
                    code = query["code"][0]
                    break
                response = client.get(location)
            else:
                raise OidcProviderUnavailableError("too many redirects during login")
            token = client.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI,
                    "client_id": CLIENT_ID,
                    "code_verifier": verifier,
                    "resource": AUDIENCE,
                },
            )
            token.raise_for_status()
            access: str = token.json()["access_token"]
            return access

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
