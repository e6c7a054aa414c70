"""tests/deploy/compose_round_trip.py (the workflow's check of the compose stack) against a
real `hushchat-sync serve` process and a stand-in for Keycloak's token and JWKS endpoints:
the script's requests are right before CI runs it against the real stack, and it fails
when a step fails. The real Keycloak and the image run only in server-image.yml."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from sync_server.sealing import generate_secrets
from tests.deploy import compose_round_trip
from tests.integration.sync_server.support import AUDIENCE, CLIENT_ID, FakeIssuer, stop_process

pytestmark = [pytest.mark.deploy, pytest.mark.slow]

REALM = "/realms/hushchat"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def fake_keycloak() -> Iterator[str]:
    """Discovery, JWKS and a password grant for the test user; yields the realm URL."""
    issuer = FakeIssuer()
    issuer.add_key("k1")
    port = _free_port()
    realm_url = f"http://127.0.0.1:{port}{REALM}"

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == f"{REALM}/.well-known/openid-configuration":
                self._answer(200, {"issuer": realm_url})
            elif self.path == f"{REALM}/protocol/openid-connect/certs":
                self._answer(200, issuer.jwks())
            else:
                self._answer(404, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path != f"{REALM}/protocol/openid-connect/token":
                self._answer(404, {})
            elif (
                form.get("grant_type") != "password"
                or form.get("client_id") != compose_round_trip.CLIENT_ID
                or form.get("username") != compose_round_trip.USER
                or form.get("password") != "alice-password"  # the realm's test user
            ):
                self._answer(401, {"error": "invalid_grant"})
            else:
                token = issuer.mint("alice-subject", iss=realm_url, email="alice@example.org")
                self._answer(200, {"access_token": token, "token_type": "Bearer"})

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield realm_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def sync_server(tmp_path: Path, realm_url: str) -> Iterator[str]:
    """`hushchat-sync serve` with OIDC settings like the compose file's; yields its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHCHAT_SYNC_")}
    env.update({f"HUSHCHAT_SYNC_{k}": v for k, v in generate_secrets().items()})
    env.pop("HUSHCHAT_SYNC_ESCROW_KEK", None)
    env.pop("HUSHCHAT_SYNC_ESCROW_PRIVATE_KEY", None)
    port = _free_port()
    env.update(
        HUSHCHAT_SYNC_DATA_DIR=str(tmp_path / "data"),
        HUSHCHAT_SYNC_OIDC_ISSUER=realm_url,
        HUSHCHAT_SYNC_OIDC_JWKS_URL=f"{realm_url}/protocol/openid-connect/certs",
        HUSHCHAT_SYNC_OIDC_AUDIENCE=AUDIENCE,
        HUSHCHAT_SYNC_OIDC_CLIENT_ID=CLIENT_ID,
        HUSHCHAT_SYNC_OIDC_ALLOW_HTTP="true",
        HUSHCHAT_SYNC_PORT=str(port),
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_server", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
        assert process.poll() is None, log.read_text()
    finally:
        stop_process(process)
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(server URL, realm URL): one server and one fake Keycloak for the module."""
    tmp_path = tmp_path_factory.mktemp("stack")
    with fake_keycloak() as realm_url, sync_server(tmp_path, realm_url) as server:
        yield server, realm_url


def test_the_round_trip_passes_against_a_real_server(
    stack: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    server, realm_url = stack
    code = compose_round_trip.main(["--server", server, "--keycloak", realm_url, "--timeout", "60"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "device 2 pulled" in out
    assert "without a DPoP proof is refused (401)" in out


def test_the_round_trip_fails_when_keycloak_refuses_the_grant(
    stack: tuple[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, realm_url = stack
    monkeypatch.setattr(compose_round_trip, "PASSWORD", "not-the-password")
    assert compose_round_trip.main(["--server", server, "--keycloak", realm_url]) == 1
    assert "Keycloak refused the password grant: HTTP 401" in capsys.readouterr().err


def test_the_round_trip_fails_when_the_server_never_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = _free_port()
    assert compose_round_trip.main(["--server", f"http://127.0.0.1:{port}", "--timeout", "1"]) == 1
    assert "did not answer 200 within 1 s" in capsys.readouterr().err
